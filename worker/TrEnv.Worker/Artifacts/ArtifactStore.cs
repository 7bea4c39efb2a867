using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Engine;

namespace TrEnv.Worker.Artifacts;

/// <summary>What a function version needs on this node before a sandbox can load it.</summary>
/// <param name="Layer">The unpacked file layer, when the function has one.</param>
/// <param name="Runtime">A script runtime's library directories (host path, guest path), read-only in the sandbox.</param>
public sealed record PreparedVersion(string? Layer, IReadOnlyList<KeyValuePair<string, string>> Runtime);

/// <summary>Why a version could not be prepared: an error kind and a sentence for the caller.</summary>
public sealed record PrepareFailure(string Kind, string Message);

/// <summary>
/// Modules, file layers and compiled code on this node: fetched from the registry on first use, checked against
/// their hash, compiled once per machine, and deleted when no live function version uses them.
/// </summary>
public sealed class ArtifactStore(NodeSettings settings, WorkerDirectories directories, IRegistryClient registry, ModuleCompiler compiler) : IDisposable
{
    // One fetch (or unpack) per hash at a time on this node: a call and the deploy's prepare share it.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<Task<string>>> _fetching = new(StringComparer.Ordinal);

    // Module, layer and runtime sets already on disk: every call prepares, so once they are there a call touches no
    // file. A forget drops the entries whose files it deleted.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Module, string? Layer, string? Runtime), PreparedVersion> _prepared = new();

    /// <summary>The module (compiled), file layer and runtime libraries of <paramref name="version"/>, or why they cannot be had.</summary>
    public async Task<(PreparedVersion? Prepared, PrepareFailure? Failure)> PrepareAsync(string function, FunctionVersion version, CancellationToken ct)
    {
        var key = (version.Sha256, version.Limits.Layer, version.Limits.Runtime);
        if (_prepared.TryGetValue(key, out var ready))
            return (ready, null);
        try
        {
            var runtime = RuntimeDirectories(version.Limits.Runtime);
            await EnsureModuleAsync(version.Sha256, ct);
            await compiler.EnsureCompiledAsync(new ModuleHash(version.Sha256), trusted: version.Limits.Runtime is not null, ct);
            var prepared = new PreparedVersion(version.Limits.Layer is { } sha ? await EnsureLayerAsync(sha, ct) : null, runtime);
            _prepared[key] = prepared;
            return (prepared, null);
        }
        catch (EngineException e)
        {
            return (null, new PrepareFailure(e.Kind, e.Message));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return (null, new PrepareFailure(ErrorKinds.Internal, $"The module, file layer or runtime of {function} could not be prepared: {e.Message}"));
        }
    }

    /// <summary>Deletes the modules (source and compiled) and layers a forget names; a later load fetches them again.</summary>
    public void Delete(WorkerForget forget)
    {
        foreach (var sha in forget.Modules.Where(ModuleHash.IsValid))
        {
            TryDelete(Path.Combine(directories.Modules, sha + ".wasm"));
            TryDelete(Path.Combine(directories.Modules, sha + ".cwasm"));
            compiler.Forget(new ModuleHash(sha));
        }
        foreach (var sha in forget.Layers.Where(ModuleHash.IsValid))
        {
            try
            {
                // Renamed first, so a load never sees it half deleted; a load after this unpacks it again.
                var doomed = Path.Combine(directories.Layers, $".delete-{sha}-{Guid.NewGuid():N}");
                Directory.Move(Path.Combine(directories.Layers, sha), doomed);
                Directory.Delete(doomed, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Missing (never unpacked here) or in use: nothing to do.
            }
        }
        foreach (var key in _prepared.Keys.Where(k => forget.Modules.Contains(k.Module) || (k.Layer is not null && forget.Layers.Contains(k.Layer))))
            _prepared.TryRemove(key, out _);
    }

    // A script runtime's libraries, which must be installed on this node as on the coordinator that took the deploy.
    private IReadOnlyList<KeyValuePair<string, string>> RuntimeDirectories(string? runtime)
    {
        if (runtime is null)
            return [];
        var known = TrEnv.Cluster.Runtimes.ScriptRuntimes.Find(runtime)
            ?? throw new InvalidOperationException($"worker {settings.Name} does not know the runtime \"{runtime}\"");
        var runtimeDirectories = known.Directories(settings);
        foreach (var (host, _) in runtimeDirectories)
        {
            if (!Directory.Exists(host))
                throw new InvalidOperationException($"the {runtime} runtime is not installed on worker {settings.Name} ({host} is missing; TRENV_RUNTIMES_DIR)");
        }
        return runtimeDirectories;
    }

    private async Task EnsureModuleAsync(string sha256, CancellationToken ct)
    {
        if (File.Exists(Path.Combine(directories.Modules, sha256 + ".wasm")))
            return;
        await Once("module:" + sha256, async () =>
        {
            if (File.Exists(Path.Combine(directories.Modules, sha256 + ".wasm")))
                return sha256;
            var bytes = await registry.FetchModuleAsync(sha256, CancellationToken.None) ?? throw new InvalidOperationException($"no module with hash {sha256} is stored");
            if (ModuleCache.Put(directories.Modules, bytes).Hex != sha256)
                throw new InvalidOperationException($"the module fetched for {sha256} has another hash");
            return sha256;
        }).WaitAsync(ct);
    }

    private async Task<string> EnsureLayerAsync(string sha256, CancellationToken ct)
    {
        var directory = Path.Combine(directories.Layers, sha256);
        if (Directory.Exists(directory))
            return directory;
        return await Once("layer:" + sha256, async () =>
        {
            if (Directory.Exists(directory))
                return directory;
            var tar = await registry.FetchModuleAsync(sha256, CancellationToken.None) ?? throw new InvalidOperationException($"no layer with hash {sha256} is stored");
            if (ModuleHash.Of(tar).Hex != sha256)
                throw new InvalidOperationException($"the layer fetched for {sha256} has another hash");
            TrEnv.Cluster.Layers.LayerArchive.Unpack(tar, directory);
            return directory;
        }).WaitAsync(ct);
    }

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

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Open elsewhere or gone: the next forget or a restart tries again.
        }
    }

    public void Dispose() => compiler.Dispose();
}
