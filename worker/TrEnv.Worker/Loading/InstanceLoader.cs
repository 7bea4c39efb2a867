using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Sandbox;
using TrEnv.Sandbox.Isolation;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Placement;
using TrEnv.Worker.Templates;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Worker.Loading;

/// <summary>
/// Loads a function version into a slot that does not hold it: from its template when this node's sandbox can
/// map the pool, else cold (init) followed by a capture; or a session from its paused delta. A repurposed
/// sandbox is reset in the same round trip as the load, and its cgroup moves to the new function's limits.
/// </summary>
public sealed partial class InstanceLoader(
    NodeSettings settings,
    SandboxPool<IsolatedSandbox> pool,
    WorkerDirectories directories,
    string poolPath,
    PoolCache? mirror,
    LocalTemplates templates,
    TemplateCapture capture,
    ILogger log)
{
    /// <param name="attempting">Told each kind as it is tried, so a failure reports the start it attempted.</param>
    public async Task<LoadOutcome> LoadAsync(SandboxSlot<IsolatedSandbox> slot, FunctionLoad load, Action<StartKind> attempting, CancellationToken ct)
    {
        var target = Begin(slot, load.Version.Limits);
        var poolIdentity = TrEnv.MemoryPool.PoolDevice.Identity(poolPath); // one stat serves both checks
        var seesPool = slot.Sandbox.SeesPool(poolIdentity);
        if (seesPool && (load.Template ?? templates.Find(load.Key)) is { } template)
        {
            if (await TryTemplateAsync(target, load, template, poolIdentity, attempting, ct))
                return new LoadOutcome(StartKind.Template, null);
        }
        attempting(StartKind.Cold);
        // A template start runs on the thread that took the call (the socket engine's, for the invoke channel):
        // it is a stat, a header lookup and a mapping in the sandbox. A cold start and its capture may run long
        // in this process, so they leave that thread and do not hold up other I/O.
        await Task.Yield();
        await SendAsync(target, load, new LoadCold(Spec(load)), mapped: null, ct);
        return new LoadOutcome(StartKind.Cold, seesPool ? await capture.TryCaptureAsync(slot.Sandbox.Process, load.Key, load.Version, ct) : null);
    }

    // False when the template cannot serve (pool service down, template invalid): the caller starts cold.
    private async Task<bool> TryTemplateAsync(LoadTarget target, FunctionLoad load, TemplateInfo template, string? poolIdentity, Action<StartKind> attempting, CancellationToken ct)
    {
        try
        {
            var verify = templates.NeedsVerification(template, poolIdentity);
            var pages = await FetchTemplateAsync(template, verify, ct);
            attempting(StartKind.Template);
            await SendAsync(target, load, new LoadFromTemplate(Spec(load), pages), template, ct);
            return true;
        }
        catch (Grpc.Core.RpcException e)
        {
            // The pool service is down, or the template is being rebuilt: start cold, never wrong.
            log.LogWarning("worker {Node}: template {Key} unreachable ({Status}: {Detail}); starting cold", settings.Name, load.Key, e.StatusCode, e.Status.Detail);
            return false;
        }
        catch (SandboxException e) when (e.Kind == ErrorKinds.TemplateInvalid)
        {
            // Never used again until the registry offers it afresh; the next start checks again.
            templates.Distrust(load.Key, template, poolIdentity);
            return false;
        }
    }

    // In rdma mode the template's pages come from the pool service: fetched on first touch (lazy), or now (eager).
    private async Task<TemplatePages> FetchTemplateAsync(TemplateInfo template, bool verify, CancellationToken ct)
    {
        var header = templates.HeaderFile(template);
        if (mirror is not null)
            await Task.Yield(); // pages or their fault service come over the network: off the socket engine's thread
        if (mirror?.PageSocket is not null)
        {
            // Nothing is fetched now; the sandbox's fault handler asks for pages as the guest touches them. The
            // pool serves only regions it has checked against their durable copy, so the load checks nothing.
            await mirror.PrepareLazyAsync(template, settings.PoolFetch == PoolFetch.Prefetch, ct);
            return new TemplatePages(header, poolPath, LoadSource.LazyTemplate, Verify: false, mirror.PageSocket);
        }
        if (mirror is not null)
            await mirror.EnsureAsync(template, ct);
        return new TemplatePages(header, poolPath, LoadSource.MapTemplate, verify);
    }

    private InstanceSpec Spec(FunctionLoad load)
    {
        var limits = load.Version.Limits;
        return new InstanceSpec(load.Key.Name, load.Version.Sha256, directories.Modules, (long)limits.MemoryMb << 20, limits.TimeoutMs, limits.InitTimeoutMs, limits.Env.ToList())
        {
            TmpBytes = (long)limits.TmpMb << 20,
            LayerPath = load.Prepared.Layer,
            InvocationId = load.InvocationId,
            ReadOnlyDirectories = load.Prepared.Runtime,
        };
    }

    // The slot is emptied and its cgroup raised to the new function's limits before the load; a cut waits
    // until the previous instance is gone (cutting first could push its memory over the new limit).
    private LoadTarget Begin(SandboxSlot<IsolatedSandbox> slot, FunctionLimits limits)
    {
        var needsReset = pool.BeginLoad(slot);
        var memoryLimit = limits.SandboxMemoryBytes(SandboxFactory.HostOverheadBytes);
        var cpu = limits.CpuMillicores / 1000.0;
        var cgroup = slot.Sandbox.Process.Cgroup;
        var cutAfter = cgroup?.MemoryLimit is { } current && current > memoryLimit;
        cgroup?.SetLimits(cutAfter ? cgroup.MemoryLimit!.Value : memoryLimit, cpu);
        return new LoadTarget(slot, cgroup, memoryLimit, cpu, cutAfter) { NeedsReset = needsReset };
    }

    private async Task SendAsync(LoadTarget target, FunctionLoad load, Load request, TemplateInfo? mapped, CancellationToken ct)
    {
        var process = target.Slot.Sandbox.Process;
        long memory;
        if (target.NeedsReset)
        {
            target.NeedsReset = false; // the previous instance is gone even if this load fails
            memory = (await process.ResetAndLoadAsync(request, ct)).Loaded.MemoryBytes;
        }
        else
        {
            memory = (await process.LoadAsync(request, ct)).MemoryBytes;
        }
        if (target.CutAfter)
            target.Cgroup!.SetLimits(target.MemoryLimit, target.Cpu);
        pool.CompleteLoad(target.Slot, new LoadedInstance(load.Key, memory, mapped?.Key, mapped?.Region.Length ?? 0));
    }

    private sealed record LoadTarget(SandboxSlot<IsolatedSandbox> Slot, SandboxCgroup? Cgroup, long MemoryLimit, double Cpu, bool CutAfter)
    {
        public bool NeedsReset { get; set; }
    }
}
