using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Placement;

namespace TrEnv.Coordinator.Observability;

/// <summary>
/// The coordinator's instruments (meter "TrEnv.Coordinator"), exported by OpenTelemetry at /metrics. Counters and
/// histograms are recorded on the invoke path; gauges are read from the worker directory, the catalogs and the
/// pool sampler when scraped. It also keeps the recent invocations the dashboard shows.
/// </summary>
public sealed class CoordinatorMetrics : IDisposable
{
    public const string MeterName = "TrEnv.Coordinator";

    // Seconds; spans a warm call (tens of µs) to a cold start of a large runtime (seconds).
    public static readonly double[] Buckets = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private static readonly string[] States = ["idle", "warm", "busy"];

    private readonly Meter _meter;
    private readonly Counter<long> _invocations;
    private readonly Counter<long> _failures;
    private readonly Counter<long> _captures;
    private readonly Counter<long> _restores;
    private readonly Histogram<double> _startup;
    private readonly Histogram<double> _exec;
    private readonly Histogram<double> _duration;
    // OpenTelemetry's FaaS semantic conventions, beside the trenv.* series (which the dashboard and scrapes use).
    private readonly Counter<long> _faasInvocations;
    private readonly Counter<long> _faasErrors;
    private readonly Counter<long> _faasTimeouts;
    private readonly Counter<long> _faasColdstarts;
    private readonly Histogram<double> _faasInvokeDuration;
    private readonly Histogram<double> _faasInitDuration;
    private readonly ConcurrentDictionary<string, byte> _workersSeen = new(StringComparer.Ordinal);
    private readonly RecentInvocations _recent = new(512);

    public CoordinatorMetrics(WorkerDirectory workers, FunctionCatalog functions, TemplateCatalog templates, PoolUsageSampler pool)
    {
        _meter = new Meter(MeterName);
        _invocations = _meter.CreateCounter<long>("trenv.invocations", "{invocation}", "Invocations answered by a worker, by function, start kind and outcome (ok or an error kind).");
        _failures = _meter.CreateCounter<long>("trenv.invocation.failures", "{invocation}",
            "Invocations that failed, by kind: the guest's (trap, timeout, memory_limit...) and the platform's refusals (not_found, unavailable...).");
        _captures = _meter.CreateCounter<long>("trenv.template.captures", "{template}", "Templates captured into the pool by invocations through this coordinator, by function.");
        _restores = _meter.CreateCounter<long>("trenv.template.restores", "{instance}", "Instances restored from a template rather than initialised, by function and sandbox (new or repurposed).");
        var advice = new InstrumentAdvice<double> { HistogramBucketBoundaries = Buckets };
        _startup = _meter.CreateHistogram("trenv.invocation.startup", "s", "Time to a ready instance on the worker (0 when warm), by start kind.", advice: advice);
        _exec = _meter.CreateHistogram("trenv.invocation.exec", "s", "Guest execution time, by start kind.", advice: advice);
        _duration = _meter.CreateHistogram("trenv.invocation.duration", "s", "Coordinator-side time from request to answer, by start kind.", advice: advice);

        _faasInvocations = _meter.CreateCounter<long>("faas.invocations", "{invocation}", "Number of successful invocations (FaaS semantic conventions), by faas.name.");
        _faasErrors = _meter.CreateCounter<long>("faas.errors", "{error}", "Number of invocation errors, timeouts included, by faas.name and error.type.");
        _faasTimeouts = _meter.CreateCounter<long>("faas.timeouts", "{timeout}", "Number of invocation timeouts, by faas.name.");
        _faasColdstarts = _meter.CreateCounter<long>("faas.coldstarts", "{coldstart}",
            "Number of invocations that started an instance (trenv.start: template or cold; a template start is a cold start made cheap).");
        _faasInvokeDuration = _meter.CreateHistogram("faas.invoke_duration", "s", "Duration of the function's logic execution (the guest call).", advice: advice);
        _faasInitDuration = _meter.CreateHistogram("faas.init_duration", "s", "Duration of the function's initialisation on a cold start (a template restore or init), by trenv.start.", advice: advice);

        _meter.CreateObservableGauge("trenv.sandboxes", () => Sandboxes(workers), "{sandbox}", "Sandboxes per worker by state (idle, warm, busy), as each worker last reported.");
        _meter.CreateObservableGauge("trenv.workers", () => workers.Workers.Count, "{worker}", "Workers in this coordinator's directory.");
        _meter.CreateObservableGauge("trenv.invocations.in_flight", InFlight, "{invocation}", "Invocations this coordinator is running, per function.");
        _meter.CreateObservableGauge("trenv.functions", () => functions.Names.Count, "{function}", "Deployed functions.");
        _meter.CreateObservableGauge("trenv.templates", () => templates.All.Count, "{template}", "Sealed templates.");
        _meter.CreateObservableGauge("trenv.pool.capacity", () => pool.Last is { } u ? [new Measurement<long>(u.Capacity)] : Array.Empty<Measurement<long>>(), "By",
            "Memory pool capacity.");
        _meter.CreateObservableGauge("trenv.pool.allocated", () => pool.Last is { } u ? [new Measurement<long>(u.AllocatedBytes)] : Array.Empty<Measurement<long>>(), "By",
            "Memory pool bytes allocated to templates (and captures in progress).");
        _meter.CreateObservableGauge("trenv.pool.regions", () => pool.Last is { } u ? [new Measurement<long>(u.Regions)] : Array.Empty<Measurement<long>>(), "{region}",
            "Memory pool regions allocated.");
        _meter.CreateObservableGauge("trenv.pool.mapped", () => PerWorker(workers, w => w.PoolMappedBytes), "By",
            "Pool bytes mapped by live instances, per worker (a region counts once per instance that maps it).");
        _meter.CreateObservableGauge("trenv.worker.memory", () => PerWorker(workers, w => w.MemoryBytes), "By", "Memory charged to each worker's sandboxes.");
    }

