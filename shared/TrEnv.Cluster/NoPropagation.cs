using System.Diagnostics;

namespace TrEnv.Cluster;

/// <summary>
/// OTEL_PROPAGATORS=none at the HTTP edge: ASP.NET Core continues no incoming traceparent or baggage, and HttpClient
/// sends none.
/// </summary>
public sealed class NoPropagation : DistributedContextPropagator
{
    public static readonly NoPropagation Instance = new();

    private NoPropagation()
    {
    }

    public override IReadOnlyCollection<string> Fields { get; } = [];

    public override void Inject(Activity? activity, object? carrier, PropagatorSetterCallback? setter)
    {
    }

    public override void ExtractTraceIdAndState(object? carrier, PropagatorGetterCallback? getter, out string? traceId, out string? traceState)
    {
        traceId = null;
        traceState = null;
    }

    public override IEnumerable<KeyValuePair<string, string?>>? ExtractBaggage(object? carrier, PropagatorGetterCallback? getter) => null;
}
