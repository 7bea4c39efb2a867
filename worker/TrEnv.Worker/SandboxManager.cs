using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Sandbox;
using TrEnv.Sandbox.Isolation;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Worker;

/// <summary>
/// A worker's sandboxes and the placement policy of the paper: REUSE a warm idle instance of the same
/// function version, else SWITCH (repurpose) an idle sandbox, else start a NEW one; restore from the
/// template when one exists, else run init and capture the template for every later start.
/// </summary>
public sealed partial class SandboxManager : IAsyncDisposable
{
    private readonly NodeSettings _settings;
    private readonly SandboxHostCommand _host;
    private readonly bool _namespaces;
    private readonly string? _rootBase;
    private readonly string _layers;
    private readonly PoolCache? _cache; // rdma mode: the node-local mirror of the pool
    private readonly string _poolPath; // what sandboxes map: the pool itself (cxl) or the mirror (rdma)
    private readonly IRegistryClient _registry;
    private readonly string _modules;
    private readonly ModuleCompiler _compiler;
    private readonly string _templates;
    private readonly string _sandboxes;
    private readonly object _gate = new();
    private readonly List<Slot> _all = [];
    private readonly Stack<Slot> _generic = new();
    private readonly Stack<Slot> _genericNetwork = new(); // sandboxes that keep the node's network
    private readonly Dictionary<string, LinkedList<Slot>> _warm = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TemplateInfo> _localTemplates = new(StringComparer.Ordinal);
    private readonly HashSet<string> _verified = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _reportedMappings = new(StringComparer.Ordinal);
    private readonly Cgroups? _cgroups;

    // The node's own group for pool pages that sandboxes write when they capture or pause.
    private readonly SandboxCgroup? _poolCharges;

    // The node's group for compiles of deployed modules (one core, TRENV_COMPILE_MEMORY_MB).
    private readonly SandboxCgroup? _compileCharges;
    private readonly List<string> _isolationMissing = []; // what this worker's sandboxes lack, and why (GET /v1/cluster)
    private int _starting;
    private int _nextId;
    private long _evicted;

    /// <summary>Memory a sandbox may use beyond twice its function's linear memory: the host process and the page cache a capture charges.</summary>
    private const long HostOverheadBytes = 128L << 20;

    private readonly ILogger _log;
    private readonly ILogger _sandboxLog;

    public SandboxManager(NodeSettings settings, SandboxHostCommand host, IRegistryClient registry, ILoggerFactory? logging = null)
    {
        _settings = settings;
        _log = logging?.CreateLogger("TrEnv.Worker") ?? NullLogger.Instance;
        _sandboxLog = logging?.CreateLogger("TrEnv.Sandbox") ?? NullLogger.Instance;
        Logs = new FunctionLogs(settings.Name);
        _host = host;
        var isolate = settings.SandboxIsolation == "auto";
        _namespaces = isolate && Namespaces.Available;
        _registry = registry;
        if (settings.PoolMode == "rdma")
        {
            // On tmpfs: userfaultfd serves missing pages of shmem mappings, and the page cache is what instances share.
            var mirror = Path.Combine("/dev/shm", $"trenv-mirror-{Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(settings.DataDirectory))))[..16]}", "pool");
            _cache = new PoolCache(mirror, settings.PoolSizeMb << 20, settings.PoolUrl, settings.PoolSecret, lazy: settings.PoolFetch != "eager");
            Console.WriteLine($"worker {settings.Name}: pool mode rdma ({settings.PoolFetch}): templates come from {settings.PoolUrl} into {_cache.Path}; the pool file is never opened");
        }
        _poolPath = _cache?.Path ?? settings.PoolPath;
        _modules = Directory.CreateDirectory(Path.Combine(settings.DataDirectory, "modules")).FullName;
        _templates = Directory.CreateDirectory(Path.Combine(settings.DataDirectory, "templates")).FullName;
        _layers = Directory.CreateDirectory(Path.Combine(settings.DataDirectory, "layers")).FullName;
        _sandboxes = Path.Combine(settings.DataDirectory, "sandboxes");
        if (SandboxWorkArea.Prepare(_sandboxes) is { } workArea)
            Console.WriteLine($"worker {settings.Name}: {workArea}");
        if (_namespaces)
        {
            var (rootBase, why) = SandboxRootfs.BuildBase(Path.Combine(settings.DataDirectory, "rootfs-base"), host);
            if (rootBase is not null && Probe(rootBase) is { } failure)
                (rootBase, why) = (null, failure);
            // Root without the capabilities (an unprivileged container) cannot unshare: fall back, loudly.
            if (rootBase is null && Probe(null) is { } noNamespaces)
            {
                _namespaces = false;
                _isolationMissing.Add($"namespaces and own root: {noNamespaces}");
                Console.WriteLine($"worker {settings.Name}: NO NAMESPACES: {noNamespaces}; sandboxes run as plain processes without namespaces or their own root");
            }
            else
            {
                _rootBase = rootBase;
                if (rootBase is null)
                    _isolationMissing.Add($"own root: {why}");
                Console.WriteLine(rootBase is null
                    ? $"worker {settings.Name}: sandboxes get namespaces but NO own root filesystem: {why}"
                    : $"worker {settings.Name}: sandboxes get namespaces and their own root (base {rootBase})");
            }
        }
        else
        {
            _isolationMissing.Add(isolate ? $"namespaces and own root: not root, or no {Namespaces.Unshare}" : "namespaces, own root and cgroups: TRENV_SANDBOX_ISOLATION=process");
            Console.WriteLine(isolate
                ? $"worker {settings.Name}: NOT ROOT or no {Namespaces.Unshare}: sandboxes run as plain processes without namespaces or their own root"
                : $"worker {settings.Name}: TRENV_SANDBOX_ISOLATION=process: sandboxes run as plain processes without namespaces or their own root");
        }
        // The process id keeps two workers with one name (two local clusters) out of each other's groups.
        string? noCgroups = null;
        _cgroups = isolate ? Cgroups.Detect($"{settings.Name}-{Environment.ProcessId}", out noCgroups) : null;
        if (isolate && _cgroups is null)
            _isolationMissing.Add($"cgroup limits: {noCgroups}");
        _poolCharges = _cgroups?.Create("pool");
        _compileCharges = _cgroups?.Create("compile");
        _compileCharges?.SetLimits((long)settings.CompileMemoryMb << 20, 1.0); // one core: the other stays for sandboxes
        _compiler = new ModuleCompiler(_modules, settings.CompileCacheDirectory, host, _compileCharges, TimeSpan.FromSeconds(settings.CompileTimeoutSeconds), settings.Name);
        Console.WriteLine(_cgroups is null
            ? $"worker {settings.Name}: NO CGROUP LIMITS: sandboxes run without memory or CPU limits: {noCgroups ?? "TRENV_SANDBOX_ISOLATION=process"}"
            : $"worker {settings.Name}: sandboxes get cgroup {_cgroups.Version} memory limits");
    }

