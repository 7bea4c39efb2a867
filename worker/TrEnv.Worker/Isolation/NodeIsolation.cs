using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Sandbox;
using TrEnv.Sandbox.Isolation;

namespace TrEnv.Worker.Isolation;

/// <summary>
/// What isolation this node's sandboxes get, found once at start: namespaces, an own root filesystem, cgroup
/// limits. Each layer is tried with a real sandbox; what is missing is said loudly and reported.
/// </summary>
public sealed class NodeIsolation : IDisposable
{
    private readonly List<string> _missing = []; // what this worker's sandboxes lack, and why (GET /v1/cluster)

    public bool Namespaces { get; }

    /// <summary>The read-only base of every sandbox's root; null without an own root.</summary>
    public string? RootBase { get; }

    public Cgroups? Cgroups { get; }

    public IReadOnlyList<string> Missing => _missing;

    public NodeIsolation(NodeSettings settings, SandboxHostCommand host, WorkerDirectories directories, ILogger log)
    {
        var isolate = settings.SandboxIsolation == SandboxIsolation.Auto;
        Namespaces = isolate && TrEnv.Sandbox.Isolation.Namespaces.Available;
        if (SandboxWorkArea.Prepare(directories.Sandboxes) is { } workArea)
            log.LogInformation("worker {Node}: {WorkArea}", settings.Name, workArea);
        if (Namespaces)
        {
            var (rootBase, why) = SandboxRootfs.BuildBase(Path.Combine(settings.DataDirectory, "rootfs-base"), host);
            if (rootBase is not null && Probe(host, directories, rootBase) is { } failure)
                (rootBase, why) = (null, failure);
            // Root without the capabilities (an unprivileged container) cannot unshare: fall back, loudly.
            if (rootBase is null && Probe(host, directories, null) is { } noNamespaces)
            {
                Namespaces = false;
                _missing.Add($"namespaces and own root: {noNamespaces}");
                log.LogWarning("worker {Node}: NO NAMESPACES: {Why}; sandboxes run as plain processes without namespaces or their own root", settings.Name, noNamespaces);
            }
            else
            {
                RootBase = rootBase;
                if (rootBase is null)
                {
                    _missing.Add($"own root: {why}");
                    log.LogWarning("worker {Node}: sandboxes get namespaces but NO own root filesystem: {Why}", settings.Name, why);
                }
                else
                {
                    log.LogInformation("worker {Node}: sandboxes get namespaces and their own root (base {RootBase})", settings.Name, rootBase);
                }
            }
        }
        else
        {
            _missing.Add(isolate ? $"namespaces and own root: not root, or no {TrEnv.Sandbox.Isolation.Namespaces.Unshare}" : "namespaces, own root and cgroups: TRENV_SANDBOX_ISOLATION=process");
            if (isolate)
                log.LogWarning("worker {Node}: NOT ROOT or no {Unshare}: sandboxes run as plain processes without namespaces or their own root", settings.Name, TrEnv.Sandbox.Isolation.Namespaces.Unshare);
            else
                log.LogWarning("worker {Node}: TRENV_SANDBOX_ISOLATION=process: sandboxes run as plain processes without namespaces or their own root", settings.Name);
        }
        // The process id keeps two workers with one name (two local clusters) out of each other's groups.
        string? noCgroups = null;
        Cgroups = isolate ? Cgroups.Detect($"{settings.Name}-{Environment.ProcessId}", out noCgroups) : null;
        if (isolate && Cgroups is null)
            _missing.Add($"cgroup limits: {noCgroups}");
        if (Cgroups is null)
            log.LogWarning("worker {Node}: NO CGROUP LIMITS: sandboxes run without memory or CPU limits: {Why}", settings.Name, noCgroups ?? "TRENV_SANDBOX_ISOLATION=process");
        else
            log.LogInformation("worker {Node}: sandboxes get cgroup {Version} memory limits", settings.Name, Cgroups.Version);
    }

    private string HostIsolation => !Namespaces ? "process" : RootBase is null ? "namespaces" : "namespaces+rootfs";

    /// <summary>As GET /v1/cluster shows it, e.g. <c>namespaces+rootfs+cgroup-v1</c>.</summary>
    public string Name => Cgroups is null ? HostIsolation : $"{HostIsolation}+cgroup-{Cgroups.Version.ToString().ToLowerInvariant()}";

    // One sandbox started this way before any is trusted with a function: a base that misses a library, or
    // namespaces the process may not make, must turn into a loud start-up message, not failed invocations.
    private static string? Probe(SandboxHostCommand host, WorkerDirectories directories, string? rootBase)
    {
        var probeDirectory = Path.Combine(directories.Sandboxes, "probe");
        var root = rootBase is null ? null : new SandboxRootfs(rootBase, [directories.Modules, directories.Templates], [Path.GetDirectoryName(host.FileName)!, directories.Layers]);
        var probe = SandboxProcess.Start(TrEnv.Sandbox.Isolation.Namespaces.Wrap(host, root)!, probeDirectory);
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

    public void Dispose() => Cgroups?.Dispose();
}
