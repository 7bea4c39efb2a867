using System.Diagnostics;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Sandbox;
using TrEnv.Sandbox.Isolation;

namespace TrEnv.Worker.Artifacts;

/// <summary>
/// Compiles modules ahead of their sandboxes, once per machine. The workers of one machine share
/// <c>TRENV_COMPILE_CACHE_DIR</c>: they take turns through a lock file there, so they never compile at once and
/// starve the machine's sandboxes, and each copies the one shared artifact into its own module directory. A
/// script runtime's interpreter (trusted, and needing more memory to compile than a sandbox may use) compiles in
/// the worker; a deployed module compiles in a sandbox host process of its own, in the worker's <c>compile</c>
/// cgroup (one core, bounded memory), killed at <c>TRENV_COMPILE_TIMEOUT_S</c>. A module that failed to compile
/// is answered from that failure for ten minutes, by every worker of the machine, instead of compiled again.
/// </summary>
public sealed class ModuleCompiler : IDisposable
{
    /// <summary>How long a compile waits for other compiles on this machine (Ruby's alone takes about 25 s here).</summary>
    public static readonly TimeSpan TurnDeadline = TimeSpan.FromMinutes(10);

    /// <summary>How long a failed compile is answered from its failure before it is tried again.</summary>
    public static readonly TimeSpan FailureMemory = TimeSpan.FromMinutes(10);

    private readonly string _modules;
    private readonly string _shared;
    private readonly SandboxHostCommand _host;
    private readonly SandboxCgroup? _group;
    private readonly TimeSpan _timeout;
    private readonly string _node;
    private readonly SemaphoreSlim _inProcess = new(1, 1);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Process, bool> _running = new(); // stopped with the worker

    public ModuleCompiler(string modules, string? shared, SandboxHostCommand host, SandboxCgroup? group, TimeSpan timeout, string node)
    {
        _modules = modules;
        _shared = Directory.CreateDirectory(string.IsNullOrWhiteSpace(shared) ? modules : shared).FullName;
        _host = host;
        _group = group;
        _timeout = timeout;
        _node = node;
    }

    /// <summary>
    /// Leaves <c>HASH.cwasm</c> in the worker's module directory (the module's bytes must be there already), or
    /// throws <see cref="EngineException"/>: <c>timeout</c> or <c>memory</c> for a compile past its bounds,
    /// <c>invalid_module</c> for a module the compiler refuses.
    /// </summary>
    public async Task EnsureCompiledAsync(ModuleHash hash, bool trusted, CancellationToken ct)
    {
        var local = Path.Combine(_modules, hash.Hex + ".cwasm");
        if (File.Exists(local))
            return;
        ThrowIfFailed(hash);
        // A small module compiles in about a second at worst (the costliest code measured here took 1.1 s per MB
        // on one core): it never queues behind a large one, so one tenant's large modules cannot hold up everyone's.
        if (!trusted && new FileInfo(Path.Combine(_modules, hash.Hex + ".wasm")).Length < QueueFreeBytes)
        {
            await CompileHereAsync(hash, trusted, ct);
            return;
        }
        await _inProcess.WaitAsync(ct);
        try
        {
            if (File.Exists(local))
                return;
            using var turn = await MachineLock.TakeAsync(Path.Combine(_shared, "compile.lock"), TurnDeadline, ct);
            ThrowIfFailed(hash); // another worker of the machine may have failed it meanwhile
            await CompileHereAsync(hash, trusted, ct);
        }
        finally
        {
            _inProcess.Release();
        }
    }

    /// <summary>Modules smaller than this compile without waiting for a turn.</summary>
    public const long QueueFreeBytes = 1L << 20;

    private async Task CompileHereAsync(ModuleHash hash, bool trusted, CancellationToken ct)
    {
        var artifact = Path.Combine(_shared, hash.Hex + ".cwasm");
        if (!SameDirectory)
            ModuleCache.Put(_shared, await File.ReadAllBytesAsync(Path.Combine(_modules, hash.Hex + ".wasm"), ct));
        if (trusted)
        {
            // Loading deserializes an artifact another worker left (checking it suits this engine) or compiles one.
            await Task.Run(() =>
            {
                using var engine = new WasmEngine();
                new ModuleCache(engine, _shared).Load(hash).Dispose();
            }, ct);
        }
        else if (!File.Exists(artifact))
        {
            await CompileApartAsync(hash, ct);
        }
        if (!SameDirectory)
            CopyAtomically(artifact, local: Path.Combine(_modules, hash.Hex + ".cwasm"));
    }