    // One sandbox started this way before any is trusted with a function: a base that misses a library, or
    // namespaces the process may not make, must turn into a loud start-up message, not failed invocations.
    private string? Probe(string? rootBase)
    {
        var probeDirectory = Path.Combine(_sandboxes, "probe");
        var root = rootBase is null ? null : new SandboxRootfs(rootBase, [_modules, _templates], [Path.GetDirectoryName(_host.FileName)!, _layers]);
        var probe = SandboxProcess.Start(Namespaces.Wrap(_host, root)!, probeDirectory);
        try
        {
            probe.StatsAsync().GetAwaiter().GetResult();
            return null;
        }
        catch (SandboxException e)
        {
            return $"a sandbox could not start {(rootBase is null ? "in new namespaces" : "in its own root")}: {e.Message}";
        }
        finally
        {
            probe.DisposeAsync().AsTask().GetAwaiter().GetResult();
            foreach (var dir in new[] { probeDirectory, probeDirectory + ".root" })
            {
                if (Directory.Exists(dir))
                    Directory.Delete(dir, recursive: true);
            }
        }
    }

    private string HostIsolation => !_namespaces ? "process" : _rootBase is null ? "namespaces" : "namespaces+rootfs";

    public string Isolation => _cgroups is null ? HostIsolation : $"{HostIsolation}+cgroup-{_cgroups.Version.ToString().ToLowerInvariant()}";

    /// <summary>Each isolation layer the sandboxes lack, with the reason; empty when they have them all.</summary>
    public IReadOnlyList<string> IsolationMissing => _isolationMissing;

    /// <summary>Idle instances evicted to stay within TRENV_WORKER_MEMORY_MB since start.</summary>
    public long Evicted => Interlocked.Read(ref _evicted);

    private sealed class Slot(SandboxProcess process, bool network, bool hasPool, string? boundPool = null)
    {
        public SandboxProcess Process { get; } = process;
        public bool Network { get; } = network;
        public bool HasPool { get; } = hasPool; // false: started before the pool file existed, so it cannot map it

        // The pool file bound into its root (device:inode): a pool created again later is not visible inside.
        public string? BoundPool { get; } = boundPool;

        /// <param name="poolIdentity">The pool file's identity now (<see cref="TrEnv.MemoryPool.PoolDevice.Identity"/>).</param>
        public bool SeesPool(string? poolIdentity) => HasPool && (BoundPool is null || BoundPool == poolIdentity);
        public string? Key;
        public string? Serving; // the function version of the invocation in progress, shown while busy
        public long LoadedMemoryBytes; // the instance's linear memory right after its load
        public string? Session; // bound to this agent session: never reused, repurposed or evicted until it pauses or ends
        public string? MappedTemplate;
        public long MappedBytes; // the pool region its instance maps, while MappedTemplate is set
        public bool Busy;
        public bool EverLoaded;
        public bool Clean = true; // reset since its last load: a repurpose needs no second reset
        public DateTimeOffset LastUsed = DateTimeOffset.UtcNow;
        public LinkedListNode<Slot>? WarmNode;
    }

    /// <summary>The guests' stdout and stderr per function (GET /v1/functions/NAME/logs gathers them).</summary>
    public FunctionLogs Logs { get; }

    // Orders status snapshots and invocation results (both read under _gate), so a coordinator can tell which is newer.
    private long _sequence;

    public async Task<WorkerInvokeResult> InvokeAsync(WorkerInvoke request, CancellationToken ct)
    {
        var result = await InvokeCoreAsync(request, ct);
        int busy;
        long sequence;
        lock (_gate)
        {
            busy = _all.Count(s => s.Busy) + _starting;
            sequence = ++_sequence;
        }
        return result with { BusyAfter = busy, Sequence = sequence };
    }

