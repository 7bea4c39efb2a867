using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Placement;
using TrEnv.Worker.Reporting;

namespace TrEnv.Worker.Capacity;

/// <summary>
/// Keeps the worker within TRENV_WORKER_MEMORY_MB (0: no bound): at the bound placement switches instead of
/// growing, and idle sandboxes, warm or generic, are evicted least recently used first.
/// </summary>
public sealed class MemoryBound(NodeSettings settings, SandboxPool<IsolatedSandbox> pool, TemplateMappings mappings, ILogger log)
{
    private long _evicted;

    private long Bytes => (long)settings.WorkerMemoryMb << 20;

    /// <summary>Idle instances evicted to stay within the bound since start.</summary>
    public long Evicted => Interlocked.Read(ref _evicted);

    public bool Reached()
        => settings.WorkerMemoryMb != 0 && pool.All().Sum(s => s.Sandbox.Process.ChargedMemoryBytes()) >= Bytes;

    /// <summary>Each sandbox's charged memory now (its cgroup's charge, or its PSS): file reads, outside any lock.</summary>
    public Dictionary<SandboxSlot<IsolatedSandbox>, long> Charged() => pool.All().ToDictionary(s => s, s => s.Sandbox.Process.ChargedMemoryBytes());

    /// <summary>Evicts idle sandboxes until the charged memory is under the bound; returns how many.</summary>
    public async Task<int> EnforceAsync()
    {
        if (settings.WorkerMemoryMb == 0)
            return 0;
        var charged = Charged();
        if (charged.Values.Sum() <= Bytes)
            return 0;
        var victims = pool.TakeForEviction(charged, Bytes);
        foreach (var v in victims)
            log.LogInformation("worker {Node}: evicted idle sandbox {Pid} ({Key}) to stay within {Bound} MiB", settings.Name, v.Sandbox.Pid, v.Instance?.Key.ToString() ?? "generic", settings.WorkerMemoryMb);
        await pool.DestroyAsync(victims);
        Interlocked.Add(ref _evicted, victims.Count);
        if (victims.Count > 0)
            mappings.Report();
        return victims.Count;
    }

    /// <summary>Of <paramref name="wanted"/> pre-started sandboxes, how many fit under the bound; more would just be evicted again.</summary>
    public int Fitting(int wanted)
    {
        if (wanted <= 0 || settings.WorkerMemoryMb == 0)
            return wanted;
        var charged = Charged();
        var perSandbox = Math.Max(32L << 20, charged.Where(kv => kv.Key.Instance is null && kv.Key.IsIdle).Select(kv => kv.Value).DefaultIfEmpty().Max());
        return (int)Math.Clamp((Bytes - charged.Values.Sum()) / perSandbox, 0, wanted);
    }
}
