using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Worker.Capacity;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Placement;

namespace TrEnv.Worker.Reporting;

/// <summary>The status this worker broadcasts to coordinators (their placement reads it) and GET /v1/cluster shows.</summary>
public sealed class StatusReport(NodeSettings settings, SandboxPool<IsolatedSandbox> pool, NodeIsolation isolation, MemoryBound bound)
{
    /// <summary>A read: it changes nothing, and carries the sequence of the last invocation result it includes.</summary>
    public WorkerStatus Snapshot(string address)
    {
        var memory = bound.Charged(); // file reads, outside the pool's lock
        var view = pool.View();
        var sandboxes = view.Slots.Select(s => new SandboxStatus(s.Slot.Sandbox.Pid, s.State, s.Function?.Name, s.Function?.Version,
            memory.GetValueOrDefault(s.Slot), s.MappedTemplate)).ToList();
        // Pool bytes this node's instances map: each mapping of a template's region counts, shared or not.
        var mapped = view.Slots.Sum(s => s.MappedTemplate is null ? 0 : s.MappedBytes);
        return new WorkerStatus(settings.Name, address, pool.MaxSandboxes, view.Busy, view.IdleGeneric, view.WarmIdle, sandboxes, isolation.Name,
            DateTimeOffset.UtcNow, memory.Values.Sum(), settings.WorkerMemoryMb, bound.Evicted, view.Sequence, mapped, isolation.Missing);
    }
}