    private async Task<WorkerInvokeResult> InvokeCoreAsync(WorkerInvoke request, CancellationToken ct)
    {
        var key = TemplateCommands.KeyOf(request.Function, request.Version.Version);
        var started = Stopwatch.GetTimestamp();
        var (layer, runtime, unprepared) = await PrepareAsync(request.Function, request.Version, ct);
        if (unprepared is { } why)
            return Failed(request, why.Kind, why.Message);

        var (slot, sandbox) = await AcquireAsync(key, request.Version.Limits.Network);
        if (slot is null)
            return Failed(request, ErrorKinds.NoCapacity, NoRoom(sandbox));

        slot.Serving = key;
        TemplateInfo? captured = null;
        var start = "warm";
        try
        {
            if (slot.Key != key)
            {
                // A load that fails reports the start it was attempting, never "warm".
                (start, captured) = await LoadAsync(slot, request, key, layer, runtime, ct, attempting: kind => start = kind);
            }
            var startupMicros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            var result = await slot.Process.InvokeAsync(request.Input, TimeSpan.FromMilliseconds(request.Version.Limits.TimeoutMs), ct, request.InvocationId);
            Logs.Append(request.Function, request.Version.Version, result.Stdout, result.Stderr);
            Release(slot, key);
            if (start == "template" && _cache?.PageSocket is not null && (request.Template ?? LocalTemplate(key)) is { } used)
                _ = _cache.PublishWorkingSetAsync(used, CancellationToken.None); // the first invocation's pages, for prefetching elsewhere
            if (start != "warm")
                _ = EnforceMemoryBoundAsync(CancellationToken.None); // a new instance may have pushed the worker over its bound
            LogInvoked(_log, request.InvocationId, request.Function, request.Version.Version, start, sandbox, slot.Process.Pid, startupMicros, result.ExecMicros);
            return new WorkerInvokeResult(request.InvocationId, true, result.Output, start, sandbox, _settings.Name, startupMicros, result.ExecMicros, null, null, captured);
        }
        catch (SandboxException e)
        {
            Logs.Append(request.Function, request.Version.Version, e.Stdout, e.Stderr);
            if (e.Kind == ErrorKinds.Exception && !e.InstanceDiscarded)
                Release(slot, key); // the guest reported a failure and returned: its instance is intact and stays warm
            else
                Discard(slot, e);
            return Failed(request, e.Kind, e.Message, start, sandbox, captured);
        }
        catch (EngineException e)
        {
            Discard(slot, null);
            return Failed(request, e.Kind, e.Message, start, sandbox, captured);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            // The sandbox's state is unknown (its cgroup or files failed): never reuse it.
            slot.Process.Kill();
            Discard(slot, null);
            return Failed(request, ErrorKinds.Internal, $"Worker {_settings.Name} could not prepare a sandbox: {e.Message}", start, sandbox, captured);
        }
    }

    /// <summary>What a first call would prepare (module, layer, a runtime's compile), done ahead; a failure waits for that call.</summary>
    public async Task PrepareAheadAsync(WorkerPrepare prepare)
    {
        var (_, _, error) = await PrepareAsync(prepare.Function, prepare.Version, CancellationToken.None);
        if (error is not null)
            _log.LogWarning("Preparing {Function} v{Version} ahead of its first call failed: {Error}", prepare.Function, prepare.Version.Version, error.Value.Message);
    }

    // The module (compiled), file layer and runtime libraries on this node; an error kind and sentence when they cannot be had.
    private async Task<(string? Layer, IReadOnlyList<KeyValuePair<string, string>> Runtime, (string Kind, string Message)? Error)> PrepareAsync(string function, FunctionVersion version, CancellationToken ct)
    {
        try
        {
            var runtime = RuntimeDirectories(version.Limits.Runtime);
            await EnsureModuleAsync(version.Sha256, ct);
            await _compiler.EnsureCompiledAsync(new ModuleHash(version.Sha256), trusted: version.Limits.Runtime is not null, ct);
            return (version.Limits.Layer is { } sha ? await EnsureLayerAsync(sha, ct) : null, runtime, null);
        }
        catch (EngineException e)
        {
            return (null, [], (e.Kind, e.Message));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return (null, [], (ErrorKinds.Internal, $"The module, file layer or runtime of {function} could not be prepared: {e.Message}"));
        }
    }

    private string NoRoom(string why) => why == "memory"
        ? $"Worker {_settings.Name} is at its memory bound (TRENV_WORKER_MEMORY_MB={_settings.WorkerMemoryMb}) with no idle instance to evict."
        : $"Worker {_settings.Name} has no free sandbox (all {_settings.MaxSandboxes} busy).";