    public RecentInvocations Recent => _recent;

    /// <summary>An invocation a worker answered (successfully or with the guest's error).</summary>
    public void RecordInvocation(string invocationId, string function, int version, string start, string outcome, string node, string sandbox,
        long startupMicros, long execMicros, double totalSeconds, bool captured)
    {
        var startTag = new KeyValuePair<string, object?>("start", start);
        _invocations.Add(1, new KeyValuePair<string, object?>("function", function), startTag, new KeyValuePair<string, object?>("outcome", outcome));
        if (outcome != "ok")
            _failures.Add(1, new KeyValuePair<string, object?>("kind", outcome), new KeyValuePair<string, object?>("function", function));
        _startup.Record(startupMicros / 1e6, startTag);
        _exec.Record(execMicros / 1e6, startTag);
        _duration.Record(totalSeconds, startTag);
        if (captured)
            _captures.Add(1, new KeyValuePair<string, object?>("function", function));
        if (start == "template")
            _restores.Add(1, new KeyValuePair<string, object?>("function", function), new KeyValuePair<string, object?>("sandbox", sandbox));
        RecordFaas(function, version, start, outcome, startupMicros, execMicros);
        _recent.Add(new InvocationRecord(DateTimeOffset.UtcNow, invocationId, function, version, start, sandbox, outcome, node, startupMicros, execMicros,
            (long)(totalSeconds * 1e6)));
    }

    // faas.* instruments: every invocation comes over HTTP; a new instance (template or cold) is a cold start.
    private void RecordFaas(string function, int version, string start, string outcome, long startupMicros, long execMicros)
    {
        var cold = start is "template" or "cold";
        var tags = new TagList
        {
            { "faas.name", function },
            { "faas.version", VersionText(version) },
            { "faas.trigger", "http" },
            { "faas.coldstart", cold ? BoxedTrue : BoxedFalse },
        };
        if (outcome == "ok")
            _faasInvocations.Add(1, tags);
        else
            RecordFaasError(tags, outcome);
        _faasInvokeDuration.Record(execMicros / 1e6, tags);
        if (cold)
        {
            var started = new TagList { { "faas.name", function }, { "faas.trigger", "http" }, { "trenv.start", start } };
            _faasColdstarts.Add(1, started);
            _faasInitDuration.Record(startupMicros / 1e6, started);
        }
    }

