namespace TrEnv.Cluster;

/// <summary>
/// The OpenTelemetry environment variables a node honours, parsed once: <c>OTEL_SDK_DISABLED</c>,
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>, <c>OTEL_TRACES_EXPORTER</c> and <c>OTEL_METRICS_EXPORTER</c> (otlp, the default,
/// or none; metrics also take prometheus, which /metrics always is), and <c>OTEL_PROPAGATORS</c> (tracecontext and
/// baggage, the default, or none). A value it cannot honour is a <see cref="Problem"/> the node refuses to start with,
/// not a silent fallback.
/// </summary>
public sealed record TelemetryEnvironment(bool Disabled, bool Endpoint, bool TracesOtlp, bool MetricsOtlp, bool Propagate, string? Problem)
{
    /// <summary>Spans are recorded and exported over OTLP.</summary>
    public bool ExportsTraces => !Disabled && Endpoint && TracesOtlp;

    /// <summary>Metrics are pushed over OTLP (besides the Prometheus text at /metrics).</summary>
    public bool PushesMetrics => !Disabled && Endpoint && MetricsOtlp;

    /// <summary>Answers carry a traceparent, and an incoming one is continued.</summary>
    public bool AnswersTraceParent => !Disabled && Propagate;

    public static TelemetryEnvironment FromEnvironment() => Parse(Environment.GetEnvironmentVariable);

    public static TelemetryEnvironment Parse(Func<string, string?> variable)
    {
        var problems = new List<string>();
        var sdk = variable("OTEL_SDK_DISABLED")?.Trim();
        var disabled = false;
        if (!string.IsNullOrEmpty(sdk) && !bool.TryParse(sdk, out disabled))
            problems.Add($"OTEL_SDK_DISABLED \"{sdk}\" is neither true nor false.");
        var traces = Names(problems, variable, "OTEL_TRACES_EXPORTER", "otlp", ["otlp", "none"]);
        var metrics = Names(problems, variable, "OTEL_METRICS_EXPORTER", "otlp", ["otlp", "prometheus", "none"]);
        var propagators = Names(problems, variable, "OTEL_PROPAGATORS", "tracecontext,baggage", ["tracecontext", "baggage", "none"]);
        return new TelemetryEnvironment(
            disabled,
            !string.IsNullOrWhiteSpace(variable("OTEL_EXPORTER_OTLP_ENDPOINT")),
            traces.Contains("otlp"),
            metrics.Contains("otlp"),
            propagators.Contains("tracecontext"),
            problems.Count == 0 ? null : string.Join(" ", problems));
    }

    // A comma-separated list of known names; "none" stands alone.
    private static HashSet<string> Names(List<string> problems, Func<string, string?> variable, string name, string fallback, string[] known)
    {
        var raw = variable(name) is { } v && !string.IsNullOrWhiteSpace(v) ? v : fallback;
        var names = raw.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(n => n.ToLowerInvariant()).ToHashSet();
        if (names.Except(known).ToList() is { Count: > 0 } unknown)
            problems.Add($"{name} \"{raw}\" names {string.Join(", ", unknown)}; this platform supports {string.Join(", ", known)}.");
        else if (names.Contains("none") && names.Count > 1)
            problems.Add($"{name} \"{raw}\" combines none with other names.");
        return names;
    }
}