    // Cold or template load into a slot that does not hold this function version.
    private async Task<(string Start, TemplateInfo? Captured)> LoadAsync(Slot slot, WorkerInvoke request, string key, string? layer,
        IReadOnlyList<KeyValuePair<string, string>> runtime, CancellationToken ct, SessionDelta? delta = null, Action<string>? attempting = null)
    {
        // Repurpose: the previous function's /tmp, layer, logs and instance go in the same round trip as the load.
        var needsReset = !slot.Clean;
        slot.Clean = false;
        slot.Key = null;
        slot.MappedTemplate = null;
        slot.EverLoaded = true;
        var limits = request.Version.Limits;
        // Repurposing resets the cgroup to the new function's limits: a raise before the load, a cut once the
        // previous instance is gone (cutting first could push its memory over the new limit).
        var memoryLimit = limits.SandboxMemoryBytes(HostOverheadBytes);
        var cgroup = slot.Process.Cgroup;
        var cutAfter = cgroup?.MemoryLimit is { } current && current > memoryLimit;
        cgroup?.SetLimits(cutAfter ? cgroup.MemoryLimit!.Value : memoryLimit, limits.CpuMillicores / 1000.0);
        var cold = new Load(request.Function, request.Version.Sha256, _modules, LoadSource.Init, null, null, false,
            (long)limits.MemoryMb << 20, limits.TimeoutMs, limits.InitTimeoutMs, limits.Env.ToList())
        {
            TmpBytes = (long)limits.TmpMb << 20,
            LayerPath = layer,
            InvocationId = request.InvocationId,
            ReadOnlyDirectories = runtime,
        };

        async Task Load(Load load)
        {
            attempting?.Invoke(load.DeltaPath is not null ? "resume" : load.Source == LoadSource.Init ? "cold" : "template");
            if (needsReset)
            {
                needsReset = false;
                slot.LoadedMemoryBytes = (await slot.Process.ResetAndLoadAsync(load, ct)).Loaded.MemoryBytes;
            }
            else
            {
                slot.LoadedMemoryBytes = (await slot.Process.LoadAsync(load, ct)).MemoryBytes;
            }
            if (cutAfter)
                cgroup!.SetLimits(memoryLimit, limits.CpuMillicores / 1000.0);
        }

        TemplateInfo? template = null;
        var poolIdentity = TrEnv.MemoryPool.PoolDevice.Identity(_poolPath); // one stat serves both checks below
        var seesPool = slot.SeesPool(poolIdentity);
        if (delta is not null)
        {
            // A resume never falls back to a cold start: that would silently drop the session's state.
            if (!seesPool)
                throw new SandboxException(ErrorKinds.TemplateInvalid, $"Worker {_settings.Name}'s sandbox cannot see the pool {_poolPath}, which holds the session.", false);
            var (source, templatePath, verify, deltaPath) = await PrepareResumeAsync(delta, poolIdentity, ct);
            try
            {
                await Load(cold with { Source = source, TemplatePath = templatePath, PoolPath = _poolPath, VerifyTemplateData = verify, PageSocket = _cache?.PageSocket, DeltaPath = deltaPath });
            }
            catch (SandboxException e) when (e.Kind == ErrorKinds.TemplateInvalid && delta.Base is { } failedBase)
            {
                // Checked again next time (a pool being rebuilt from its durable copies is not ready yet).
                lock (_gate)
                    _verified.Remove($"{failedBase.Key}/{failedBase.SealedAt.ToUnixTimeMilliseconds()}/{poolIdentity}");
                throw;
            }
            finally
            {
                File.Delete(deltaPath);
            }
            slot.MappedTemplate = delta.Base?.Key;
            slot.MappedBytes = delta.Base?.Region.Length ?? 0;
            return ("resume", null);
        }
        if (seesPool)
        {
            lock (_gate)
                template = request.Template ?? _localTemplates.GetValueOrDefault(key);
        }
        string? verifiedAs = null;
        if (template is not null)
        {
            try
            {
                var header = TemplateFile(template);
                bool verify;
                // Verified once per template and pool file: a pool lost and created again is checked afresh.
                verifiedAs = $"{template.Key}/{template.SealedAt.ToUnixTimeMilliseconds()}/{poolIdentity}";
                lock (_gate)
                    verify = _verified.Add(verifiedAs);
                var source = LoadSource.MapTemplate;
                if (_cache?.PageSocket is not null)
                {
                    // Lazy: nothing is fetched now; the sandbox's fault handler asks for pages as the guest touches them.
                    await _cache.PrepareLazyAsync(template, _settings.PoolFetch == "prefetch", ct);
                    source = LoadSource.LazyTemplate;
                    verify = false; // pages arrive later; the pool serves only regions it has checked against their durable copy
                }
                else if (_cache is not null)
                {
                    await _cache.EnsureAsync(template, ct);
                }
                await Load(cold with { Source = source, TemplatePath = header, PoolPath = _poolPath, VerifyTemplateData = verify, PageSocket = _cache?.PageSocket });
                slot.MappedTemplate = key;
                slot.MappedBytes = template.Region.Length;
                return ("template", null);
            }
            catch (Grpc.Core.RpcException e)
            {
                // The pool service is down, or the template is being rebuilt: start cold, never wrong.
                Console.Error.WriteLine($"worker {_settings.Name}: template {key} unreachable ({e.StatusCode}: {e.Status.Detail}); starting cold");
            }
            catch (SandboxException e) when (e.Kind == ErrorKinds.TemplateInvalid)
            {
                // A template that cannot be restored is never used: fall back to a cold start; the next start checks again.
                lock (_gate)
                {
                    _localTemplates.Remove(key);
                    if (verifiedAs is not null)
                        _verified.Remove(verifiedAs);
                }
            }
        }

        await Load(cold);
        return ("cold", seesPool ? await TryCaptureAsync(slot, request, key, ct) : null);
    }

    // A script runtime's libraries, which must be installed on this node as on the coordinator that took the deploy.
    private IReadOnlyList<KeyValuePair<string, string>> RuntimeDirectories(string? runtime)
    {
        if (runtime is null)
            return [];
        var known = TrEnv.Cluster.Runtimes.ScriptRuntimes.Find(runtime)
            ?? throw new InvalidOperationException($"worker {_settings.Name} does not know the runtime \"{runtime}\"");
        var directories = known.Directories(_settings);
        foreach (var (host, _) in directories)
        {
            if (!Directory.Exists(host))
                throw new InvalidOperationException($"the {runtime} runtime is not installed on worker {_settings.Name} ({host} is missing; TRENV_RUNTIMES_DIR)");
        }
        return directories;
    }

