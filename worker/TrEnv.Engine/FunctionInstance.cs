using TrEnv.Contracts;
using Wasmtime;

namespace TrEnv.Engine;

/// <summary>
/// One live WebAssembly instance of a guest: its Store, exports and limits. It serves one call at a
/// time. After a trap or timeout it is poisoned and must be disposed, never reused.
/// </summary>
public sealed partial class FunctionInstance : IDisposable
{
    private readonly WasmEngine _engine;
    private readonly Store _store;
    private readonly Instance _instance;
    private readonly Memory _memory;
    private readonly IGuestAbi _guest;

    private FunctionInstance(WasmEngine engine, GuestModule module, InstanceOptions options, Store store, Instance instance)
    {
        _engine = engine;
        Module = module;
        Options = options;
        _store = store;
        _instance = instance;
        _memory = instance.GetMemory(GuestAbi.Memory)!;
        _guest = GuestAbis.For(this, module, instance, _memory);
        store.SetData(this);
    }

    // What the guest reported through trenv.error during the call in progress.
    private string? _guestError;

    internal void RecordGuestError(Memory? memory, int ptr, int len)
    {
        if (memory is null || ptr < 0 || len < 0 || (long)ptr + len > memory.GetLength())
        {
            _guestError = "The guest reported an error whose message lies outside its memory.";
            return;
        }
        var text = memory.ReadString(ptr, Math.Min(len, GuestAbi.MaxErrorBytes), System.Text.Encoding.UTF8);
        _guestError = len > GuestAbi.MaxErrorBytes ? text + " …" : text;
    }

    internal EngineException? TakeGuestError(string during)
    {
        if (_guestError is not { } message)
            return null;
        _guestError = null;
        return new EngineException(ErrorKinds.Exception, during + message.TrimEnd());
    }

    public GuestModule Module { get; }
    public InstanceOptions Options { get; }

    /// <summary>How this instance reached its post-init state.</summary>
    public StartKind Origin { get; private set; } = StartKind.Cold;
    public bool Initialized { get; private set; }

    /// <summary>Set after a failed call: the guest's state is unknown, so the instance must be discarded.</summary>
    public bool Poisoned { get; private set; }
    public long Invocations { get; private set; }

    public long MemoryBytes => _memory.GetLength();

    /// <summary>
    /// Instantiates the module with WASI wired to the options. Only the module's start function (if any) runs,
    /// under <see cref="InstanceOptions.InitTimeout"/>: a start function that loops is interrupted and answers
    /// <c>timeout</c>.
    /// </summary>
    public static FunctionInstance Create(WasmEngine engine, GuestModule module, InstanceOptions options)
    {
        var store = new Store(engine.Engine);
        try
        {
            store.SetLimits(memorySize: options.MemoryLimitBytes);
            store.SetWasiConfiguration(BuildWasi(options));
            GuestAbis.DefineImports(engine, module);
            Instance instance;
            using (engine.StartDeadline(store, options.InitTimeout))
                instance = engine.Linker.Instantiate(store, module.Module);
            store.SetEpochDeadline(ulong.MaxValue / 2);
            return new FunctionInstance(engine, module, options, store, instance);
        }
        catch (TrapException e) when (e.Type == TrapCode.Interrupt)
        {
            store.Dispose();
            throw new EngineException(ErrorKinds.Timeout,
                $"The instantiation (the module's start function) ran past its deadline of {options.InitTimeout.TotalMilliseconds:0} ms (initTimeoutMs) and was interrupted.", e);
        }
        catch (Exception e) when (e is WasmtimeException or TrapException)
        {
            store.Dispose();
            throw new EngineException(ErrorKinds.InvalidModule, $"The module could not be instantiated: {e.Message}", e);
        }
    }

    private static WasiConfiguration BuildWasi(InstanceOptions options)
    {
        var wasi = new WasiConfiguration().WithArg(GuestAbi.Handle);
        foreach (var (key, value) in options.Environment)
            wasi.WithEnvironmentVariable(key, value);
        wasi.WithStandardOutput(options.StdoutPath ?? "/dev/null");
        wasi.WithStandardError(options.StderrPath ?? "/dev/null");
        if (options.TmpDirectory is { } tmp)
            wasi.WithPreopenedDirectory(tmp, "/tmp", mutable: true);
        foreach (var (host, guest) in options.ReadOnlyDirectories)
            wasi.WithPreopenedDirectory(host, guest, mutable: false);
        return wasi;
    }

    /// <summary>Runs the guest's initialisation (_initialize, then trenv_init) once: a cold start.</summary>
    public void Initialize()
    {
        if (Initialized)
            throw new InvalidOperationException("The instance is already initialised.");
        Guard("initialisation", Options.InitTimeout, () =>
        {
            if (Module.HasInitialize)
                _instance.GetAction(GuestAbi.Initialize)!();
            _guest.Initialize(Options.TmpDirectory);
            return 0;
        });
        if (TakeGuestError("The function's initialisation failed: ") is { } failed)
            throw failed;
        Initialized = true;
        Origin = StartKind.Cold;
    }