    private async Task CompileApartAsync(ModuleHash hash, CancellationToken ct)
    {
        // Its own namespaces (no network), as a sandbox; the compile joins the compile cgroup before it starts.
        var command = Namespaces.Wrap(_host) ?? _host;
        // Its stdin stays open while the worker lives: the compile stops at end of file if the worker dies.
        var psi = new ProcessStartInfo(command.FileName) { RedirectStandardInput = true, RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        string[] groups = _group is null ? [] : [.. new[] { _group.MemoryPath, _group.CpuPath }.Distinct().SelectMany(p => new[] { "--cgroup", p })];
        foreach (var a in command.Arguments.Concat(["--compile", _shared, hash.Hex, .. groups]))
            psi.ArgumentList.Add(a);
        var oomBefore = _group?.OomKills() ?? 0;
        using var child = Process.Start(psi) ?? throw new InvalidOperationException($"{command.FileName} did not start");
        _running[child] = true;
        var stderr = child.StandardError.ReadToEndAsync(CancellationToken.None);
        _ = child.StandardOutput.ReadToEndAsync(CancellationToken.None);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(_timeout);
        try
        {
            await child.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync(CancellationToken.None);
            ct.ThrowIfCancellationRequested();
            Fail(hash, ErrorKinds.Timeout, $"Compiling the module did not finish within {_timeout.TotalSeconds:0} s (TRENV_COMPILE_TIMEOUT_S) on {_node} and was stopped; "
                + "a module this large or complex cannot run here.");
        }
        finally
        {
            _running.TryRemove(child, out _);
        }
        if (child.ExitCode == 0)
            return;
        var said = (await stderr).Trim();
        said = said.Length > 2000 ? said[^2000..] : said;
        if ((_group?.OomKills() ?? 0) > oomBefore)
            Fail(hash, ErrorKinds.Memory, $"Compiling the module needed more than the {(_group!.MemoryLimit ?? 0) >> 20} MiB a compile may use (TRENV_COMPILE_MEMORY_MB) on {_node}.");
        if (child.ExitCode == SandboxHost.CompileMode.Refused)
            Fail(hash, ErrorKinds.InvalidModule, said.Length > 0 ? said : "The module could not be compiled.");
        // Anything else (the worker stopping it, a full disk) is not the module's fault: the next call tries again.
        throw new EngineException(ErrorKinds.Internal, $"Compiling the module on {_node} failed (exit {child.ExitCode}): {said}");
    }

    /// <summary>Deletes a forgotten module's artifacts from the shared cache (a live function's are never named).</summary>
    public void Forget(ModuleHash hash)
    {
        if (SameDirectory)
            return;
        foreach (var suffix in new[] { ".wasm", ".cwasm", ".failed" })
        {
            try
            {
                File.Delete(Path.Combine(_shared, hash.Hex + suffix));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another worker of the machine deleted it, or it is being copied: nothing to do.
            }
        }
    }

    public void Dispose()
    {
        foreach (var child in _running.Keys)
        {
            try
            {
                child.Kill(entireProcessTree: true);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // It exited meanwhile.
            }
        }
    }

    private bool SameDirectory => string.Equals(Path.GetFullPath(_shared), Path.GetFullPath(_modules), StringComparison.Ordinal);

    private string FailurePath(ModuleHash hash) => Path.Combine(_shared, hash.Hex + ".failed");

    // The failure is a file in the shared directory, so every worker of the machine answers it without compiling.
    private void Fail(ModuleHash hash, string kind, string message)
    {
        var temp = $"{FailurePath(hash)}.{Environment.ProcessId}.tmp";
        File.WriteAllText(temp, kind + "\n" + message);
        File.Move(temp, FailurePath(hash), overwrite: true);
        throw new EngineException(kind, message);
    }

    private void ThrowIfFailed(ModuleHash hash)
    {
        var path = FailurePath(hash);
        var file = new FileInfo(path);
        if (!file.Exists)
            return;
        if (DateTime.UtcNow - file.LastWriteTimeUtc > FailureMemory)
        {
            File.Delete(path);
            return;
        }
        string[] lines;
        try
        {
            lines = File.ReadAllText(path).Split('\n', 2);
        }
        catch (FileNotFoundException)
        {
            return;
        }
        throw new EngineException(lines[0], lines.Length > 1 ? lines[1] : "The module failed to compile.");
    }

    private static void CopyAtomically(string from, string local)
    {
        var temp = $"{local}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        File.Copy(from, temp);
        File.Move(temp, local, overwrite: true);
    }
}
