using System.Diagnostics;
using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;
using TrEnv.Worker.Artifacts;
using TrEnv.Worker.Capacity;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Loading;
using TrEnv.Worker.Placement;
using TrEnv.Worker.Reporting;
using TrEnv.Worker.Retirement;
using TrEnv.Worker.Templates;

namespace TrEnv.Worker.Invocation;

/// <summary>
/// One invocation on this worker, the hot path: prepare the version's files, acquire a sandbox (REUSE, generic,
/// NEW or SWITCH), load the version when the sandbox does not hold it (template or cold), invoke, release.
/// </summary>
public sealed class InvocationPipeline(
    NodeSettings settings,
    SandboxPool<IsolatedSandbox> pool,
    ArtifactStore artifacts,
    InstanceLoader loader,
    MemoryBound bound,
    VersionRetirement retirement,
    LocalTemplates templates,
    PoolCache? mirror,
    FunctionLogs logs,
    ILogger log)
{
    public async Task<WorkerInvokeResult> InvokeAsync(WorkerInvoke request, CancellationToken ct)
    {
        // The worker's part of the coordinator's trace: the call's context rode inside the message.
        using var span = NodeTelemetry.Worker.StartActivity("trenv.worker.invoke", ActivityKind.Server, NodeTelemetry.ParentOf(request.TraceParent));
        span?.SetTag("faas.name", request.Function);
        span?.SetTag("faas.invocation_id", request.InvocationId);
        span?.SetTag("trenv.node", settings.Name);
        var result = await RunAsync(request, ct);
        span?.SetTag("trenv.start", result.Start.ToHeader());
        span?.SetTag("trenv.sandbox", result.Sandbox.ToHeader());
        if (!result.Ok)
            span?.SetStatus(ActivityStatusCode.Error, result.ErrorKind);
        var (busy, sequence) = pool.Advance();
        return result with { BusyAfter = busy, Sequence = sequence };
    }

    /// <summary>What a first call would prepare (module, layer, a runtime's compile), done ahead; a failure waits for that call.</summary>
    public async Task PrepareAheadAsync(WorkerPrepare prepare)
    {
        var (_, failure) = await artifacts.PrepareAsync(prepare.Function, prepare.Version, CancellationToken.None);
        if (failure is not null)
            log.LogWarning("Preparing {Function} v{Version} ahead of its first call failed: {Error}", prepare.Function, prepare.Version.Version, failure.Message);
    }

    private async Task<WorkerInvokeResult> RunAsync(WorkerInvoke request, CancellationToken ct)
    {
        var key = new FunctionVersionKey(request.Function, request.Version.Version);
        var started = Stopwatch.GetTimestamp();
        var (prepared, unprepared) = await artifacts.PrepareAsync(request.Function, request.Version, ct);
        if (unprepared is not null)
            return Failed(request, unprepared.Kind, unprepared.Message);
        Acquisition<IsolatedSandbox> acquired;
        using (var acquiring = NodeTelemetry.Worker.StartActivity("trenv.sandbox.acquire"))
        {
            acquired = await pool.AcquireAsync(key, request.Version.Limits.Network, atMemoryBound: bound.Reached);
            acquiring?.SetTag("trenv.sandbox", acquired.Slot is null ? "none" : acquired.Origin.ToHeader());
        }
        if (acquired.Slot is not { } slot)
            return Failed(request, ErrorKinds.NoCapacity, WorkerLog.NoRoomMessage(settings, acquired.Refused!.Value));
        var sandbox = acquired.Origin;
        var start = StartKind.Warm; // a load that fails reports the start it was attempting, never "warm"
        TemplateInfo? captured = null;
        try
        {
            if (slot.Instance?.Key != key)
            {
                var load = new FunctionLoad(key, request.Version, prepared!, request.Template, request.InvocationId);
                using var loading = NodeTelemetry.Worker.StartActivity("trenv.worker.load");
                var outcome = await loader.LoadAsync(slot, load, kind => start = kind, ct);
                (start, captured) = (outcome.Kind, outcome.Captured);
                loading?.SetTag("trenv.start", start.ToHeader());
            }
            var startupMicros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            Invoked result;
            using (NodeTelemetry.Worker.StartActivity("trenv.sandbox.call", ActivityKind.Client))
                result = await slot.Sandbox.Process.InvokeAsync(request.Input, TimeSpan.FromMilliseconds(request.Version.Limits.TimeoutMs), ct, request.InvocationId);
            logs.Append(request.Function, request.Version.Version, result.Stdout, result.Stderr);
            Release(slot);
            if (start == StartKind.Template && mirror?.PageSocket is not null && (request.Template ?? templates.Find(key)) is { } used)
                _ = mirror.PublishWorkingSetAsync(used, CancellationToken.None); // the first invocation's pages, for prefetching elsewhere
            if (start != StartKind.Warm)
                _ = bound.EnforceAsync(); // a new instance may have pushed the worker over its bound
            WorkerLog.Invoked(log, start == StartKind.Warm ? LogLevel.Debug : LogLevel.Information, request.InvocationId, request.Function, request.Version.Version, start.ToHeader(), sandbox.ToHeader(), slot.Sandbox.Pid, startupMicros, result.ExecMicros);
            return new WorkerInvokeResult(request.InvocationId, true, result.Output, start, sandbox, settings.Name, startupMicros, result.ExecMicros, null, null, captured);
        }
        catch (SandboxException e)
        {
            logs.Append(request.Function, request.Version.Version, e.Stdout, e.Stderr);
            if (e.Kind == ErrorKinds.Exception && !e.InstanceDiscarded)
                Release(slot); // the guest reported a failure and returned: its instance is intact and stays warm
            else
                pool.Discard(slot, e.InstanceDiscarded);
            return Failed(request, e.Kind, e.Message, start, sandbox, captured);
        }
        catch (EngineException e)
        {
            pool.Discard(slot, instanceGone: true);
            return Failed(request, e.Kind, e.Message, start, sandbox, captured);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            // The sandbox's state is unknown (its cgroup or files failed): never reuse it.
            slot.Sandbox.Process.Kill();
            pool.Discard(slot, instanceGone: true);
            return Failed(request, ErrorKinds.Internal, $"Worker {settings.Name} could not prepare a sandbox: {e.Message}", start, sandbox, captured);
        }
    }

    // Warm for the next call, unless its version was forgotten while it ran: then back to the generic pool.
    private void Release(SandboxSlot<IsolatedSandbox> slot)
    {
        if (!pool.Release(slot))
            _ = retirement.ReclaimAsync(slot);
    }

    private WorkerInvokeResult Failed(WorkerInvoke request, string kind, string message, StartKind start = StartKind.Cold, SandboxOrigin sandbox = SandboxOrigin.New, TemplateInfo? captured = null)
    {
        WorkerLog.Failed(log, request.InvocationId, request.Function, request.Version.Version, kind, start.ToHeader(), message);
        return new(request.InvocationId, false, [], start, sandbox, settings.Name, 0, 0, kind, message, captured);
    }
}