    // Capture the post-init state before the first invocation changes it; only one capture per key cluster-wide.
    private async Task<TemplateInfo?> TryCaptureAsync(Slot slot, WorkerInvoke request, string key, CancellationToken ct)
    {
        var header = Path.Combine(_templates, $"{key}.{Guid.NewGuid():N}.tpl");
        try
        {
            var probe = await slot.Process.CaptureAsync(new Capture(_poolPath, 0, 0, header, _settings.Name), ct);
            var answer = await _registry.BeginCaptureAsync(new TemplateCommands.BeginCapture(key, request.Function, request.Version.Version, request.Version.Sha256, probe.RequiredBytes, _settings.Name), ct);
            if (answer is TemplateReplies.CaptureRefused { Sealed: { } existing })
            {
                lock (_gate)
                    _localTemplates[key] = existing;
                return null;
            }
            if (answer is not TemplateReplies.CaptureGranted granted)
                return null;
            try
            {
                var done = await slot.Process.CaptureAsync(new Capture(_poolPath, granted.Region.Offset, granted.Region.Length, header, _settings.Name), ct);
                if (_cache is not null)
                    await _cache.UploadAsync(key, TrEnv.Engine.Templates.TemplateHeader.Read(header), ct); // the sandbox wrote into the mirror
                var sealedReply = await _registry.SealAsync(new TemplateCommands.Seal(key, _settings.Name, done.NonZeroPages, done.MemoryBytes, await File.ReadAllBytesAsync(header, ct)), ct);
                if (sealedReply is not TemplateReplies.Sealed { Template: var info })
                    return null;
                _cache?.MarkPresent(info);
                lock (_gate)
                {
                    _localTemplates[key] = info;
                    _verified.Add($"{info.Key}/{info.SealedAt.ToUnixTimeMilliseconds()}/{TrEnv.MemoryPool.PoolDevice.Identity(_poolPath)}");
                }
                File.Move(header, TemplateFile(info, create: false), overwrite: true);
                return info;
            }
            catch (Exception e) when (e is SandboxException or IOException or Grpc.Core.RpcException)
            {
                _registry.AbortCapture(new TemplateCommands.AbortCapture(key, _settings.Name, e.Message));
                // The instance survived a failed capture (say, an unwritable pool): serve the invocation cold anyway.
                if (e is SandboxException { InstanceDiscarded: false } or IOException or Grpc.Core.RpcException)
                {
                    Console.Error.WriteLine($"worker {_settings.Name}: capture of {key} failed, serving cold: {e.Message}");
                    return null;
                }
                throw;
            }
        }
        catch (Exception e) when (e is IOException or Akka.Actor.AskTimeoutException or TimeoutException)
        {
            // The function still runs cold; the next cold start tries to capture again. A lease granted after
            // we stopped waiting is handed back, so another worker need not wait for it to expire.
            _registry.AbortCapture(new TemplateCommands.AbortCapture(key, _settings.Name, e.Message));
            Console.Error.WriteLine($"worker {_settings.Name}: capture of {key} failed: {e.Message}");
            return null;
        }
        finally
        {
            if (File.Exists(header))
                File.Delete(header);
        }
    }

    private string TemplateFile(TemplateInfo template, bool create = true)
    {
        var path = Path.Combine(_templates, $"{template.Key}-{template.SealedAt.ToUnixTimeMilliseconds()}.tpl");
        if (create && !File.Exists(path))
        {
            var temp = path + "." + Guid.NewGuid().ToString("N");
            File.WriteAllBytes(temp, template.Header);
            File.Move(temp, path, overwrite: true);
        }
        return path;
    }

    private TemplateInfo? LocalTemplate(string key)
    {
        lock (_gate)
            return _localTemplates.GetValueOrDefault(key);
    }

    // One fetch (or unpack) per hash at a time on this node: a call and the deploy's prepare share it.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<Task<string>>> _fetching = new(StringComparer.Ordinal);

    private Task<string> Once(string key, Func<Task<string>> work)
    {
        var lazy = _fetching.GetOrAdd(key, k => new Lazy<Task<string>>(async () =>
        {
            try
            {
                return await work();
            }
            finally
            {
                _fetching.TryRemove(key, out _);
            }
        }));
        return lazy.Value;
    }

    private async Task EnsureModuleAsync(string sha256, CancellationToken ct)
    {
        if (File.Exists(Path.Combine(_modules, sha256 + ".wasm")))
            return;
        await Once("module:" + sha256, async () =>
        {
            if (File.Exists(Path.Combine(_modules, sha256 + ".wasm")))
                return sha256;
            var bytes = await _registry.FetchModuleAsync(sha256, CancellationToken.None) ?? throw new InvalidOperationException($"no module with hash {sha256} is stored");
            if (ModuleCache.Put(_modules, bytes).Hex != sha256)
                throw new InvalidOperationException($"the module fetched for {sha256} has another hash");
            return sha256;
        }).WaitAsync(ct);
    }

    private async Task<string> EnsureLayerAsync(string sha256, CancellationToken ct)
    {
        var directory = Path.Combine(_layers, sha256);
        if (Directory.Exists(directory))
            return directory;
        return await Once("layer:" + sha256, async () =>
        {
            if (Directory.Exists(directory))
                return directory;
            var tar = await _registry.FetchModuleAsync(sha256, CancellationToken.None) ?? throw new InvalidOperationException($"no layer with hash {sha256} is stored");
            if (ModuleHash.Of(tar).Hex != sha256)
                throw new InvalidOperationException($"the layer fetched for {sha256} has another hash");
            TrEnv.Cluster.Layers.LayerArchive.Unpack(tar, directory);
            return directory;
        }).WaitAsync(ct);
    }

