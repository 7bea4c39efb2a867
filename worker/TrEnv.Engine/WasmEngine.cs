using Wasmtime;

namespace TrEnv.Engine;

/// <summary>
/// One Wasmtime engine per process, configured identically everywhere so that precompiled
/// artifacts are interchangeable, plus the epoch ticker that enforces invocation deadlines.
/// </summary>
public sealed class WasmEngine : IDisposable
{
    private readonly EpochTicker _ticker;

    public WasmEngine()
    {
        using var config = new Config()
            .WithEpochInterruption(true)
            .WithOptimizationLevel(OptimizationLevel.Speed);
        Engine = new Wasmtime.Engine(config);
        Linker = new Linker(Engine);
        Linker.DefineWasi();
        // trenv.error: the instance that called it is the Store's data.
        Linker.DefineFunction(Contracts.GuestAbi.ImportModule, Contracts.GuestAbi.ErrorImport, (Caller caller, int ptr, int len) =>
        {
            if (caller.GetData() is FunctionInstance instance)
                instance.RecordGuestError(caller.GetMemory(Contracts.GuestAbi.Memory), ptr, len);
        });
        _ticker = new EpochTicker(Engine);
    }

    public Wasmtime.Engine Engine { get; }
    internal Linker Linker { get; }

    /// <summary>Adapter imports already defined on <see cref="Linker"/> (module and name), so each is defined once.</summary>
    internal HashSet<string> DefinedImports { get; } = new(StringComparer.Ordinal);

    // The store traps at the first epoch increment after this; the ticker makes it when the deadline passes.
    internal EpochTicker.Lease StartDeadline(Store store, TimeSpan timeout)
    {
        store.SetEpochDeadline(1);
        return _ticker.Acquire(timeout);
    }

    public void Dispose()
    {
        _ticker.Dispose();
        Linker.Dispose();
        Engine.Dispose();
    }
}

/// <summary>
/// Advances the engine epoch when a running guest call's deadline passes, and at no other time. Its thread sleeps
/// until the earliest deadline of the calls running, or, with none running, until the latest deadline a call was
/// given; it is woken early only when a call starts with an earlier deadline than the one it sleeps towards. So
/// back-to-back calls with the same timeout cost no wake-ups even when each ends before the thread looks (it does
/// not fall asleep for good between them), and an idle sandbox process pays one wake-up after its last call.
/// The epoch is the engine's: guest calls on one engine that run at the same moment are all interrupted when the
/// first of their deadlines passes. The sandbox host runs one call at a time, so that never happens there.
/// </summary>
internal sealed class EpochTicker : IDisposable
{
    private readonly Wasmtime.Engine _engine;
    private readonly Thread _thread;
    private readonly object _gate = new(); // Monitor.Wait needs a monitor, not a System.Threading.Lock
    private readonly List<Entry> _running = [];
    private long _sleepingUntil = long.MaxValue;
    private long _latestDeadline;
    private long _wakeups;
    private bool _disposed;

    public EpochTicker(Wasmtime.Engine engine)
    {
        _engine = engine;
        _thread = new Thread(Run) { IsBackground = true, Name = "trenv-epoch" };
        _thread.Start();
    }

    /// <summary>How often the thread has woken, by a deadline or a call; read by tests.</summary>
    internal long Wakeups => Volatile.Read(ref _wakeups);

    public Lease Acquire(TimeSpan timeout)
    {
        var now = Environment.TickCount64;
        var entry = new Entry(timeout >= TimeSpan.FromDays(365) ? long.MaxValue : now + Math.Max(1, (long)Math.Ceiling(timeout.TotalMilliseconds)));
        lock (_gate)
        {
            _running.Add(entry);
            // A call without a deadline must not become the horizon: the thread would then sleep for good again.
            if (entry.Deadline != long.MaxValue)
                _latestDeadline = Math.Max(_latestDeadline, entry.Deadline);
            if (entry.Deadline < _sleepingUntil)
                Monitor.PulseAll(_gate);
        }
        return new Lease(this, entry);
    }

    private void Release(Entry entry)
    {
        lock (_gate)
            _running.Remove(entry);
    }

    private void Run()
    {
        lock (_gate)
        {
            while (!_disposed)
            {
                var earliest = long.MaxValue;
                var now = Environment.TickCount64;
                foreach (var entry in _running)
                {
                    if (entry.Fired)
                        continue;
                    if (entry.Deadline <= now)
                    {
                        // One increment interrupts the store at its next epoch check; the call ends and releases.
                        entry.Fired = true;
                        _engine.IncrementEpoch();
                    }
                    else
                        earliest = Math.Min(earliest, entry.Deadline);
                }
                // Nothing running: keep the latest deadline as the horizon rather than sleeping for good, or the
                // next call (its deadline no later) would have to wake this thread, and the one after it too.
                if (earliest == long.MaxValue && _latestDeadline > now)
                    earliest = _latestDeadline;
                _sleepingUntil = earliest;
                if (earliest == long.MaxValue)
                    Monitor.Wait(_gate);
                else
                    Monitor.Wait(_gate, (int)Math.Min(int.MaxValue, earliest - now));
                Volatile.Write(ref _wakeups, _wakeups + 1);
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            Monitor.PulseAll(_gate);
        }
        _thread.Join();
    }

    internal sealed class Entry(long deadline)
    {
        public long Deadline { get; } = deadline;
        public bool Fired { get; set; }
    }

    public readonly struct Lease(EpochTicker owner, Entry entry) : IDisposable
    {
        public void Dispose() => owner.Release(entry);
    }
}
