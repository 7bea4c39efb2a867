using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Sandbox;

namespace TrEnv.Worker;

/// <summary>
/// Compiles a script runtime's interpreter module (tens of MB, seconds of CPU and more memory than a sandbox may
/// use) outside any sandbox, once per machine. The workers of one machine share <c>TRENV_COMPILE_CACHE_DIR</c>:
/// they take turns through a lock file there, so several workers never compile at once and starve the machine's
/// sandboxes, and each copies the one shared artifact into its own module directory, where its sandboxes load it.
/// </summary>
public sealed class RuntimeCompiler
{
    /// <summary>How long a compile waits for another worker's compiles on this machine (Ruby's alone takes about 25 s here).</summary>
    public static readonly TimeSpan TurnDeadline = TimeSpan.FromMinutes(10);

    private readonly string _modules;
    private readonly string _shared;
    private readonly SemaphoreSlim _inProcess = new(1, 1);

    public RuntimeCompiler(string modules, string? shared)
    {
        _modules = modules;
        _shared = Directory.CreateDirectory(string.IsNullOrWhiteSpace(shared) ? modules : shared).FullName;
    }

    /// <summary>Leaves <c>HASH.cwasm</c> in the worker's module directory; the module's bytes must be there already.</summary>
    public async Task EnsureCompiledAsync(ModuleHash hash, CancellationToken ct)
    {
        var local = Path.Combine(_modules, hash.Hex + ".cwasm");
        if (File.Exists(local))
            return;
        await _inProcess.WaitAsync(ct);
        try
        {
            if (File.Exists(local))
                return;
            using var turn = await MachineLock.TakeAsync(Path.Combine(_shared, "compile.lock"), TurnDeadline, ct);
            await Task.Run(() =>
            {
                if (!SameDirectory)
                    ModuleCache.Put(_shared, File.ReadAllBytes(Path.Combine(_modules, hash.Hex + ".wasm")));
                // Loading deserializes an artifact another worker left (checking it suits this engine) or compiles one.
                using (var engine = new WasmEngine())
                    new ModuleCache(engine, _shared).Load(hash).Dispose();
                if (!SameDirectory)
                    CopyAtomically(Path.Combine(_shared, hash.Hex + ".cwasm"), local);
            }, ct);
        }
        finally
        {
            _inProcess.Release();
        }
    }

    private bool SameDirectory => string.Equals(Path.GetFullPath(_shared), Path.GetFullPath(_modules), StringComparison.Ordinal);

    private static void CopyAtomically(string from, string to)
    {
        var temp = $"{to}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        File.Copy(from, temp);
        File.Move(temp, to, overwrite: true);
    }
}