    /// <param name="reuse">False for a session, which must start from the template's state, never from a used instance.</param>
    private async Task<(Slot? Slot, string Sandbox)> AcquireAsync(string key, bool network, bool reuse = true)
    {
        Slot? victim = null;
        var overBound = OverMemoryBound();
        lock (_gate)
        {
            if (reuse && _warm.TryGetValue(key, out var list) && list.Last is { } node)
                return (Take(node.Value), "reused");
            if (GenericFor(network).TryPop(out var generic))
            {
                generic.Busy = true;
                return (generic, generic.EverLoaded ? "repurposed" : "new");
            }
            // At the sandbox or memory bound, SWITCH the least recently used idle instance instead of growing.
            if (_all.Count + _starting < _settings.MaxSandboxes && !overBound)
                _starting++;
            else
                victim = OldestWarmIdle(network);
            if (victim is not null)
                Take(victim);
            else if (overBound)
                return (null, "memory");
        }
        if (victim is not null)
            return (victim, "repurposed");
        try
        {
            var slot = await StartSandboxAsync(network);
            lock (_gate)
            {
                slot.Busy = true;
                _all.Add(slot);
            }
            return (slot, "new");
        }
        finally
        {
            lock (_gate)
                _starting--;
        }
    }

    private Stack<Slot> GenericFor(bool network) => network ? _genericNetwork : _generic;

    private Slot? OldestWarmIdle(bool network)
    {
        Slot? oldest = null;
        foreach (var list in _warm.Values)
        {
            foreach (var s in list)
            {
                if (s.Network == network && (oldest is null || s.LastUsed < oldest.LastUsed))
                    oldest = s;
            }
        }
        return oldest;
    }

    private Slot Take(Slot slot)
    {
        if (slot.WarmNode is { } node)
        {
            node.List!.Remove(node);
            slot.WarmNode = null;
        }
        slot.Busy = true;
        return slot;
    }

    private void Release(Slot slot, string key)
    {
        lock (_gate)
        {
            // A version forgotten while this call ran goes back to the pool instead of staying warm.
            if (IsForgottenLocked(key))
            {
                _ = ReclaimForgottenAsync(slot);
                return;
            }
            slot.Busy = false;
            slot.Key = key;
            slot.LastUsed = DateTimeOffset.UtcNow;
            if (!_warm.TryGetValue(key, out var list))
                _warm[key] = list = new LinkedList<Slot>();
            slot.WarmNode = list.AddLast(slot);
        }
    }

    // After a failure the instance is gone (the host discards it) or the process is: never reuse it dirty.
    private void Discard(Slot slot, SandboxException? e)
    {
        lock (_gate)
        {
            slot.Busy = false;
            slot.Key = null;
            slot.MappedTemplate = null;
            if (slot.Process.IsAlive && (e is null || e.InstanceDiscarded))
            {
                GenericFor(slot.Network).Push(slot);
                return;
            }
            _all.Remove(slot);
        }
        _ = DestroyAsync(slot);
    }

