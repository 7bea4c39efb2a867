using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace TrEnv.Coordinator.Observability;

/// <summary>
/// Counters and histograms of the invoke path, rendered in the Prometheus text format at /metrics.
/// Recording is a dictionary lookup and a few interlocked adds, cheap enough for the hot path.
/// </summary>
public sealed class CoordinatorMetrics
{
    // Seconds; spans a warm call (tens of µs) to a cold start of a large runtime (seconds).
    private static readonly double[] Buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly ConcurrentDictionary<(string Function, string Start, string Outcome), Counter> _invocations = new();
    private readonly ConcurrentDictionary<string, Histogram> _startup = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Histogram> _exec = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Histogram> _total = new(StringComparer.Ordinal);

    public void RecordInvocation(string function, string start, string outcome, long startupMicros, long execMicros, double totalSeconds)
    {
        _invocations.GetOrAdd((function, start, outcome), _ => new Counter()).Add();
        _startup.GetOrAdd(start, _ => new Histogram()).Observe(startupMicros / 1e6);
        _exec.GetOrAdd(start, _ => new Histogram()).Observe(execMicros / 1e6);
        _total.GetOrAdd(start, _ => new Histogram()).Observe(totalSeconds);
    }

    /// <summary>Renders counters and histograms plus the gauges the caller samples at scrape time.</summary>
    public string Render(IEnumerable<(string Name, string Help, IEnumerable<(string Labels, double Value)> Samples)> gauges)
    {
        var sb = new StringBuilder();
        sb.Append("# HELP trenv_invocations_total Invocations by function, start kind and outcome (ok or an error kind).\n# TYPE trenv_invocations_total counter\n");
        foreach (var ((function, start, outcome), counter) in _invocations.OrderBy(kv => kv.Key))
            sb.Append(CultureInfo.InvariantCulture, $"trenv_invocations_total{{function=\"{Escape(function)}\",start=\"{start}\",outcome=\"{outcome}\"}} {counter.Value}\n");
        Histograms(sb, "trenv_invocation_startup_seconds", "Time to a ready instance on the worker, by start kind.", _startup);
        Histograms(sb, "trenv_invocation_exec_seconds", "Guest execution time, by start kind.", _exec);
        Histograms(sb, "trenv_invocation_duration_seconds", "Coordinator-side time from request to answer, by start kind.", _total);
        foreach (var (name, help, samples) in gauges)
        {
            sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} gauge\n");
            foreach (var (labels, value) in samples)
                sb.Append(CultureInfo.InvariantCulture, $"{name}{(labels.Length > 0 ? "{" + labels + "}" : "")} {value}\n");
        }
        return sb.ToString();
    }

    private static void Histograms(StringBuilder sb, string name, string help, ConcurrentDictionary<string, Histogram> byStart)
    {
        sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} histogram\n");
        foreach (var (start, h) in byStart.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var (counts, sum, count) = h.Snapshot();
            long cumulative = 0;
            for (var i = 0; i < Buckets.Length; i++)
            {
                cumulative += counts[i];
                sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{start=\"{start}\",le=\"{Buckets[i]}\"}} {cumulative}\n");
            }
            sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{start=\"{start}\",le=\"+Inf\"}} {count}\n");
            sb.Append(CultureInfo.InvariantCulture, $"{name}_sum{{start=\"{start}\"}} {sum}\n{name}_count{{start=\"{start}\"}} {count}\n");
        }
    }

    public static string Escape(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal);

    private sealed class Counter
    {
        private long _value;
        public long Value => Interlocked.Read(ref _value);
        public void Add() => Interlocked.Increment(ref _value);
    }

    private sealed class Histogram
    {
        private readonly long[] _counts = new long[Buckets.Length];
        private long _count;
        private long _sumNanos;

        public void Observe(double seconds)
        {
            var i = Array.BinarySearch(Buckets, seconds);
            if (i < 0)
                i = ~i;
            if (i < _counts.Length)
                Interlocked.Increment(ref _counts[i]);
            Interlocked.Increment(ref _count);
            Interlocked.Add(ref _sumNanos, (long)(seconds * 1e9));
        }

        public (long[] Counts, double Sum, long Count) Snapshot()
            => (_counts.Select(c => Interlocked.Read(ref c)).ToArray(), Interlocked.Read(ref _sumNanos) / 1e9, Interlocked.Read(ref _count));
    }
}
