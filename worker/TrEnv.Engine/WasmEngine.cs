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

    /// <summary>Milliseconds per epoch tick; deadlines are expressed in ticks.</summary>
    public const int TickMilliseconds = 1;

    internal EpochTicker.Lease StartDeadline(Store store, TimeSpan timeout)
    {
        var ticks = (ulong)Math.Max(1, Math.Ceiling(timeout.TotalMilliseconds / TickMilliseconds));
        store.SetEpochDeadline(ticks);
        return _ticker.Acquire();
    }

    public void Dispose()
    {
        _ticker.Dispose();
        Linker.Dispose();
        Engine.Dispose();
    }
}

/// <summary>
/// Advances the engine epoch once per millisecond, but only while some guest call is running,
/// so an idle sandbox process costs no wake-ups.
/// </summary>
internal sealed class EpochTicker : IDisposable
{
    private readonly Wasmtime.Engine _engine;
    private readonly Thread _thread;
    private readonly object _gate = new();
    private int _active;
    private bool _disposed;

    public EpochTicker(Wasmtime.Engine engine)
    {
        _engine = engine;
        _thread = new Thread(Run) { IsBackground = true, Name = "trenv-epoch" };
        _thread.Start();
    }

    public Lease Acquire()
    {
        lock (_gate)
        {
            if (_active++ == 0)
                Monitor.PulseAll(_gate);
        }
        return new Lease(this);
    }

    private void Release()
    {
        lock (_gate)
            _active--;
    }

    private void Run()
    {
        while (true)
        {
            lock (_gate)
            {
                while (_active == 0 && !_disposed)
                    Monitor.Wait(_gate);
                if (_disposed)
                    return;
            }
            Thread.Sleep(WasmEngine.TickMilliseconds);
            _engine.IncrementEpoch();
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

    public readonly struct Lease(EpochTicker owner) : IDisposable
    {
        public void Dispose() => owner.Release();
    }
}
