using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace TrEnv.Cluster;

/// <summary>
/// OpenTelemetry for every node: traces of the invoke path (W3C trace context, carried inside the cluster's own
/// messages and the sandbox protocol) and metrics (the node's meters, HttpClient, gRPC over it, the .NET runtime).
/// Both are exported over OTLP only when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (the exporter reads the other
/// <c>OTEL_*</c> variables itself); without it spans are still created, unrecorded, so trace context propagates
/// (an incoming <c>traceparent</c> continues through the cluster and comes back) at the cost of a few allocations.
/// </summary>
public static class NodeTelemetry
{
    /// <summary>The sources of the invoke path's spans, one per process kind.</summary>
    public static readonly ActivitySource Coordinator = new("TrEnv.Coordinator");

    public static readonly ActivitySource Worker = new("TrEnv.Worker");

    public static bool Exporting => !Disabled && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT"));

    public static bool Disabled => string.Equals(Environment.GetEnvironmentVariable("OTEL_SDK_DISABLED"), "true", StringComparison.OrdinalIgnoreCase);

    /// <param name="service">service.name of the node's spans and metrics (trenv-coordinator, trenv-worker, trenv-memory-pool).</param>
    /// <param name="sources">The activity sources this node starts spans from.</param>
    public static OpenTelemetryBuilder AddTrEnvTelemetry(this IServiceCollection services, string service, string node, IEnumerable<ActivitySource> sources,
        Action<TracerProviderBuilder>? tracing = null, Action<MeterProviderBuilder>? metrics = null)
    {
        var exporting = Exporting;
        var otel = services.AddOpenTelemetry().ConfigureResource(r => r.AddService(service, serviceInstanceId: node));
        // OTEL_SDK_DISABLED=true: no spans at all (the baseline ./bench.sh e2e measures tracing against); metrics stay.
        if (Disabled)
            return otel.WithMetrics(m => Metrics(m, metrics, exporting: false));
        otel.WithTracing(t =>
        {
            t.AddSource([.. sources.Select(s => s.Name)]).AddHttpClientInstrumentation().AddGrpcClientInstrumentation();
            // Without an exporter nothing is recorded, but every span still carries its context onwards.
            t.SetSampler(exporting ? ConfiguredSampler() : new PropagateOnlySampler());
            tracing?.Invoke(t);
            if (exporting)
                t.AddOtlpExporter();
        });
        return otel.WithMetrics(m => Metrics(m, metrics, exporting));
    }

    private static void Metrics(MeterProviderBuilder m, Action<MeterProviderBuilder>? more, bool exporting)
    {
        m.AddHttpClientInstrumentation().AddRuntimeInstrumentation();
        more?.Invoke(m);
        if (exporting)
            m.AddOtlpExporter();
    }

    /// <summary>
    /// A tracer provider of its own for spans another process measured and this one exports (the sandbox host's,
    /// under its service name); null when nothing is exported. Dispose it at shutdown.
    /// </summary>
    public static TracerProvider? ForeignSpans(string service, string node, string source)
        => Exporting
            ? Sdk.CreateTracerProviderBuilder().ConfigureResource(r => r.AddService(service, serviceInstanceId: node)).AddSource(source)
                .SetSampler(new ParentBasedSampler(new AlwaysOnSampler())).AddOtlpExporter().Build()
            : null;

    /// <summary>The W3C traceparent of <paramref name="activity"/>, or null.</summary>
    public static string? TraceParent(Activity? activity) => activity?.Id is { } id && activity.IdFormat == ActivityIdFormat.W3C ? id : null;

    /// <summary>The parent context a message carried, or default (a new trace) when it carried none or garbage.</summary>
    public static ActivityContext ParentOf(string? traceParent)
        => traceParent is not null && ActivityContext.TryParse(traceParent, null, out var context) ? context : default;

    /// <summary>
    /// The sampler OTEL_TRACES_SAMPLER names (always_on, always_off, traceidratio and their parentbased_ forms; the
    /// ratio in OTEL_TRACES_SAMPLER_ARG, default 1); parentbased_always_on when unset. Refuses what it does not know.
    /// </summary>
    public static Sampler ConfiguredSampler()
    {
        var name = Environment.GetEnvironmentVariable("OTEL_TRACES_SAMPLER") is { Length: > 0 } n ? n.Trim().ToLowerInvariant() : "parentbased_always_on";
        var arg = Environment.GetEnvironmentVariable("OTEL_TRACES_SAMPLER_ARG");
        double Ratio()
            => string.IsNullOrWhiteSpace(arg) ? 1.0
                : double.TryParse(arg, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var r) && r is >= 0 and <= 1 ? r
                : throw new InvalidOperationException($"OTEL_TRACES_SAMPLER_ARG \"{arg}\" is not a ratio between 0 and 1.");
        Sampler Root(string root) => root switch
        {
            "always_on" => new AlwaysOnSampler(),
            "always_off" => new AlwaysOffSampler(),
            "traceidratio" => new TraceIdRatioBasedSampler(Ratio()),
            _ => throw new InvalidOperationException($"OTEL_TRACES_SAMPLER \"{name}\" is not one of always_on, always_off, traceidratio, or those with parentbased_ in front."),
        };
        return name.StartsWith("parentbased_", StringComparison.Ordinal) ? new ParentBasedSampler(Root(name["parentbased_".Length..])) : Root(name);
    }

    // Drops every span but keeps its context, so W3C trace context flows through the cluster without recording.
    private sealed class PropagateOnlySampler : Sampler
    {
        public override SamplingResult ShouldSample(in SamplingParameters samplingParameters) => new(SamplingDecision.Drop);
    }
}
