using System.Diagnostics;

namespace TrEnv.Sandbox;

/// <summary>
/// The sandbox host's spans, re-created in the worker from what the host reported in its reply (<see cref="HostSpan"/>):
/// the host runs in its own network namespace and exports nothing itself. The worker's second tracer provider exports
/// this source as the service trenv-sandbox-host.
/// </summary>
public static class HostSpans
{
    public const string SourceName = "TrEnv.SandboxHost";

    private static readonly ActivitySource Source = new(SourceName);

    /// <summary>
    /// The traceparent a request to the host carries: the caller's current span when it is recorded (the host reports
    /// spans for nothing else, so a propagation-only span, as most are under a ratio sampler, sends no id string).
    /// </summary>
    public static string? CurrentTraceParent() => Activity.Current is { IdFormat: ActivityIdFormat.W3C, Recorded: true } current ? current.Id : null;

    /// <summary>Starts and ends one activity per reported span under <paramref name="parent"/>, leaving the caller's current span as it was.</summary>
    public static void Emit(IReadOnlyList<HostSpan> spans, ActivityContext parent, int pid)
    {
        if (spans.Count == 0 || !Source.HasListeners() || parent == default)
            return;
        var current = Activity.Current;
        try
        {
            var made = new Activity?[spans.Count];
            for (var i = 0; i < spans.Count; i++)
            {
                var span = spans[i];
                var context = span.Parent < 0 ? parent : made[span.Parent]?.Context ?? parent;
                var start = DateTimeOffset.UnixEpoch.AddTicks(span.StartUnixMicros * 10);
                var activity = Source.StartActivity(span.Name, ActivityKind.Internal, context, startTime: start);
                if (activity is null)
                    continue;
                activity.SetTag("process.pid", pid);
                foreach (var (key, value) in span.Attributes)
                    activity.SetTag(key, value);
                activity.SetEndTime(start.AddTicks(span.DurationMicros * 10).UtcDateTime);
                made[i] = activity;
            }
            // Children first, so none outlives its parent.
            for (var i = made.Length - 1; i >= 0; i--)
                made[i]?.Stop();
        }
        finally
        {
            Activity.Current = current;
        }
    }
}
