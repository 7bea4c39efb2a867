using System.Globalization;
using System.Runtime.InteropServices;

namespace TrEnv.Sandbox.Isolation;

/// <summary>Which cgroup hierarchy the machine offers for memory and CPU limits.</summary>
public enum CgroupVersion
{
    None,
    V1,
    V2,
}

/// <summary>
/// Per-sandbox cgroups with memory and CPU limits, on cgroup v1 (separate memory and cpu hierarchies) or v2
/// (one unified tree), detected at start-up. A sandbox killed by the OOM killer is recognised by its
/// group's oom_kill counter, so the caller can answer 507 rather than "crashed".
/// </summary>
public sealed partial class Cgroups : IDisposable
{
    private readonly string _memoryRoot;
    private readonly string _cpuRoot;

    private Cgroups(CgroupVersion version, string memoryRoot, string cpuRoot)
    {
        Version = version;
        _memoryRoot = memoryRoot;
        _cpuRoot = cpuRoot;
    }

    public CgroupVersion Version { get; }

    /// <summary>
    /// Finds a writable hierarchy with memory and cpu controllers and makes <c>trenv/NAME</c> in it; null with
    /// the reason when there is none (not root, no controllers). Groups named <c>*-PID</c> of processes that no
    /// longer exist (a worker killed with -9) are removed first. Where the v1 hierarchies are mounted
    /// read-only (a container), fresh mounts of them under <paramref name="privateMounts"/> are used instead,
    /// rooted at this process's own group so that sandbox limits nest inside the container's; a read-only v2
    /// tree is mounted afresh the same way, and the container's processes move to a leaf so that its group may
    /// delegate controllers.
    /// </summary>
    public static Cgroups? Detect(string name, out string? why, string root = "/sys/fs/cgroup", string privateMounts = "/run/trenv/cgroup")
    {
        why = null;
        try
        {
            var v1Memory = Path.Combine(root, "memory");
            var v1Cpu = Path.Combine(root, "cpu");
            if (File.Exists(Path.Combine(v1Memory, "memory.limit_in_bytes")) && File.Exists(Path.Combine(v1Cpu, "cpu.cfs_quota_us")))
            {
                if (!Writable(v1Memory) || !Writable(v1Cpu))
                {
                    (v1Memory, v1Cpu, why) = MountPrivateV1(privateMounts);
                    if (v1Memory is null || v1Cpu is null)
                        return null;
                }
                PruneStale(Path.Combine(v1Memory, "trenv"));
                PruneStale(Path.Combine(v1Cpu, "trenv"));
                var memory = Directory.CreateDirectory(Path.Combine(v1Memory, "trenv", name)).FullName;
                var cpu = Directory.CreateDirectory(Path.Combine(v1Cpu, "trenv", name)).FullName;
                return new Cgroups(CgroupVersion.V1, memory, cpu);
            }
            var controllers = Path.Combine(root, "cgroup.controllers");
            if (File.Exists(controllers) && File.ReadAllText(controllers).Split(' ', StringSplitOptions.TrimEntries) is var available
                && available.Contains("memory") && available.Contains("cpu"))
            {
                var tree = root;
                if (!Writable(root))
                {
                    (tree, why) = MountPrivateV2(privateMounts);
                    if (tree is null)
                        return null;
                }
                PruneStale(Path.Combine(tree, "trenv"));
                EnableControllers(tree);
                var trenv = Directory.CreateDirectory(Path.Combine(tree, "trenv")).FullName;
                File.WriteAllText(Path.Combine(trenv, "cgroup.subtree_control"), "+memory +cpu");
                var group = Directory.CreateDirectory(Path.Combine(trenv, name)).FullName;
                File.WriteAllText(Path.Combine(group, "cgroup.subtree_control"), "+memory +cpu");
                return new Cgroups(CgroupVersion.V2, group, group);
            }
            why = $"{root} has neither cgroup v1 memory and cpu hierarchies nor a cgroup v2 tree with both controllers";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            why ??= $"the cgroup tree under {root} cannot be written: {e.Message}";
        }
        return null;
    }

    /// <summary>As <see cref="Detect(string, out string?, string, string)"/>, without the reason.</summary>
    public static Cgroups? Detect(string name) => Detect(name, out _);