    // Tag values recorded on every invocation, made once rather than boxed or formatted per call.
    private static readonly object BoxedTrue = true, BoxedFalse = false;
    private static readonly string[] Versions = [.. Enumerable.Range(0, 256).Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    private static string VersionText(int version)
        => (uint)version < Versions.Length ? Versions[version] : version.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private void RecordFaasError(TagList tags, string kind)
    {
        tags.Add("error.type", kind);
        _faasErrors.Add(1, tags);
        if (kind == ErrorKinds.Timeout)
            _faasTimeouts.Add(1, tags);
    }

    /// <summary>
    /// An invocation the coordinator refused or lost before a worker answered. Unknown names and bad tokens are
    /// counted without a function label, so random names cannot grow the series without bound.
    /// </summary>
    public void RecordRefused(string? function, string kind)
    {
        _failures.Add(1, new KeyValuePair<string, object?>("kind", kind), new KeyValuePair<string, object?>("function", function ?? ""));
        RecordFaasError(new TagList { { "faas.name", function ?? "" }, { "faas.trigger", "http" } }, kind);
        _recent.Add(new InvocationRecord(DateTimeOffset.UtcNow, "", function ?? "", 0, "none", "", kind, "", 0, 0, 0));
    }

    private IEnumerable<Measurement<long>> Sandboxes(WorkerDirectory workers)
    {
        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (var w in workers.Workers)
        {
            present.Add(w.Status.Node);
            _workersSeen.TryAdd(w.Status.Node, 0);
            foreach (var state in States)
                yield return new Measurement<long>(w.Status.Sandboxes.Count(s => s.State == state), Tag("worker", w.Status.Node), Tag("state", state));
        }
        // A worker that left reports nothing more: its series drop to zero instead of keeping their last value.
        foreach (var gone in _workersSeen.Keys.Where(n => !present.Contains(n)))
            foreach (var state in States)
                yield return new Measurement<long>(0, Tag("worker", gone), Tag("state", state));
    }

    private IEnumerable<Measurement<long>> PerWorker(WorkerDirectory workers, Func<WorkerStatus, long> value)
    {
        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (var w in workers.Workers)
        {
            present.Add(w.Status.Node);
            _workersSeen.TryAdd(w.Status.Node, 0);
            yield return new Measurement<long>(value(w.Status), Tag("worker", w.Status.Node));
        }
        foreach (var gone in _workersSeen.Keys.Where(n => !present.Contains(n)))
            yield return new Measurement<long>(0, Tag("worker", gone));
    }

    private static IEnumerable<Measurement<int>> InFlight()
        => Api.InvokeApi.InFlight.Select(f => new Measurement<int>(f.Count, Tag("function", f.Function)));

    private static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);

    public void Dispose() => _meter.Dispose();
}

/// <summary>One invocation as the dashboard lists it; refusals have no id and start "none".</summary>
public sealed record InvocationRecord(DateTimeOffset At, string Id, string Function, int Version, string Start, string Sandbox, string Outcome, string Node,
    long StartupMicros, long ExecMicros, long TotalMicros);

/// <summary>A bounded ring of the latest invocations, newest last, plus totals by start kind since the coordinator started.</summary>
public sealed class RecentInvocations(int capacity)
{
    private readonly InvocationRecord[] _ring = new InvocationRecord[capacity];
    private readonly Dictionary<string, long> _byStart = new(StringComparer.Ordinal);
    private long _count;

    public void Add(InvocationRecord record)
    {
        lock (_ring)
        {
            _ring[_count % _ring.Length] = record;
            _count++;
            _byStart[record.Start] = _byStart.GetValueOrDefault(record.Start) + 1;
        }
    }

    public (long Total, IReadOnlyDictionary<string, long> ByStart, IReadOnlyList<InvocationRecord> Latest) Snapshot(int max)
    {
        lock (_ring)
        {
            var n = (int)Math.Min(Math.Min(_count, _ring.Length), max);
            var latest = new InvocationRecord[n];
            for (var i = 0; i < n; i++)
                latest[i] = _ring[(_count - n + i) % _ring.Length];
            return (_count, new Dictionary<string, long>(_byStart, StringComparer.Ordinal), latest);
        }
    }
}
