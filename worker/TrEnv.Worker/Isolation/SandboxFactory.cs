using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Sandbox;
using TrEnv.Sandbox.Isolation;
using TrEnv.Worker.Placement;

namespace TrEnv.Worker.Isolation;

/// <summary>
/// Starts sandbox host processes with this node's isolation: new namespaces, a root holding exactly what the
/// protocol names, and a cgroup of their own at the default limits (a load sets the function's).
/// </summary>
public sealed class SandboxFactory(
    NodeSettings settings,
    SandboxHostCommand host,
    NodeIsolation isolation,
    WorkerDirectories directories,
    string poolPath,
    string? pageSocket,
    SandboxCgroup? poolCharges,
    Action<SandboxProcess, string> logLine,
    ILogger log) : ISandboxFactory<IsolatedSandbox>
{
    /// <summary>Memory a sandbox may use beyond twice its function's linear memory: the host process and the page cache a capture charges.</summary>
    public const long HostOverheadBytes = 128L << 20;

    private int _nextId;

    public async Task<IsolatedSandbox> StartAsync(bool network)
    {
        var name = Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var cgroup = isolation.Cgroups?.Create("sb" + name);
        cgroup?.SetLimits(FunctionLimits.Default.SandboxMemoryBytes(HostOverheadBytes), 0);
        var hasPool = true;
        string? boundPool = null;
        var command = host;
        if (isolation.Namespaces)
        {
            SandboxRootfs? root = null;
            if (isolation.RootBase is not null)
            {
                // Exactly what the protocol names, at the same paths: nothing else of the node is visible inside.
                hasPool = File.Exists(poolPath);
                boundPool = hasPool ? TrEnv.MemoryPool.PoolDevice.Identity(poolPath) : null;
                List<string> readWrite = [directories.Modules, directories.Templates, .. hasPool ? [poolPath] : Array.Empty<string>(), .. pageSocket is { } pages ? [pages] : Array.Empty<string>()];
                // Script runtimes' libraries, read-only at the same paths, when this node has any installed.
                List<string> readOnly = [Path.GetDirectoryName(host.FileName)!, directories.Layers, .. Directory.Exists(settings.RuntimesDirectory) ? [settings.RuntimesDirectory] : Array.Empty<string>()];
                root = new SandboxRootfs(isolation.RootBase, readWrite, readOnly);
            }
            command = Namespaces.Wrap(host, root, network) ?? host;
        }
        var process = SandboxProcess.Start(command, Path.Combine(directories.Sandboxes, name), cgroup: cgroup);
        process.PoolCharges = poolCharges;
        process.LogLine += logLine;
        var sandbox = new IsolatedSandbox(process, network, hasPool, boundPool);
        try
        {
            await process.StatsAsync(); // answers once the host is up and warmed
        }
        catch (SandboxException)
        {
            await DestroyAsync(sandbox);
            throw;
        }
        return sandbox;
    }

    public async Task<ResetOutcome> ResetAsync(IsolatedSandbox sandbox, CancellationToken ct)
    {
        try
        {
            await sandbox.Process.ResetAsync(ct);
            return ResetOutcome.Done;
        }
        catch (SandboxException e)
        {
            return e.InstanceDiscarded ? ResetOutcome.InstanceLost : ResetOutcome.SandboxLost;
        }
    }

    // The process, its cgroup, then its directories (its mounts went with its mount namespace).
    public async Task DestroyAsync(IsolatedSandbox sandbox)
    {
        await sandbox.Process.DisposeAsync();
        foreach (var dir in new[] { sandbox.Process.WorkDirectory, sandbox.Process.WorkDirectory + ".root" })
        {
            try
            {
                if (Directory.Exists(dir))
                    Directory.Delete(dir, recursive: true);
            }
            catch (IOException e)
            {
                log.LogWarning("could not remove the sandbox directory {Directory}: {Error}", dir, e.Message);
            }
        }
    }
}
