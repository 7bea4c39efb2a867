using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OpenTelemetry;
using OpenTelemetry.Context.Propagation;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace TrEnv.Cluster;

/// <summary>
/// OpenTelemetry for every node: traces of the invoke path (W3C trace context, carried inside the cluster's own
/// messages and the sandbox protocol) and metrics (the node's meters, HttpClient, gRPC over it, the .NET runtime).
/// Both are exported over OTLP only when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (the exporter reads the other
/// <c>OTEL_EXPORTER_OTLP_*</c> variables itself; <see cref="TelemetryEnvironment"/> the rest). Without it there is no
/// tracer provider and no span anywhere; a coordinator's answer still continues an incoming <c>traceparent</c>
/// (<see cref="TraceParentAnswer"/>) unless <c>OTEL_PROPAGATORS=none</c>. <c>OTEL_SDK_DISABLED=true</c> turns the
/// SDK off for every signal: no spans, no traceparent, and no metrics (/metrics answers empty).
/// </summary>
public static class NodeTelemetry
{
    /// <summary>The sources of the invoke path's spans, one per process kind.</summary>
    public static readonly ActivitySource Coordinator = new("TrEnv.Coordinator");

    public static readonly ActivitySource Worker = new("TrEnv.Worker");

    /// <summary>The node's OpenTelemetry variables. Read once: the environment is the node's.</summary>
    public static readonly TelemetryEnvironment Settings = TelemetryEnvironment.FromEnvironment();

    /// <summary>Spans are recorded and exported (an OTLP endpoint is set, traces not turned off).</summary>
    public static readonly bool Exporting = Settings.ExportsTraces;

    /// <param name="service">service.name of the node's spans and metrics (trenv-coordinator, trenv-worker, trenv-memory-pool).</param>
    /// <param name="sources">The activity sources this node starts spans from.</param>
    public static OpenTelemetryBuilder AddTrEnvTelemetry(this IServiceCollection services, string service, string node, IEnumerable<ActivitySource> sources,
        Action<TracerProviderBuilder>? tracing = null, Action<MeterProviderBuilder>? metrics = null)
    {
        if (Settings.Problem is { } problem)
            throw new InvalidOperationException(problem);
        // No propagation: ASP.NET Core (which took the propagator into its services when the builder was made) neither
        // continues an incoming traceparent, nor does HttpClient send one; nor does OpenTelemetry's ASP.NET Core
        // instrumentation, which re-parents the request's span on what its own propagator extracts (an empty one here).
        if (!Settings.Propagate)
        {
            DistributedContextPropagator.Current = NoPropagation.Instance;
            services.Replace(ServiceDescriptor.Singleton<DistributedContextPropagator>(NoPropagation.Instance));
            Sdk.SetDefaultTextMapPropagator(new CompositeTextMapPropagator([]));
        }
        var otel = services.AddOpenTelemetry().ConfigureResource(r => r.AddService(service, serviceInstanceId: node));
        // Nothing exported, nothing recorded: no tracer provider, so no span is started anywhere (an answer's
        // traceparent is then made by TraceParentAnswer from the request's). OTEL_SDK_DISABLED=true makes the SDK's
        // providers no-ops, metrics included.
        if (!Exporting)
            return otel.WithMetrics(m => Metrics(m, metrics));
        otel.WithTracing(t =>
        {
            tracing?.Invoke(t);
            t.AddSource([.. sources.Select(s => s.Name)]).AddHttpClientInstrumentation().AddGrpcClientInstrumentation();
            t.SetSampler(ConfiguredSampler());
            t.AddOtlpExporter();
        });
        return otel.WithMetrics(m => Metrics(m, metrics));
    }

    private static void Metrics(MeterProviderBuilder m, Action<MeterProviderBuilder>? more)
    {
        m.AddHttpClientInstrumentation().AddRuntimeInstrumentation();
        more?.Invoke(m);
        if (Settings.PushesMetrics)
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

    /// <summary>
    /// The traceparent a message to another node carries: the current span's when this node exports spans, else null
    /// (nothing downstream would record them, so no id string is built). OTEL_PROPAGATORS governs the HTTP edge only:
    /// the cluster's own messages keep a trace whole.
    /// </summary>
    public static string? CurrentTraceParent() => Exporting ? TraceParent(Activity.Current) : null;

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

    /// <summary>
    /// The traceparent an HTTP answer carries: the request's span when one exists; otherwise (nothing exported) a span
    /// of its own, unrecorded, in the caller's trace when <paramref name="incoming"/> names one, else in a new trace.
    /// </summary>
    public static string TraceParentAnswer(Activity? current, string? incoming)
    {
        if (TraceParent(current) is { } own)
            return own;
        var span = ActivitySpanId.CreateRandom().ToHexString();
        return ActivityContext.TryParse(incoming, null, out var caller)
            ? $"00-{caller.TraceId.ToHexString()}-{span}-{((caller.TraceFlags & ActivityTraceFlags.Recorded) != 0 ? "01" : "00")}"
            : $"00-{ActivityTraceId.CreateRandom().ToHexString()}-{span}-00";
    }
}
