using System.Diagnostics;
using System.Text;
using TrEnv.Contracts;
using TrEnv.Sandbox.Isolation;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Sandbox;

/// <summary>A request to a sandbox failed; <see cref="Kind"/> is an <see cref="ErrorKinds"/> value.</summary>
public sealed class SandboxException(string kind, string message, bool instanceDiscarded, byte[]? stdout = null, byte[]? stderr = null) : Exception(message)
{
    public string Kind { get; } = kind;
    public bool InstanceDiscarded { get; } = instanceDiscarded;

    /// <summary>What the guest wrote before it failed, for the function's log.</summary>
    public byte[] Stdout { get; } = stdout ?? [];
    public byte[] Stderr { get; } = stderr ?? [];
}

/// <summary>
/// The worker's handle on one sandbox host process. Requests are serialised; a request that outlives
/// its hard deadline kills the process, so a wedged guest can never hang its caller.
/// </summary>
public sealed class SandboxProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Stream _toHost;
    private readonly Stream _fromHost;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly StringBuilder _stderrTail = new();
    private bool _dead;

    private readonly long _oomBaseline;

    private SandboxProcess(Process process, string workDirectory, TimeSpan hardDeadlineGrace, SandboxCgroup? cgroup)
    {
        _process = process;
        HardDeadlineGrace = hardDeadlineGrace;
        Cgroup = cgroup;
        _oomBaseline = cgroup?.OomKills() ?? 0;
        WorkDirectory = workDirectory;
        _toHost = process.StandardInput.BaseStream;
        _fromHost = process.StandardOutput.BaseStream;
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            // The host's structured lines (one JSON object each) go to the worker's log, not the crash tail.
            if (e.Data.StartsWith(SandboxLog.Prefix, StringComparison.Ordinal))
            {
                LogLine?.Invoke(this, e.Data);
                return;
            }
            lock (_stderrTail)
            {
                _stderrTail.AppendLine(e.Data);
                if (_stderrTail.Length > 8192)
                    _stderrTail.Remove(0, _stderrTail.Length - 8192);
            }
        };
        process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;

    /// <summary>Raised (on a thread-pool thread) for each structured log line the host writes; see <see cref="SandboxLog"/>.</summary>
    public event Action<SandboxProcess, string>? LogLine;

    /// <summary>
    /// Memory this sandbox holds: its cgroup's charge when it has one, else the proportional set size of the
    /// host (and its unshare parent), so shared template pages count once across sandboxes.
    /// </summary>
    public long ChargedMemoryBytes()
    {
        if (Cgroup is { } cg)
            return cg.MemoryUsage();
        var total = Isolation.ProcessMemory.PssBytes(Pid);
        if (Isolation.Namespaces.ChildOf(Pid) is { } child)
            total += Isolation.ProcessMemory.PssBytes(child);
        return total;
    }

    /// <summary>The sandbox's cgroup when the worker runs with cgroups; limits are reset per function.</summary>
    public SandboxCgroup? Cgroup { get; }
    public string WorkDirectory { get; }
    public bool IsAlive => !_dead && !_process.HasExited;

    /// <summary>Extra time beyond a guest deadline before the process is killed rather than trusted to answer.</summary>
    public TimeSpan HardDeadlineGrace { get; }

    public static readonly TimeSpan DefaultHardDeadlineGrace = TimeSpan.FromSeconds(5);

    public string StderrTail
    {
        get
        {
            lock (_stderrTail)
                return _stderrTail.ToString();
        }
    }

    /// <summary>Starts a host process with nothing loaded; <paramref name="workDirectory"/> holds its /tmp and logs.</summary>
    public static SandboxProcess Start(SandboxHostCommand host, string workDirectory, TimeSpan? hardDeadlineGrace = null, SandboxCgroup? cgroup = null)
    {
        Directory.CreateDirectory(workDirectory);
        // With a cgroup, a shell joins it and then execs the host (or its unshare wrapper), so every process
        // of the sandbox starts inside the group: no window in which a forked child escapes its limits.
        var command = cgroup is null
            ? host.Arguments.Prepend(host.FileName).ToList()
            : ["-c", "echo $$ > \"$1/cgroup.procs\" && echo $$ > \"$2/cgroup.procs\" && shift 2 && exec \"$@\"", "sh",
               cgroup.MemoryPath, cgroup.CpuPath, host.FileName, .. host.Arguments];
        var psi = new ProcessStartInfo(cgroup is null ? command[0] : "/bin/sh")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in cgroup is null ? command.Skip(1) : command)
            psi.ArgumentList.Add(arg);
        psi.ArgumentList.Add("--workdir");
        psi.ArgumentList.Add(workDirectory);
        psi.Environment["DOTNET_gcServer"] = "0";
        psi.Environment["DOTNET_TieredPGO"] = "0";
        var process = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start the sandbox host {host.FileName}.");
        return new SandboxProcess(process, workDirectory, hardDeadlineGrace ?? DefaultHardDeadlineGrace, cgroup);
    }

    public async Task<Loaded> LoadAsync(Load load, CancellationToken ct = default)
    {
        var (traced, parent) = Traced(load);
        var loaded = Expect<Loaded>(await CallAsync(traced, TimeSpan.FromMilliseconds(load.Instance.InitTimeoutMs) + TimeSpan.FromSeconds(30), ct).ConfigureAwait(false));
        HostSpans.Emit(loaded.Spans, parent, Pid);
        return loaded;
    }

    public async Task<Invoked> InvokeAsync(byte[] input, TimeSpan timeout, CancellationToken ct = default, string? invocationId = null)
    {
        var parent = Activity.Current?.Context ?? default;
        var invoked = Expect<Invoked>(await CallAsync(new Invoke(input, (int)timeout.TotalMilliseconds, invocationId, HostSpans.CurrentTraceParent()), timeout, ct).ConfigureAwait(false));
        HostSpans.Emit(invoked.Spans, parent, Pid);
        return invoked;
    }

    // A load carries the caller's span, so the host times its steps when that span is recorded.
    private static (Load Load, ActivityContext Parent) Traced(Load load)
        => HostSpans.CurrentTraceParent() is { } traceParent
            ? (load with { Instance = load.Instance with { TraceParent = traceParent } }, Activity.Current!.Context)
            : (load, default);

    /// <summary>
    /// Where the pool pages this sandbox writes in a capture are charged (a group of the node's), so they never
    /// count against this sandbox's limit or the next guest's; null charges them to the sandbox's own group.
    /// </summary>
    public SandboxCgroup? PoolCharges { get; set; }

    public async Task<Captured> CaptureAsync(Capture capture, CancellationToken ct = default)
    {
        if (Cgroup is { } own && PoolCharges is { } pool && capture.RegionLength > 0)
            return await own.ChargedToAsync(pool, () => CaptureCoreAsync(capture, ct)).ConfigureAwait(false);
        return await CaptureCoreAsync(capture, ct).ConfigureAwait(false);
    }

    private async Task<Captured> CaptureCoreAsync(Capture capture, CancellationToken ct)
        => Expect<Captured>(await CallAsync(capture, TimeSpan.FromMinutes(2), ct).ConfigureAwait(false));

    public async Task<ResetDone> ResetAsync(CancellationToken ct = default)
        => Expect<ResetDone>(await CallAsync(new Reset(), TimeSpan.FromSeconds(10), ct).ConfigureAwait(false));

    public async Task<StatsReply> StatsAsync(CancellationToken ct = default)
        => Expect<StatsReply>(await CallAsync(new Stats(), TimeSpan.FromSeconds(10), ct).ConfigureAwait(false));

    private static T Expect<T>(ISandboxReply reply) where T : ISandboxReply => reply switch
    {
        T ok => ok,
        Failure f => throw new SandboxException(f.Kind, f.Message, f.InstanceDiscarded, f.Stdout, f.Stderr),
        _ => throw new SandboxException(ErrorKinds.Internal, $"The sandbox answered {reply.GetType().Name} where {typeof(T).Name} was expected.", true),
    };

    /// <summary>
    /// Repurposes the sandbox in one round trip: the reset and the next load go out together, so the host
    /// starts the load the moment the reset is done instead of waiting for this process to ask.
    /// </summary>
    public async Task<(ResetDone Reset, Loaded Loaded)> ResetAndLoadAsync(Load load, CancellationToken ct = default)
    {
        var (traced, parent) = Traced(load);
        var replies = await CallManyAsync([new Reset(), traced], TimeSpan.FromMilliseconds(load.Instance.InitTimeoutMs) + TimeSpan.FromSeconds(40), ct).ConfigureAwait(false);
        var loaded = Expect<Loaded>(replies[1]);
        HostSpans.Emit(loaded.Spans, parent, Pid);
        return (Expect<ResetDone>(replies[0]), loaded);
    }

    private async Task<ISandboxReply> CallAsync(ISandboxRequest request, TimeSpan guestDeadline, CancellationToken ct)
        => (await CallManyAsync([request], guestDeadline, ct).ConfigureAwait(false))[0];

    private async Task<ISandboxReply[]> CallManyAsync(ISandboxRequest[] requests, TimeSpan guestDeadline, CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (!IsAlive)
                throw Crashed("is not running");
            var frames = new List<byte[]>(requests.Length);
            foreach (var request in requests)
            {
                var writer = new FrameWriter();
                request.Write(writer);
                frames.Add(Framing.Frame(request.Type, writer.Written.Span));
            }
            using var hard = CancellationTokenSource.CreateLinkedTokenSource(ct);
            hard.CancelAfter(guestDeadline + HardDeadlineGrace);
            try
            {
                // One write for all of them: one wake-up of the host.
                var all = frames.Count == 1 ? frames[0] : frames.SelectMany(f => f).ToArray();
                await _toHost.WriteAsync(all, hard.Token).ConfigureAwait(false);
                await _toHost.FlushAsync(hard.Token).ConfigureAwait(false);
                var replies = new ISandboxReply[requests.Length];
                for (var i = 0; i < replies.Length; i++)
                {
                    var frame = await Framing.ReadFrameAsync(_fromHost, hard.Token).ConfigureAwait(false);
                    if (frame is not { } f)
                        throw Crashed("closed its channel");
                    replies[i] = ReadReply(f.Type, f.Payload);
                }
                // A warm call's answer and a template load's go straight on; whatever follows another load, a
                // capture or a reset (which may run long) leaves the thread that read it, which can be the socket
                // engine's (see the worker's Program).
                if (requests is not ([Invoke] or [LoadFromTemplate] or [Reset, LoadFromTemplate]))
                    await Task.Yield();
                return replies;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                Kill();
                throw new SandboxException(ErrorKinds.Timeout, $"The sandbox did not answer within {(guestDeadline + HardDeadlineGrace).TotalSeconds:0.#} s and was killed.", true);
            }
            catch (OperationCanceledException)
            {
                // The caller gave up mid-request: the channel is now out of step, so the sandbox cannot be trusted.
                Kill();
                throw;
            }
            catch (Exception e) when (e is IOException or InvalidDataException)
            {
                Kill();
                throw Crashed($"broke the protocol ({e.Message})");
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private SandboxException Crashed(string what)
    {
        _dead = true;
        string exit;
        try
        {
            exit = _process.WaitForExit(1000) ? $"exit code {_process.ExitCode}" : "still running";
        }
        catch (InvalidOperationException)
        {
            exit = "unknown exit";
        }
        if (Cgroup is { } cg && cg.OomKills() > _oomBaseline)
            return new SandboxException(ErrorKinds.Memory, $"The sandbox process {Pid} was killed by the out-of-memory killer at its cgroup memory limit; the sandbox is discarded.", true);
        var tail = StderrTail.Trim();
        return new SandboxException(ErrorKinds.SandboxCrashed,
            $"The sandbox process {Pid} {what} ({exit}){(tail.Length > 0 ? ": " + tail[Math.Max(0, tail.Length - 500)..] : ".")}", true);
    }

    public void Kill()
    {
        _dead = true;
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (IsAlive)
        {
            try
            {
                await _gate.WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
                await Framing.WriteFrameAsync(_toHost, ShutdownType, ReadOnlyMemory<byte>.Empty).ConfigureAwait(false);
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or InvalidOperationException)
            {
            }
        }
        Kill();
        try
        {
            using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _process.WaitForExitAsync(exited.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _process.Dispose();
        _gate.Dispose();
        Cgroup?.Dispose();
    }
}

/// <summary>How to start the sandbox host: the published executable (NativeAOT or JIT apphost) or <c>dotnet TrEnv.SandboxHost.dll</c>.</summary>
public sealed record SandboxHostCommand(string FileName, IReadOnlyList<string> Arguments, string Kind)
{
    /// <summary>How the host process is isolated: "process" (plain) or "namespaces" (see <see cref="Isolation.Namespaces"/>).</summary>
    public string Isolation { get; init; } = "process";

    public const string ExecutableName = "TrEnv.SandboxHost";

    /// <summary>
    /// Resolves the host from <c>TRENV_SANDBOX_HOST</c> (a publish directory or the executable), else the
    /// build output beside the calling assembly.
    /// </summary>
    public static SandboxHostCommand Resolve(string? configured = null)
    {
        configured ??= Environment.GetEnvironmentVariable("TRENV_SANDBOX_HOST");
        if (!string.IsNullOrEmpty(configured))
        {
            var exe = Directory.Exists(configured) ? Path.Combine(configured, ExecutableName) : configured;
            if (!File.Exists(exe))
                throw new FileNotFoundException($"TRENV_SANDBOX_HOST points at {configured}, which has no {ExecutableName} executable.");
            var kindFile = Path.Combine(Path.GetDirectoryName(exe)!, "KIND");
            var kind = File.Exists(kindFile) ? File.ReadAllText(kindFile).Trim() : "native";
            return new SandboxHostCommand(exe, [], kind);
        }
        var dll = Path.Combine(AppContext.BaseDirectory, ExecutableName + ".dll");
        if (File.Exists(dll))
            return new SandboxHostCommand("dotnet", [dll], "jit");
        throw new FileNotFoundException($"No sandbox host found: set TRENV_SANDBOX_HOST to artifacts/sandbox-host (scripts/publish-host.sh makes it).");
    }
}