    private static bool Writable(string hierarchy)
    {
        try
        {
            Directory.CreateDirectory(Path.Combine(hierarchy, "trenv"));
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// Mounts this process's v1 memory and cpu hierarchies afresh (read-write; needs CAP_SYS_ADMIN) and returns
    /// the paths of its own groups in them, as /proc/self/cgroup names them: the container's group with a host
    /// cgroup namespace, the namespace root with a private one.
    /// </summary>
    private static (string? Memory, string? Cpu, string? Why) MountPrivateV1(string privateMounts)
    {
        string? memory = null, cpu = null;
        foreach (var line in File.ReadAllLines("/proc/self/cgroup"))
        {
            var parts = line.Split(':', 3);
            if (parts.Length != 3 || parts[1].Length == 0)
                continue;
            var controllers = parts[1].Split(',');
            var wanted = controllers.Contains("memory") ? "memory" : controllers.Contains("cpu") ? "cpu" : null;
            if (wanted is null)
                continue;
            var mountPoint = Directory.CreateDirectory(Path.Combine(privateMounts, parts[1])).FullName;
            if (!File.Exists(Path.Combine(mountPoint, "cgroup.procs"))
                && MountCgroup("cgroup", mountPoint, "cgroup", MsNoSuid | MsNoDev | MsNoExec, parts[1]) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                return (null, null, $"the cgroup v1 hierarchies are read-only here (a container) and mounting the {parts[1]} hierarchy afresh at {mountPoint} failed " +
                    $"with errno {errno}{(errno == 1 ? " (EPERM: the worker lacks CAP_SYS_ADMIN)" : "")}");
            }
            var own = mountPoint + (parts[2] == "/" ? "" : parts[2]);
            if (wanted == "memory")
                memory = own;
            else
                cpu = own;
        }
        return memory is null || cpu is null
            ? (null, null, "the cgroup v1 hierarchies are read-only here and /proc/self/cgroup names no memory or no cpu hierarchy to mount afresh")
            : (memory, cpu, null);
    }

    /// <summary>
    /// The v2 tree mounted read-only (a container on a cgroup v2 host): mounts it afresh under
    /// <paramref name="privateMounts"/> and returns this process's own group in it, as /proc/self/cgroup names
    /// it (the namespace root with Docker's private cgroup namespace).
    /// </summary>
    private static (string? Tree, string? Why) MountPrivateV2(string privateMounts)
    {
        var own = File.ReadAllLines("/proc/self/cgroup").Select(l => l.Split(':', 3)).FirstOrDefault(p => p.Length == 3 && p[0] == "0" && p[1].Length == 0);
        if (own is null)
            return (null, "the cgroup v2 tree is read-only here and /proc/self/cgroup names no v2 group");
        var mountPoint = Directory.CreateDirectory(Path.Combine(privateMounts, "unified")).FullName;
        if (!File.Exists(Path.Combine(mountPoint, "cgroup.procs"))
            && MountCgroup("cgroup2", mountPoint, "cgroup2", MsNoSuid | MsNoDev | MsNoExec, "") != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return (null, $"the cgroup v2 tree is read-only here (a container) and mounting it afresh at {mountPoint} failed " +
                $"with errno {errno}{(errno == 1 ? " (EPERM: the worker lacks CAP_SYS_ADMIN)" : "")}");
        }
        return (mountPoint + (own[2] == "/" ? "" : own[2]), null);
    }

    /// <summary>
    /// Enables memory and cpu for the groups below <paramref name="tree"/>. A v2 group other than the real root
    /// may not both hold processes and delegate controllers (EBUSY), which is the case at a container's own
    /// group: its processes move to a leaf <c>init</c> first, as nested container engines do.
    /// </summary>
    private static void EnableControllers(string tree)
    {
        var control = Path.Combine(tree, "cgroup.subtree_control");
        try
        {
            File.WriteAllText(control, "+memory +cpu");
            return;
        }
        catch (IOException) when (File.Exists(Path.Combine(tree, "cgroup.procs")) && File.ReadAllText(Path.Combine(tree, "cgroup.procs")).Trim().Length > 0)
        {
        }
        var leaf = Directory.CreateDirectory(Path.Combine(tree, "init")).FullName;
        foreach (var pid in File.ReadAllLines(Path.Combine(tree, "cgroup.procs")).Where(l => l.Length > 0))
        {
            try
            {
                File.WriteAllText(Path.Combine(leaf, "cgroup.procs"), pid);
            }
            catch (IOException)
            {
                // A process that exited meanwhile, or a kernel thread, stays where it is.
            }
        }
        File.WriteAllText(control, "+memory +cpu");
    }

    private const ulong MsNoSuid = 2, MsNoDev = 4, MsNoExec = 8;

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MountCgroup(string source, string target, string fstype, ulong flags, string data);

    /// <summary>Kills what is left in the groups of workers that are gone and removes them (what a starting worker does).</summary>
    public static void RemoveStale(string root = "/sys/fs/cgroup")
    {
        foreach (var tree in new[] { Path.Combine(root, "memory", "trenv"), Path.Combine(root, "cpu", "trenv"), Path.Combine(root, "trenv") })
        {
            try
            {
                PruneStale(tree);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
    }

    private static void PruneStale(string tree)
    {
        if (!Directory.Exists(tree))
            return;
        foreach (var group in Directory.GetDirectories(tree))
        {
            var dash = group.LastIndexOf('-');
            if (dash < 0 || !int.TryParse(group[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || Directory.Exists($"/proc/{pid}"))
                continue;
            // A sandbox of the dead worker may outlive it (a guest asleep in WASI): kill what is left, then remove.
            foreach (var sandbox in Directory.GetDirectories(group).Append(group))
            {
                for (var attempt = 0; attempt < 50 && Directory.Exists(sandbox); attempt++)
                {
                    try
                    {
                        foreach (var line in File.ReadAllLines(Path.Combine(sandbox, "cgroup.procs")))
                        {
                            if (int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out var left))
                                KillProcess(left, 9);
                        }
                        if (sandbox == group)
                        {
                            foreach (var child in Directory.GetDirectories(group))
                                Directory.Delete(child);
                        }
                        Directory.Delete(sandbox);
                    }
                    catch (IOException)
                    {
                        Thread.Sleep(20); // the kernel empties a group shortly after its last process exits
                    }
                }
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillProcess(int pid, int signal);

    /// <summary>Removes this node's groups once its sandboxes are gone (best effort: a busy group stays).</summary>
    public void Dispose()
    {
        foreach (var dir in new[] { _memoryRoot, _cpuRoot }.Distinct())
        {
            try
            {
                Directory.Delete(dir);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Creates the group of one sandbox.</summary>
    public SandboxCgroup Create(string sandbox)
    {
        var memory = Directory.CreateDirectory(Path.Combine(_memoryRoot, sandbox)).FullName;
        var cpu = Version == CgroupVersion.V1 ? Directory.CreateDirectory(Path.Combine(_cpuRoot, sandbox)).FullName : memory;
        return new SandboxCgroup(Version, memory, cpu);
    }
}
