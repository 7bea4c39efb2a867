using System.Globalization;

namespace TrEnv.Sandbox.Isolation;

/// <summary>One sandbox's cgroup: its limits can be reset when the sandbox is repurposed for another function.</summary>
public sealed class SandboxCgroup(CgroupVersion version, string memory, string cpu) : IDisposable
{
    public CgroupVersion Version { get; } = version;
    public string MemoryPath { get; } = memory;
    public string CpuPath { get; } = cpu;

    private (long Memory, double Cpus)? _applied;

    /// <summary>The memory limit last set, or null before the first.</summary>
    public long? MemoryLimit => _applied?.Memory;

    /// <summary>Sets the memory limit (no swap) and a CPU quota in cores (0 for none); unchanged limits cost nothing.</summary>
    public void SetLimits(long memoryBytes, double cpus)
    {
        if (_applied == (memoryBytes, cpus))
            return;
        Apply(memoryBytes, cpus);
        _applied = (memoryBytes, cpus);
    }

    private void Apply(long memoryBytes, double cpus)
    {
        var bytes = memoryBytes.ToString(CultureInfo.InvariantCulture);
        if (Version == CgroupVersion.V1)
        {
            // v1 refuses a memory limit above the memory+swap limit: raise memsw first, lower it last.
            var limit = Path.Combine(MemoryPath, "memory.limit_in_bytes");
            var memsw = Path.Combine(MemoryPath, "memory.memsw.limit_in_bytes");
            var current = long.Parse(File.ReadAllText(limit).Trim(), CultureInfo.InvariantCulture);
            if (memoryBytes > current)
            {
                TryWrite(memsw, bytes);
                File.WriteAllText(limit, bytes);
            }
            else
            {
                File.WriteAllText(limit, bytes);
                TryWrite(memsw, bytes);
            }
            File.WriteAllText(Path.Combine(CpuPath, "cpu.cfs_period_us"), "100000");
            File.WriteAllText(Path.Combine(CpuPath, "cpu.cfs_quota_us"), cpus > 0 ? ((long)(cpus * 100_000)).ToString(CultureInfo.InvariantCulture) : "-1");
        }
        else
        {
            File.WriteAllText(Path.Combine(MemoryPath, "memory.max"), bytes);
            TryWrite(Path.Combine(MemoryPath, "memory.swap.max"), "0");
            File.WriteAllText(Path.Combine(CpuPath, "cpu.max"), cpus > 0 ? $"{(long)(cpus * 100_000)} 100000" : "max 100000");
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> with this group's processes charged to <paramref name="other"/>'s memory
    /// controller, then moves them back. Pages they allocate meanwhile stay charged there (charges never move
    /// with a process): pool pages a capture writes into a tmpfs pool are the node's, not this sandbox's, so
    /// the next guest in this sandbox does not inherit them. CPU limits stay this group's on v1.
    /// </summary>
    public async Task<T> ChargedToAsync<T>(SandboxCgroup other, Func<Task<T>> action)
    {
        var pids = Processes();
        foreach (var pid in pids)
            TryMove(other.MemoryPath, pid);
        try
        {
            return await action().ConfigureAwait(false);
        }
        finally
        {
            foreach (var pid in pids)
                TryMove(MemoryPath, pid);
        }
    }

    private List<string> Processes()
    {
        try
        {
            return [.. File.ReadAllLines(Path.Combine(MemoryPath, "cgroup.procs")).Where(l => l.Length > 0)];
        }
        catch (IOException)
        {
            return [];
        }
    }

    // A process that exited meanwhile cannot be moved: nothing to do for it.
    private static void TryMove(string group, string pid)
    {
        try
        {
            File.WriteAllText(Path.Combine(group, "cgroup.procs"), pid);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Memory charged to the group now (resident memory plus the page cache it touched), or 0 if unreadable.</summary>
    public long MemoryUsage()
    {
        try
        {
            var file = Path.Combine(MemoryPath, Version == CgroupVersion.V1 ? "memory.usage_in_bytes" : "memory.current");
            return long.Parse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or FormatException)
        {
            return 0;
        }
    }

    /// <summary>How many times the OOM killer has killed a process of this group.</summary>
    public long OomKills()
    {
        var file = Path.Combine(MemoryPath, Version == CgroupVersion.V1 ? "memory.oom_control" : "memory.events");
        try
        {
            foreach (var line in File.ReadLines(file))
            {
                if (line.StartsWith("oom_kill ", StringComparison.Ordinal))
                    return long.Parse(line[9..], CultureInfo.InvariantCulture);
            }
        }
        catch (IOException)
        {
        }
        return 0;
    }

    private static void TryWrite(string path, string value)
    {
        try
        {
            File.WriteAllText(path, value);
        }
        catch (IOException)
        {
            // memsw / swap accounting is optional in the kernel configuration.
        }
    }

    /// <summary>Removes the group; its processes must have exited.</summary>
    public void Dispose()
    {
        foreach (var dir in new[] { MemoryPath, CpuPath }.Distinct())
        {
            for (var attempt = 0; attempt < 20 && Directory.Exists(dir); attempt++)
            {
                try
                {
                    Directory.Delete(dir);
                }
                catch (IOException)
                {
                    Thread.Sleep(10); // the kernel empties the group shortly after the last process exits
                }
            }
        }
    }
}
