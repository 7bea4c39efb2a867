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
