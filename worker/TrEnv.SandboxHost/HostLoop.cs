using System.Diagnostics;
using Microsoft.Win32.SafeHandles;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.SandboxHost;

/// <summary>Serves sandbox requests one by one. Any failure becomes a Failure reply; the loop keeps going.</summary>
internal sealed partial class HostLoop : IDisposable
{
    private const int MaxLogBytesPerReply = 64 << 10;
    // What one call may write to stdout and stderr together (a tmpfs of this size; past it writes fail with ENOSPC).
    private const long LogBytesPerCall = 16L << 20;

    private readonly WasmEngine _engine = new();
    private readonly string _tmpDirectory;
    private readonly string _stdoutPath;
    private readonly string _stderrPath;
    // WASI reopens the log files with O_TRUNC per instance, so the inode and these handles stay valid.
    private readonly SafeFileHandle _stdoutLog;
    private readonly SafeFileHandle _stderrLog;

    private FunctionInstance? _instance;
    private Load? _loaded;
    private long _stdoutOffset;
    private long _stderrOffset;

    private readonly SandboxFiles _files;

    public HostLoop(string workDirectory, bool ownMountNamespace)
    {
        _files = new SandboxFiles(workDirectory, ownMountNamespace);
        _tmpDirectory = _files.GuestTmp;
        var logs = Path.Combine(workDirectory, "log");
        Directory.CreateDirectory(_tmpDirectory);
        Directory.CreateDirectory(logs);
        if (ownMountNamespace && MountTmpfs("tmpfs", logs, "tmpfs", 2 | 4 | 8, $"size={LogBytesPerCall},nr_inodes=16,mode=0700") != 0)
            throw new IOException($"Mounting the guest's log tmpfs on {logs} failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}.");
        _stdoutPath = Path.Combine(logs, "stdout");
        _stderrPath = Path.Combine(logs, "stderr");
        File.WriteAllBytes(_stdoutPath, []);
        File.WriteAllBytes(_stderrPath, []);
        _stdoutLog = File.OpenHandle(_stdoutPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        _stderrLog = File.OpenHandle(_stderrPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        Warmup.Run(_engine, Path.Combine(workDirectory, "warmup"));
    }

    public int Run(Stream input, Stream output)
    {
        var frames = new FrameStreamReader(input);
        while (true)
        {
            (byte Type, byte[] Payload)? frame;
            try
            {
                frame = frames.Read();
            }
            catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException)
            {
                Console.Error.WriteLine($"sandbox: protocol error, exiting: {e.Message}");
                return 3;
            }
            if (frame is not { } f || f.Type == ShutdownType)
                return 0;

            ISandboxReply reply;
            try
            {
                reply = Handle(ReadRequest(f.Type, f.Payload));
            }
            catch (EngineException e)
            {
                reply = Fail(e.Kind, e.Message);
            }
            catch (InvalidDataException e)
            {
                reply = new Failure(ErrorKinds.Internal, $"Malformed request: {e.Message}", false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
            {
                reply = Fail(ErrorKinds.Internal, e.Message);
            }
            var writer = new FrameWriter();
            reply.Write(writer);
            Framing.WriteFrame(output, reply.Type, writer.Written.Span);
        }
    }

    // The request being served, for the log line of its failure.
    private (string Event, string? InvocationId, string? Function) _current;

    private ISandboxReply Handle(ISandboxRequest request)
    {
        _current = request switch
        {
            Load l => ("load", l.Instance.InvocationId, l.Instance.Function),
            Invoke i => ("invoke", i.InvocationId, _loaded?.Instance.Function),
            _ => (request.GetType().Name.ToLowerInvariant(), null, _loaded?.Instance.Function),
        };
        return Dispatch(request);
    }

    private ISandboxReply Dispatch(ISandboxRequest request) => request switch
    {
        Load load => DoLoad(load),
        Invoke invoke => DoInvoke(invoke),
        Capture capture => DoCapture(capture),
        Reset => DoReset(),
        Stats => DoStats(),
        _ => throw new InvalidDataException($"Unexpected request {request.GetType().Name}."),
    };

    /// <summary>
    /// A line per successful call only when the worker logs at debug (its TRENV_LOG_LEVEL, inherited): at
    /// information a line per call costs throughput, and loads and failures are logged either way.
    /// </summary>
    private static readonly bool LogsEveryInvocation =
        Environment.GetEnvironmentVariable("TRENV_LOG_LEVEL")?.Trim().ToLowerInvariant() is "debug" or "trace";

    private Invoked DoInvoke(Invoke invoke)
    {
        if (_instance is null)
            throw new EngineException(ErrorKinds.NotLoaded, "No function is loaded in this sandbox.");
        var at = HostSpan.Sampled(invoke.TraceParent) ? HostSpan.NowUnixMicros() : 0;
        var started = Stopwatch.GetTimestamp();
        var output = _instance.Invoke(invoke.Input, invoke.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(invoke.TimeoutMs) : null);
        var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        if (LogsEveryInvocation)
            SandboxLog.Write(Console.Error, "invoke", invoke.InvocationId, _loaded?.Instance.Function, ("micros", micros), ("inputBytes", invoke.Input.Length), ("outputBytes", output.Length));
        return new Invoked(output, micros, ReadLog(_stdoutLog, ref _stdoutOffset), ReadLog(_stderrLog, ref _stderrOffset))
        {
            Spans = at == 0 ? [] : [new HostSpan("trenv.guest.call", at, micros, -1,
                [new("faas.name", _loaded?.Instance.Function ?? ""), new("trenv.input_bytes", invoke.Input.Length.ToString(System.Globalization.CultureInfo.InvariantCulture))])],
        };
    }

    private ResetDone DoReset()
    {
        var started = Stopwatch.GetTimestamp();
        DropInstance();
        _files.Clear();
        RandomAccess.SetLength(_stdoutLog, 0);
        RandomAccess.SetLength(_stderrLog, 0);
        _stdoutOffset = _stderrOffset = 0;
        return new ResetDone((long)Stopwatch.GetElapsedTime(started).TotalMicroseconds);
    }

    private StatsReply DoStats()
    {
        long rss = 0, pss = 0;
        foreach (var line in File.ReadLines("/proc/self/smaps_rollup"))
        {
            if (line.StartsWith("Rss:", StringComparison.Ordinal))
                rss = ParseKb(line);
            else if (line.StartsWith("Pss:", StringComparison.Ordinal))
                pss = ParseKb(line);
        }
        return new StatsReply(Environment.ProcessId, rss, pss, _instance?.MemoryBytes ?? 0, _loaded?.Instance.Function, _instance?.Invocations ?? 0,
            System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported ? "jit" : "aot");
    }

    private static long ParseKb(string line)
        => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;

    // After any failure the instance may be half-run: drop it so the sandbox is clean for the next load.
    private Failure Fail(string kind, string message)
    {
        var discarded = _instance is { Poisoned: true } || _instance is { Initialized: false };
        SandboxLog.Write(Console.Error, _current.Event + "-failed", _current.InvocationId, _current.Function, ("kind", kind), ("message", message), ("discarded", discarded));
        // What the guest wrote before failing (a script's traceback) still reaches the function's log.
        var stdout = ReadLog(_stdoutLog, ref _stdoutOffset);
        var stderr = ReadLog(_stderrLog, ref _stderrOffset);
        if (discarded)
            DropInstance();
        return new Failure(kind, message, discarded || _instance is null, stdout, stderr);
    }

    private void DropInstance()
    {
        _instance?.Dispose();
        _instance = null;
        _loaded = null;
    }

    private static byte[] ReadLog(SafeFileHandle handle, ref long offset)
    {
        var length = RandomAccess.GetLength(handle);
        if (length <= offset)
        {
            offset = length;
            return [];
        }
        var start = Math.Max(offset, length - MaxLogBytesPerReply);
        var buffer = new byte[length - start];
        var read = RandomAccess.Read(handle, buffer, start);
        offset = length;
        // The guest's descriptor writes on at its own offset, so the file is not truncated: what was read is
        // punched out instead, and a warm instance's output never holds more than one call's worth of space.
        PunchHole((int)handle.DangerousGetHandle(), FallocPunchHole | FallocKeepSize, 0, length);
        return read == buffer.Length ? buffer : buffer[..read];
    }

    private const int FallocKeepSize = 1, FallocPunchHole = 2;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int PunchHole(int fd, int mode, long offset, long length);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int MountTmpfs(string source, string target, string fstype, ulong flags, string data);

    public void Dispose()
    {
        DropInstance();
        _files.Clear();
        foreach (var m in _modules.Values)
            m.Dispose();
        foreach (var p in _pools.Values)
            p.Dispose();
        _engine.Dispose();
        _stdoutLog.Dispose();
        _stderrLog.Dispose();
    }
}
