using System.Diagnostics;
using Microsoft.Win32.SafeHandles;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.SandboxHost;

// Loading a function into the sandbox: its module (compiled once, a few kept), then a fresh init or a restore
// from a template in the pool; modules, pool handles and template headers are cached across loads.
internal sealed partial class HostLoop
{
    private const int MaxCachedModules = 8;
    private readonly Dictionary<string, ModuleCache> _caches = new(StringComparer.Ordinal);
    private readonly Dictionary<string, GuestModule> _modules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SafeFileHandle> _pools = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string?> _poolIdentities = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long Length, DateTime Modified, TemplateHeader Header)> _templates = new(StringComparer.Ordinal);
    private readonly HashSet<string> _verifiedTemplates = new(StringComparer.Ordinal);

    private Loaded DoLoad(Load load)
    {
        var at = HostSpan.Sampled(load.Instance.TraceParent) ? HostSpan.NowUnixMicros() : 0;
        var started = Stopwatch.GetTimestamp();
        DropInstance();
        var spec = load.Instance;
        var moduleAt = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        if (!ModuleHash.IsValid(spec.ModuleHash))
            throw new InvalidModuleException($"\"{spec.ModuleHash}\" is not a module hash.");

        var wasCached = _modules.TryGetValue(spec.ModuleHash, out var module);
        if (module is null)
        {
            // A repurposed sandbox serves many functions over its life: keep only the most recent modules.
            if (_modules.Count >= MaxCachedModules)
            {
                foreach (var old in _modules.Keys.Except([_loaded?.Instance.ModuleHash ?? ""]).Take(_modules.Count - MaxCachedModules + 1).ToList())
                {
                    _modules[old].Dispose();
                    _modules.Remove(old);
                }
            }
            var cache = CacheFor(spec.ModuleDirectory);
            wasCached = File.Exists(cache.CompiledPath(new ModuleHash(spec.ModuleHash)));
            module = cache.Load(new ModuleHash(spec.ModuleHash));
            _modules[spec.ModuleHash] = module;
        }

        var moduleMicros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds - moduleAt;
        var options = new InstanceOptions
        {
            MemoryLimitBytes = spec.MemoryLimitBytes,
            Timeout = TimeSpan.FromMilliseconds(spec.TimeoutMs),
            InitTimeout = TimeSpan.FromMilliseconds(spec.InitTimeoutMs),
            Environment = spec.Environment.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal),
            TmpDirectory = _tmpDirectory,
            StdoutPath = _stdoutPath,
            StderrPath = _stderrPath,
            ReadOnlyDirectories = spec.ReadOnlyDirectories,
        };
        _stdoutOffset = _stderrOffset = 0;
        var files = Stopwatch.GetTimestamp();
        _files.Prepare(spec.LayerPath, spec.TmpBytes);
        var filesMicros = (long)Stopwatch.GetElapsedTime(files).TotalMicroseconds;
        // The load's steps are logged apart: instantiation and restore (page faults, mostly) cost differently per machine.
        var creating = Stopwatch.GetTimestamp();
        _instance = FunctionInstance.Create(_engine, module, options);
        var createMicros = (long)Stopwatch.GetElapsedTime(creating).TotalMicroseconds;
        var restoring = Stopwatch.GetTimestamp();
        switch (load)
        {
            case LoadCold:
                _instance.Initialize();
                break;
            case LoadSession { Base: null } session:
                // A session of a function without a template: its full image, copied in, not reseeded.
                _instance.Restore(TemplateHeader.Read(session.DeltaPath), PoolFor(session.PoolPath), RestoreMode.Copy, reseed: false);
                break;
            case LoadSession { Base: { } pages } session:
                // A session's delta is read afresh every time: it is written once per pause and used once.
                Restore(pages, TemplateHeader.Read(session.DeltaPath));
                break;
            case LoadFromTemplate { Template: var pages }:
                Restore(pages, null);
                break;
            default:
                throw new InvalidDataException($"Unknown load {load.GetType().Name}.");
        }
        var restoreMicros = (long)Stopwatch.GetElapsedTime(restoring).TotalMicroseconds;
        if (load is LoadSession { FilesLength: > 0 } withFiles)
            RestoreFiles(withFiles);
        _loaded = load;
        var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        SandboxLog.Write(Console.Error, "load", spec.InvocationId, spec.Function, ("source", load.Source.ToString().ToLowerInvariant()),
            ("origin", _instance.Origin.ToString().ToLowerInvariant()), ("moduleCached", wasCached), ("micros", micros), ("memoryBytes", _instance.MemoryBytes),
            ("filesMicros", filesMicros), ("createMicros", createMicros), ("restoreMicros", restoreMicros));
        return new Loaded(_instance.Origin, wasCached, micros, _instance.MemoryBytes, ReadLog(_stdoutLog, ref _stdoutOffset), ReadLog(_stderrLog, ref _stderrOffset), filesMicros)
        {
            Spans = at == 0 ? [] : LoadSpans(load, at, micros, moduleAt, moduleMicros, wasCached, filesMicros, createMicros, restoreMicros),
        };
    }

    // The load and its steps, laid end to end from the load's start (the steps run one after another).
    private HostSpan[] LoadSpans(Load load, long at, long micros, long moduleAt, long moduleMicros, bool moduleCached, long filesMicros, long createMicros, long restoreMicros)
    {
        static KeyValuePair<string, string> Tag(string key, string value) => new(key, value);
        var module = at + moduleAt;
        var files = module + moduleMicros;
        var create = files + filesMicros;
        var restore = create + createMicros;
        return
        [
            new("trenv.sandbox.load", at, micros, -1,
                [Tag("faas.name", load.Instance.Function), Tag("trenv.load.source", load.Source.ToString().ToLowerInvariant()), Tag("trenv.start", _instance!.Origin.ToHeader())]),
            new("trenv.sandbox.module", module, moduleMicros, 0, [Tag("trenv.module.cached", moduleCached ? "true" : "false")]),
            new("trenv.sandbox.files", files, filesMicros, 0, []),
            new("trenv.sandbox.instantiate", create, createMicros, 0, []),
            new(load is LoadCold ? "trenv.sandbox.init" : "trenv.sandbox.restore", restore, restoreMicros, 0, []),
        ];
    }

    // A session's /tmp changes, read from the pool after its pages and checked before anything is written.
    private void RestoreFiles(LoadSession session)
    {
        var archive = new byte[checked((int)session.FilesLength)];
        if (RandomAccess.Read(PoolFor(session.PoolPath), archive, session.FilesOffset) != archive.Length)
            throw new TemplateInvalidException($"The session's files ({archive.Length} bytes at {session.FilesOffset}) are cut short in the pool.");
        if (FileDelta.Sha256(archive) != session.FilesSha256)
            throw new TemplateInvalidException("The session's files in the pool do not match their checksum.");
        _files.RestoreChanges(archive);
    }

    // The template's pages mapped, copied or faulted in, after checking them once per template and pool file.
    private void Restore(TemplatePages pages, TemplateHeader? delta)
    {
        var header = TemplateFor(pages.HeaderPath);
        var pool = PoolFor(pages.PoolPath);
        if (pages.Verify && _verifiedTemplates.Add(pages.HeaderPath))
        {
            try
            {
                FunctionInstance.VerifyData(header, pool);
            }
            catch
            {
                _verifiedTemplates.Remove(pages.HeaderPath);
                throw;
            }
        }
        if (pages.Mode == LoadSource.LazyTemplate)
            LazyPages.Start(pages.PageSocket ?? throw new TemplateInvalidException("A lazy template load needs the page server's socket."));
        _instance!.Restore(header, pool, pages.Mode switch
        {
            LoadSource.MapTemplate => RestoreMode.Map,
            LoadSource.LazyTemplate => RestoreMode.Lazy,
            LoadSource.CopyTemplate => RestoreMode.Copy,
            _ => throw new InvalidDataException($"A template cannot be restored by {pages.Mode}."),
        }, delta, delta is null ? null : pool);
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
}