    // The process, its cgroup, then its directories (its mounts went with its mount namespace).
    private static async Task DestroyAsync(Slot slot)
    {
        await slot.Process.DisposeAsync();
        foreach (var dir in new[] { slot.Process.WorkDirectory, slot.Process.WorkDirectory + ".root" })
        {
            try
            {
                if (Directory.Exists(dir))
                    Directory.Delete(dir, recursive: true);
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"could not remove the sandbox directory {dir}: {e.Message}");
            }
        }
    }

    private async Task<Slot> StartSandboxAsync(bool network = false)
    {
        var id = Interlocked.Increment(ref _nextId);
        var name = id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var cgroup = _cgroups?.Create("sb" + name);
        cgroup?.SetLimits(FunctionLimits.Default.SandboxMemoryBytes(HostOverheadBytes), 0);
        var hasPool = true;
        string? boundPool = null;
        var host = _host;
        if (_namespaces)
        {
            SandboxRootfs? root = null;
            if (_rootBase is not null)
            {
                // Exactly what the protocol names, at the same paths: nothing else of the node is visible inside.
                hasPool = File.Exists(_poolPath);
                boundPool = hasPool ? TrEnv.MemoryPool.PoolDevice.Identity(_poolPath) : null;
                List<string> readWrite = [_modules, _templates, .. hasPool ? [_poolPath] : Array.Empty<string>(), .. _cache?.PageSocket is { } pages ? [pages] : Array.Empty<string>()];
                // Script runtimes' libraries, read-only at the same paths, when this node has any installed.
                List<string> readOnly = [Path.GetDirectoryName(_host.FileName)!, _layers, .. Directory.Exists(_settings.RuntimesDirectory) ? [_settings.RuntimesDirectory] : Array.Empty<string>()];
                root = new SandboxRootfs(_rootBase, readWrite, readOnly);
            }
            host = Namespaces.Wrap(_host, root, network) ?? _host;
        }
        var process = SandboxProcess.Start(host, Path.Combine(_sandboxes, name), cgroup: cgroup);
        process.PoolCharges = _poolCharges;
        process.LogLine += OnSandboxLog;
        try
        {
            await process.StatsAsync(); // answers once the host is up and warmed
        }
        catch (SandboxException)
        {
            await DestroyAsync(new Slot(process, network, hasPool));
            throw;
        }
        return new Slot(process, network, hasPool, boundPool);
    }

    private bool OverMemoryBound()
    {
        if (_settings.WorkerMemoryMb == 0)
            return false;
        List<Slot> all;
        lock (_gate)
            all = [.. _all];
        return all.Sum(s => s.Process.ChargedMemoryBytes()) >= (long)_settings.WorkerMemoryMb << 20;
    }

    /// <summary>
    /// Keeps the worker within TRENV_WORKER_MEMORY_MB: evicts idle sandboxes, warm or generic, least recently
    /// used first, until the sandboxes' charged memory is under the bound.
    /// </summary>
    public async Task<int> EnforceMemoryBoundAsync(CancellationToken ct)
    {
        if (_settings.WorkerMemoryMb == 0)
            return 0;
        var bound = (long)_settings.WorkerMemoryMb << 20;
        List<Slot> all;
        lock (_gate)
            all = [.. _all];
        var usage = all.ToDictionary(s => s, s => s.Process.ChargedMemoryBytes());
        var total = usage.Values.Sum();
        if (total <= bound)
            return 0;
        var victims = new List<Slot>();
        lock (_gate)
        {
            foreach (var s in _all.Where(s => !s.Busy).OrderBy(s => s.LastUsed).ToList())
            {
                if (total <= bound)
                    break;
                Take(s);
                RemoveFromGeneric(s);
                _all.Remove(s);
                victims.Add(s);
                total -= usage.GetValueOrDefault(s);
            }
        }
        foreach (var v in victims)
        {
            Console.WriteLine($"worker {_settings.Name}: evicted idle sandbox {v.Process.Pid} ({(v.Key ?? "generic")}) to stay within {_settings.WorkerMemoryMb} MiB");
            await DestroyAsync(v);
        }
        Interlocked.Add(ref _evicted, victims.Count);
        if (victims.Count > 0)
            ReportMappings();
        return victims.Count;
    }

    private void RemoveFromGeneric(Slot slot)
    {
        foreach (var stack in new[] { _generic, _genericNetwork })
        {
            if (!stack.Contains(slot))
                continue;
            var rest = stack.Where(s => s != slot).Reverse().ToList();
            stack.Clear();
            foreach (var s in rest)
                stack.Push(s);
        }
    }

    /// <summary>
    /// Resets idle warm instances (of one function, or all) into generic sandboxes, or with
    /// <paramref name="destroy"/> shuts those sandboxes down; returns how many.
    /// </summary>
    public async Task<int> ReclaimAsync(string? function, bool destroy, CancellationToken ct)
    {
        List<Slot> victims;
        lock (_gate)
        {
            victims = _warm.Where(kv => function is null || kv.Key.StartsWith(function + "@", StringComparison.Ordinal))
                .SelectMany(kv => kv.Value).ToList();
            foreach (var s in victims)
            {
                Take(s);
                if (destroy)
                    _all.Remove(s);
            }
        }
        if (destroy)
            await Task.WhenAll(victims.Select(DestroyAsync));
        else
            await ResetToGenericAsync(victims, ct);
        ReportMappings();
        return victims.Count;
    }

    private async Task ResetToGenericAsync(List<Slot> slots, CancellationToken ct)
    {
        foreach (var slot in slots)
        {
            try
            {
                await slot.Process.ResetAsync(ct);
                lock (_gate)
                {
                    slot.Busy = false;
                    slot.Key = null;
                    slot.MappedTemplate = null;
                    slot.Clean = true;
                    GenericFor(slot.Network).Push(slot);
                }
            }
            catch (SandboxException e)
            {
                Discard(slot, e);
            }
        }
    }

    /// <summary>Keeps the pre-started pool full, reclaims instances idle past the keep-alive (scale to zero), reports template mappings.</summary>
    public async Task MaintainAsync(CancellationToken ct)
    {
        var expired = new List<Slot>();
        int missing;
        lock (_gate)
        {
            var cutoff = DateTimeOffset.UtcNow.AddSeconds(-_settings.KeepAliveSeconds);
            foreach (var list in _warm.Values)
                expired.AddRange(list.Where(s => s.LastUsed < cutoff));
            foreach (var s in expired)
                Take(s);
            // Crashed or killed while idle, or blind to the pool as it is now (started before it existed, or
            // bound to one that was since lost and created again): replace them.
            var poolNow = TrEnv.MemoryPool.PoolDevice.Identity(_poolPath);
            foreach (var dead in _all.Where(s => !s.Busy && (!s.Process.IsAlive || (poolNow is not null && !s.SeesPool(poolNow)))).ToList())
            {
                _all.Remove(dead);
                Take(dead);
                RemoveFromGeneric(dead);
                _ = DestroyAsync(dead);
            }
            var room = _settings.MaxSandboxes - _all.Count - _starting;
            missing = Math.Min(room, _settings.PrestartSandboxes - _generic.Count - expired.Count(s => !s.Network));
            if (missing > 0)
                _starting += missing;
        }
        await ResetToGenericAsync(expired, ct);
        PurgeFiles();
        ReportIdleSessions();
        await EnforceMemoryBoundAsync(ct);
        if (missing > 0 && _settings.WorkerMemoryMb > 0)
        {
            // Pre-start only what fits under the bound; more would just be evicted again.
            List<Slot> all;
            lock (_gate)
                all = [.. _all];
            var charged = all.ToDictionary(s => s, s => s.Process.ChargedMemoryBytes());
            var perSandbox = Math.Max(32L << 20, charged.Where(kv => kv.Key.Key is null && !kv.Key.Busy).Select(kv => kv.Value).DefaultIfEmpty().Max());
            var fits = (int)Math.Clamp((((long)_settings.WorkerMemoryMb << 20) - charged.Values.Sum()) / perSandbox, 0, missing);
            lock (_gate)
                _starting -= missing - fits;
            missing = fits;
        }
        for (var i = 0; i < missing; i++)
        {
            try
            {
                var slot = await StartSandboxAsync();
                lock (_gate)
                {
                    _all.Add(slot);
                    _generic.Push(slot);
                }
            }
            catch (Exception e) when (e is SandboxException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                Console.Error.WriteLine($"worker {_settings.Name}: could not pre-start a sandbox: {e.Message}");
            }
            finally
            {
                lock (_gate)
                    _starting--;
            }
        }
        ReportMappings();
    }

    private void ReportMappings()
    {
        lock (_reportedMappings)
            ReportMappingsLocked();
    }

    private void ReportMappingsLocked()
    {
        Dictionary<string, int> counts;
        lock (_gate)
            counts = _all.Where(s => s.MappedTemplate is not null).GroupBy(s => s.MappedTemplate!).ToDictionary(g => g.Key, g => g.Count());
        foreach (var key in counts.Keys.Union(_reportedMappings.Keys).ToList())
        {
            var now = counts.GetValueOrDefault(key);
            if (_reportedMappings.GetValueOrDefault(key, -1) == now)
                continue;
            _registry.ReportMappings(new TemplateCommands.Mappings(key, _settings.Name, now));
            if (now == 0)
                _reportedMappings.Remove(key);
            else
                _reportedMappings[key] = now;
        }
    }

    public WorkerStatus Snapshot(string address)
    {
        List<Slot> all;
        lock (_gate)
            all = [.. _all];
        var memory = all.ToDictionary(s => s, s => s.Process.ChargedMemoryBytes()); // file reads, outside the lock
        lock (_gate)
        {
            var warm = _warm.Where(kv => kv.Value.Count > 0).ToDictionary(kv => kv.Key, kv => kv.Value.Count, StringComparer.Ordinal);
            var sandboxes = _all.Select(s =>
            {
                var key = s.Busy ? s.Serving : s.Key;
                var at = key?.LastIndexOf('@') ?? -1;
                return new SandboxStatus(s.Process.Pid, s.Session is not null ? "session" : s.Busy ? "busy" : s.Key is null ? "idle" : "warm",
                    at < 0 ? null : key![..at], at < 0 ? null : int.Parse(key![(at + 1)..], System.Globalization.CultureInfo.InvariantCulture), memory.GetValueOrDefault(s),
                    s.MappedTemplate);
            }).ToList();
            // Pool bytes this node's instances map: each mapping of a template's region counts, shared or not.
            var mapped = _all.Sum(s => s.MappedTemplate is null ? 0 : s.MappedBytes);
            return new WorkerStatus(_settings.Name, address, _settings.MaxSandboxes, _all.Count(s => s.Busy), _generic.Count + _genericNetwork.Count, warm, sandboxes, Isolation,
                DateTimeOffset.UtcNow, memory.Values.Sum(), _settings.WorkerMemoryMb, Evicted, ++_sequence, mapped, _isolationMissing);
        }
    }

    private WorkerInvokeResult Failed(WorkerInvoke request, string kind, string message, string start = "cold", string sandbox = "new", TemplateInfo? captured = null)
    {
        LogFailed(_log, request.InvocationId, request.Function, request.Version.Version, kind, start, message);
        return new(request.InvocationId, false, [], start, sandbox, _settings.Name, 0, 0, kind, message, captured);
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information,
        Message = "Invocation {InvocationId} of {Function} v{Version}: {Start} start ({SandboxKind} sandbox {Pid}), startup {StartupUs} µs, exec {ExecUs} µs")]
    private static partial void LogInvoked(ILogger log, string invocationId, string function, int version, string start, string sandboxKind, int pid, long startupUs, long execUs);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "Invocation {InvocationId} of {Function} v{Version} failed ({Kind}, {Start} start): {Error}")]
    private static partial void LogFailed(ILogger log, string invocationId, string function, int version, string kind, string start, string error);

    // A sandbox host's structured line, re-logged with the node and the sandbox's pid so one invocation id
    // finds the coordinator's, the worker's and the sandbox's lines alike.
    private void OnSandboxLog(SandboxProcess process, string line)
    {
        if (SandboxLog.Parse(line) is not { } fields || !_sandboxLog.IsEnabled(LogLevel.Information))
            return;
        var state = new SandboxLogState { new("Node", _settings.Name), new("Sandbox", process.Pid) };
        foreach (var (k, v) in fields)
            state.Add(new(char.ToUpperInvariant(k[0]) + k[1..], v));
        var failed = fields.Any(f => f.Key == "event" && f.Value is string e && e.EndsWith("-failed", StringComparison.Ordinal));
        _sandboxLog.Log(failed ? LogLevel.Warning : LogLevel.Information, new EventId(10, "sandbox"), state, null, static (s, _) => s.ToString());
    }

    // The fields become the JSON line's State; the message reads them as key=value.
    private sealed class SandboxLogState : List<KeyValuePair<string, object?>>
    {
        public override string ToString() => "Sandbox " + string.Join(' ', this.Select(kv => $"{kv.Key}={kv.Value}"));
    }

    public async ValueTask DisposeAsync()
    {
        List<Slot> all;
        lock (_gate)
            all = [.. _all];
        await Task.WhenAll(all.Select(DestroyAsync));
        _cache?.Dispose();
        _compiler.Dispose();
        _poolCharges?.Dispose();
        _compileCharges?.Dispose();
        _cgroups?.Dispose();
    }
}