    /// <summary>
    /// Runs one invocation: copies the input in through trenv_alloc, calls trenv_handle, copies the output out.
    /// <paramref name="timeout"/> overrides <see cref="InstanceOptions.Timeout"/> for this call.
    /// </summary>
    public byte[] Invoke(ReadOnlySpan<byte> input, TimeSpan? timeout = null)
    {
        if (!Initialized)
            throw new EngineException(ErrorKinds.NotLoaded, "The instance has not been initialised or restored.");
        if (Poisoned)
            throw new EngineException(ErrorKinds.Internal, "The instance failed earlier and must be discarded.");
        if (input.Length > Options.MaxInputBytes)
            throw new EngineException(ErrorKinds.InputTooLarge, $"The input is {input.Length} bytes; the limit is {Options.MaxInputBytes} bytes.");
        CheckPoolStillBacksMappings();

        var faultsBefore = SigbusGuard.Faults;
        // Inline rather than through Guard: the input span cannot be captured, and the hot path copies it once.
        var deadline = timeout ?? Options.Timeout;
        var before = _memory.GetLength();
        byte[] output;
        using (_engine.StartDeadline(_store, deadline))
        {
            try
            {
                _guestError = null;
                output = _guest.Invoke(input);
            }
            catch (WasmtimeException e)
            {
                throw Failed("invocation", e, deadline, before);
            }
            catch (EngineException)
            {
                Invocations++; // the guest returned: its state may have changed (a delta scan must not be reused)
                throw;
            }
        }
        Invocations++;
        ThrowIfPoolFaulted(faultsBefore);
        return output;
    }

    /// <summary>After a call whose result cannot be trusted: the instance must be discarded.</summary>
    internal void Poison() => Poisoned = true;

    internal Span<byte> GuestSpan(int ptr, int len, string producer)
    {
        var memoryLength = _memory.GetLength();
        if (len < 0 || (uint)ptr + (ulong)(uint)len > (ulong)memoryLength || (ptr == 0 && len > 0 && producer == GuestAbi.Alloc))
        {
            Poisoned = true;
            throw new EngineException(ErrorKinds.Trap, $"{producer} returned the range [{(uint)ptr}, +{(uint)len}) which is outside linear memory of {memoryLength} bytes.");
        }
        return _memory.GetSpan((uint)ptr, len);
    }

    // Runs guest code under a deadline and turns every failure into an EngineException with a kind.
    private T Guard<T>(string phase, TimeSpan timeout, Func<T> call)
    {
        var before = _memory.GetLength();
        using (_engine.StartDeadline(_store, timeout))
        {
            try
            {
                return call();
            }
            catch (WasmtimeException e)
            {
                throw Failed(phase, e, timeout, before);
            }
        }
    }

    private EngineException Failed(string phase, WasmtimeException e, TimeSpan timeout, long memoryBefore)
    {
        Poisoned = true;
        return Classify(phase, e, (e as TrapException)?.Type, timeout, memoryBefore);
    }

    private EngineException Classify(string phase, Exception e, TrapCode? code, TimeSpan timeout, long memoryBefore)
    {
        if (code == TrapCode.Interrupt)
            return new EngineException(ErrorKinds.Timeout, $"The {phase} ran past its deadline of {timeout.TotalMilliseconds:0} ms{(phase == "invocation" ? "" : " (initTimeoutMs)")} and was interrupted.", e);
        var length = _memory.GetLength();
        var remaining = Options.MemoryLimitBytes - length;
        if (remaining <= Math.Max(16L << 20, Options.MemoryLimitBytes / 8) && length >= memoryBefore)
            return new EngineException(ErrorKinds.Memory, $"The {phase} failed at {length >> 20} MiB of linear memory, at the memory limit of {Options.MemoryLimitBytes >> 20} MiB: {Describe(e)}", e);
        return new EngineException(ErrorKinds.Trap, $"The guest trapped during {phase}: {Describe(e)}", e);
    }

    // Wasmtime's message is "error while executing at wasm backtrace: <frames> Caused by: 0: <detail> 1: wasm trap: <reason>";
    // keep the reason, its detail and the innermost named guest function.
    private static string Describe(Exception e)
    {
        var lines = e.Message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var caused = Array.FindIndex(lines, l => l.StartsWith("Caused by", StringComparison.Ordinal));
        var causes = caused < 0 ? [lines.FirstOrDefault() ?? e.GetType().Name]
            : lines[(caused + 1)..].Select(l => System.Text.RegularExpressions.Regex.Replace(l, @"^\d+: ", "").Replace("wasm trap: ", "", StringComparison.Ordinal)).ToArray();
        var reason = causes.Length > 1 ? $"{causes[^1]} ({string.Join("; ", causes[..^1])})" : causes.FirstOrDefault() ?? e.GetType().Name;
        if (e is WasmtimeException { ExitCode: { } code })
            reason = $"the guest called proc_exit with exit status {code}";
        var frame = (e as WasmtimeException)?.Frames?.FirstOrDefault(f => f.FunctionName is not null)?.FunctionName;
        return frame is null ? reason : $"{reason} (in {frame})";
    }

    public void Dispose()
    {
        ReleaseGuard();
        _store.Dispose();
    }
}
