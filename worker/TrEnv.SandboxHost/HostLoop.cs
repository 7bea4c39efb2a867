using System.Diagnostics;
using Microsoft.Win32.SafeHandles;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.SandboxHost;

/// <summary>Serves sandbox requests one by one. Any failure becomes a Failure reply; the loop keeps going.</summary>
internal sealed partial class HostLoop : IDisposable
{
    private const int MaxLogBytesPerReply = 64 << 10;
    // What one call may write to stdout and stderr together (a tmpfs of this size; past it writes fail with ENOSPC).
    private const long LogBytesPerCall = 16L << 20;
    private const int MaxCachedModules = 8;

    private readonly WasmEngine _engine = new();
    private readonly string _tmpDirectory;
    private readonly string _stdoutPath;
    private readonly string _stderrPath;
    // WASI reopens the log files with O_TRUNC per instance, so the inode and these handles stay valid.
    private readonly SafeFileHandle _stdoutLog;
    private readonly SafeFileHandle _stderrLog;
    private readonly Dictionary<string, ModuleCache> _caches = new(StringComparer.Ordinal);
    private readonly Dictionary<string, GuestModule> _modules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SafeFileHandle> _pools = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string?> _poolIdentities = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long Length, DateTime Modified, TemplateHeader Header)> _templates = new(StringComparer.Ordinal);
    private readonly HashSet<string> _verifiedTemplates = new(StringComparer.Ordinal);

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
        while (true)
        {
            (byte Type, byte[] Payload)? frame;
            try
            {
                frame = Framing.ReadFrame(input);
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
            Load l => ("load", l.InvocationId, l.Function),
            Invoke i => ("invoke", i.InvocationId, _loaded?.Function),
            _ => (request.GetType().Name.ToLowerInvariant(), null, _loaded?.Function),
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

    private Loaded DoLoad(Load load)
    {
        var started = Stopwatch.GetTimestamp();
        DropInstance();
        if (!ModuleHash.IsValid(load.ModuleHash))
            throw new InvalidModuleException($"\"{load.ModuleHash}\" is not a module hash.");

        var wasCached = _modules.TryGetValue(load.ModuleHash, out var module);
        if (module is null)
        {
            // A repurposed sandbox serves many functions over its life: keep only the most recent modules.
            if (_modules.Count >= MaxCachedModules)
            {
                foreach (var old in _modules.Keys.Except([_loaded?.ModuleHash ?? ""]).Take(_modules.Count - MaxCachedModules + 1).ToList())
                {
                    _modules[old].Dispose();
                    _modules.Remove(old);
                }
            }
            var cache = CacheFor(load.ModuleDirectory);
            wasCached = File.Exists(cache.CompiledPath(new ModuleHash(load.ModuleHash)));
            module = cache.Load(new ModuleHash(load.ModuleHash));
            _modules[load.ModuleHash] = module;
        }

        var options = new InstanceOptions
        {
            MemoryLimitBytes = load.MemoryLimitBytes,
            Timeout = TimeSpan.FromMilliseconds(load.TimeoutMs),
            InitTimeout = TimeSpan.FromMilliseconds(load.InitTimeoutMs),
            Environment = load.Environment.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal),
            TmpDirectory = _tmpDirectory,
            StdoutPath = _stdoutPath,
            StderrPath = _stderrPath,
            ReadOnlyDirectories = load.ReadOnlyDirectories ?? [],
        };
        _stdoutOffset = _stderrOffset = 0;
        var files = Stopwatch.GetTimestamp();
        _files.Prepare(load.LayerPath, load.TmpBytes);
        var filesMicros = (long)Stopwatch.GetElapsedTime(files).TotalMicroseconds;
        _instance = FunctionInstance.Create(_engine, module, options);
        switch (load.Source)
        {
            case LoadSource.Init:
                _instance.Initialize();
                break;
            case LoadSource.CopyTemplate when load.TemplatePath is null && load.DeltaPath is not null && load.PoolPath is not null:
                // A session of a function without a template: its full image, copied in, not reseeded.
                _instance.Restore(TemplateHeader.Read(load.DeltaPath), PoolFor(load.PoolPath), RestoreMode.Copy, reseed: false);
                break;
            case LoadSource.MapTemplate or LoadSource.CopyTemplate or LoadSource.LazyTemplate:
                if (load.TemplatePath is null || load.PoolPath is null)
                    throw new TemplateInvalidException("A template load needs both a template path and a pool path.");
                var header = TemplateFor(load.TemplatePath);
                var pool = PoolFor(load.PoolPath);
                if (load.VerifyTemplateData && _verifiedTemplates.Add(load.TemplatePath))
                {
                    try
                    {
                        FunctionInstance.VerifyData(header, pool);
                    }
                    catch
                    {
                        _verifiedTemplates.Remove(load.TemplatePath);
                        throw;
                    }
                }
                if (load.Source == LoadSource.LazyTemplate)
                    LazyPages.Start(load.PageSocket ?? throw new TemplateInvalidException("A lazy template load needs the page server's socket."));
                // A session's delta is read afresh every time: it is written once per pause and used once.
                var delta = load.DeltaPath is null ? null : TemplateHeader.Read(load.DeltaPath);
                _instance.Restore(header, pool, load.Source switch
                {
                    LoadSource.MapTemplate => RestoreMode.Map,
                    LoadSource.LazyTemplate => RestoreMode.Lazy,
                    _ => RestoreMode.Copy,
                }, delta, delta is null ? null : pool);
                break;
            default:
                throw new InvalidDataException($"Unknown load source {load.Source}.");
        }
        _loaded = load;
        var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        SandboxLog.Write(Console.Error, "load", load.InvocationId, load.Function, ("source", load.Source.ToString().ToLowerInvariant()),
            ("origin", _instance.Origin.ToString().ToLowerInvariant()), ("moduleCached", wasCached), ("micros", micros), ("memoryBytes", _instance.MemoryBytes));
        return new Loaded(_instance.Origin, wasCached, micros, _instance.MemoryBytes, ReadLog(_stdoutLog, ref _stdoutOffset), ReadLog(_stderrLog, ref _stderrOffset), filesMicros);
    }

    private Invoked DoInvoke(Invoke invoke)
    {
        if (_instance is null)
            throw new EngineException(ErrorKinds.NotLoaded, "No function is loaded in this sandbox.");
        var started = Stopwatch.GetTimestamp();
        var output = _instance.Invoke(invoke.Input, invoke.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(invoke.TimeoutMs) : null);
        var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        SandboxLog.Write(Console.Error, "invoke", invoke.InvocationId, _loaded?.Function, ("micros", micros), ("inputBytes", invoke.Input.Length), ("outputBytes", output.Length));
        return new Invoked(output, micros, ReadLog(_stdoutLog, ref _stdoutOffset), ReadLog(_stderrLog, ref _stderrOffset));
    }

    // The last delta scan, reused by the write that follows its size probe when nothing ran in between.
    private (FunctionInstance Instance, long Invocations, string? Base, IReadOnlyList<FunctionInstance.DeltaRun> Runs, long Dirty)? _deltaScan;

    private Captured DoCapture(Capture capture)
    {
        if (_instance is null)
            throw new EngineException(ErrorKinds.NotLoaded, "No function is loaded in this sandbox.");
        var started = Stopwatch.GetTimestamp();
        if (capture.Delta || capture.BaseTemplatePath is not null)
            return DoCaptureDelta(capture, started);
        var required = _instance.CaptureSize();
        if (capture.RegionLength < required)
            return new Captured(required, false, required / TemplateHeader.PageSize, _instance.MemoryBytes, 0);
        using var pool = File.OpenHandle(capture.PoolPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var header = _instance.Capture(pool, new Region(capture.RegionOffset, capture.RegionLength), capture.CapturedBy);
        header.Write(capture.HeaderPath);
        var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        return new Captured(required, true, header.NonZeroPages, header.MemoryBytes, micros);
    }

    private Captured DoCaptureDelta(Capture capture, long started)
    {
        var instance = _instance!;
        var baseHeader = capture.BaseTemplatePath is null ? null : TemplateFor(capture.BaseTemplatePath);
        var basePool = baseHeader is null ? null : PoolFor(capture.PoolPath);
        IReadOnlyList<FunctionInstance.DeltaRun> runs;
        long dirty;
        if (_deltaScan is { } scan && scan.Instance == instance && scan.Invocations == instance.Invocations && scan.Base == capture.BaseTemplatePath)
            (runs, dirty) = (scan.Runs, scan.Dirty);
        else
            runs = instance.ScanDelta(baseHeader, basePool, out dirty);
        _deltaScan = (instance, instance.Invocations, capture.BaseTemplatePath, runs, dirty);
        var required = runs.Where(r => !r.Zero).Sum(r => r.Length);
        var dataPages = required / TemplateHeader.PageSize;
        if (capture.RegionLength < required) // nothing changed (0 bytes) is written at once, with no region
            return new Captured(required, false, dataPages, instance.MemoryBytes, 0, dirty);
        using var pool = File.OpenHandle(capture.PoolPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var header = instance.CaptureDelta(runs, baseHeader, pool, new Region(capture.RegionOffset, capture.RegionLength), capture.CapturedBy);
        header.Write(capture.HeaderPath);
        _deltaScan = null;
        var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        SandboxLog.Write(Console.Error, "pause", null, _loaded?.Function, ("micros", micros), ("storedBytes", required), ("zeroPages", runs.Where(r => r.Zero).Sum(r => r.Length) / TemplateHeader.PageSize),
            ("memoryBytes", instance.MemoryBytes), ("dirtyPages", dirty));
        return new Captured(required, true, dataPages, instance.MemoryBytes, micros, dirty);
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
        return new StatsReply(Environment.ProcessId, rss, pss, _instance?.MemoryBytes ?? 0, _loaded?.Function, _instance?.Invocations ?? 0,
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

    private ModuleCache CacheFor(string directory)
    {
        if (!_caches.TryGetValue(directory, out var cache))
            _caches[directory] = cache = new ModuleCache(_engine, directory);
        return cache;
    }

    private SafeFileHandle PoolFor(string path)
    {
        // A pool lost and created again is another file: drop the handle on the old one and its checks.
        var identity = PoolDevice.Identity(path);
        if (_pools.TryGetValue(path, out var cached) && _poolIdentities.GetValueOrDefault(path) != identity)
        {
            cached.Dispose();
            _pools.Remove(path);
            _verifiedTemplates.Clear();
        }
        _poolIdentities[path] = identity;
        if (!_pools.TryGetValue(path, out var handle))
        {
            try
            {
                handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            }
            catch (IOException e)
            {
                throw new TemplateInvalidException($"The pool {path} cannot be opened: {e.Message}", e);
            }
            _pools[path] = handle;
        }
        return handle;
    }

    // Headers are immutable once sealed; re-read only when the file itself changed.
    private TemplateHeader TemplateFor(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
            throw new TemplateInvalidException($"Template {path} does not exist.");
        if (_templates.TryGetValue(path, out var cached) && cached.Length == info.Length && cached.Modified == info.LastWriteTimeUtc)
            return cached.Header;
        var header = TemplateHeader.Read(path);
        _templates[path] = (info.Length, info.LastWriteTimeUtc, header);
        _verifiedTemplates.Remove(path);
        return header;
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
