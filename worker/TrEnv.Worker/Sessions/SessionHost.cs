using System.Diagnostics;
using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Sandbox;
using TrEnv.Worker.Artifacts;
using TrEnv.Worker.Capacity;
using TrEnv.Worker.Invocation;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Loading;
using TrEnv.Worker.Placement;
using TrEnv.Worker.Reporting;
using TrEnv.Worker.Templates;

namespace TrEnv.Worker.Sessions;

/// <summary>
/// Agent sessions on this worker: a sandbox bound to one session until it pauses (captured as a delta over
/// the function's template into the pool, made durable, then the sandbox is reset for anyone) or ends.
/// Every operation on one session runs under its own gate, so calls never overlap inside the instance.
/// </summary>
public sealed partial class SessionHost(
    NodeSettings settings,
    SandboxPool<IsolatedSandbox> pool,
    ArtifactStore artifacts,
    InstanceLoader loader,
    LocalTemplates templates,
    MemoryBound bound,
    TemplateMappings mappings,
    IRegistryClient registry,
    PoolCache? mirror,
    string poolPath,
    FunctionLogs logs,
    ILogger log)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, ActiveSession> _sessions = new(StringComparer.Ordinal);

    /// <summary>This worker's cluster address, reported with idle sessions.</summary>
    public string Address { get; set; } = "";

    public async Task<WorkerSessionReplies.Started> StartAsync(WorkerSessionCommands.Start start, CancellationToken ct)
    {
        using var span = NodeTelemetry.Worker.StartActivity(start.Delta is null ? "trenv.worker.session.start" : "trenv.worker.session.resume",
            ActivityKind.Server, NodeTelemetry.ParentOf(start.TraceParent));
        span?.SetTag("trenv.session", start.SessionId);
        span?.SetTag("faas.name", start.Function);
        var started = await StartCoreAsync(start, ct);
        span?.SetTag("trenv.start", started.Start);
        if (!started.Ok)
            span?.SetStatus(ActivityStatusCode.Error, started.ErrorKind);
        return started;
    }

    private async Task<WorkerSessionReplies.Started> StartCoreAsync(WorkerSessionCommands.Start start, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var key = new FunctionVersionKey(start.Function, start.Version.Version);
        if (Find(start.SessionId) is { } existing)
            return new(start.SessionId, true, settings.Name, "active", 0, 0, existing.Base, null, null, null); // a retried start
        var (prepared, unprepared) = await artifacts.PrepareAsync(start.Function, start.Version, ct);
        if (unprepared is not null)
            return StartFailed(start, unprepared.Kind, unprepared.Message);
        var acquired = await pool.AcquireAsync(key, start.Version.Limits.Network, reuse: false, atMemoryBound: bound.Reached);
        if (acquired.Slot is not { } slot)
            return StartFailed(start, ErrorKinds.NoCapacity, WorkerLog.NoRoomMessage(settings, acquired.Refused!.Value));
        pool.BindSession(slot, start.SessionId);
        try
        {
            var load = new FunctionLoad(key, start.Version, prepared!, start.Template, start.InvocationId);
            LoadOutcome outcome;
            if (start.Delta is { } delta)
            {
                await loader.ResumeAsync(slot, load, delta, ct);
                outcome = new LoadOutcome(StartKind.Resume, null);
            }
            else
            {
                outcome = await loader.LoadAsync(slot, load, _ => { }, ct);
            }
            // The template this instance's state is compared against when it pauses.
            var baseTemplate = outcome.Kind == StartKind.Resume ? start.Delta!.Base : outcome.Captured ?? start.Template ?? templates.Find(key);
            var session = new ActiveSession(start.SessionId, slot, start.Function, start.Version, baseTemplate, start.IdleTimeoutSeconds);
            lock (_gate)
                _sessions[start.SessionId] = session;
            var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            var kind = outcome.Kind.ToHeader();
            log.LogInformation("Session {SessionId} of {Function} v{Version}: {Start} start in {Sandbox} sandbox {Pid}, {StartupUs} µs",
                start.SessionId, start.Function, start.Version.Version, kind, acquired.Origin.ToHeader(), slot.Sandbox.Pid, micros);
            return new(start.SessionId, true, settings.Name, kind, micros, slot.Instance?.MemoryBytes ?? 0, baseTemplate, outcome.Captured, null, null);
        }
        catch (SandboxException e)
        {
            logs.Append(start.Function, start.Version.Version, e.Stdout, e.Stderr);
            pool.Discard(slot, e.InstanceDiscarded);
            return StartFailed(start, e.Kind, e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or Grpc.Core.RpcException or TemplateInvalidException)
        {
            slot.Sandbox.Process.Kill();
            pool.Discard(slot, instanceGone: true);
            return StartFailed(start, e is Grpc.Core.RpcException ? ErrorKinds.NoCapacity : ErrorKinds.Internal,
                $"Worker {settings.Name} could not start the session: {e.Message}");
        }
    }

    public async Task<WorkerSessionReplies.Invoked> InvokeAsync(WorkerSessionCommands.Invoke invoke, CancellationToken ct)
    {
        using var span = NodeTelemetry.Worker.StartActivity("trenv.worker.session.invoke", ActivityKind.Server, NodeTelemetry.ParentOf(invoke.TraceParent));
        span?.SetTag("trenv.session", invoke.SessionId);
        var invoked = await InvokeCoreAsync(invoke, ct);
        if (!invoked.Result.Ok)
            span?.SetStatus(ActivityStatusCode.Error, invoked.Result.ErrorKind);
        return invoked;
    }

    private async Task<WorkerSessionReplies.Invoked> InvokeCoreAsync(WorkerSessionCommands.Invoke invoke, CancellationToken ct)
    {
        if (Find(invoke.SessionId) is not { } session)
            return new(Result(invoke.InvocationId, false, [], 0, ErrorKinds.SessionLost, $"Worker {settings.Name} holds no instance of session {invoke.SessionId}."), true);
        await session.Gate.WaitAsync(ct);
        try
        {
            if (Find(invoke.SessionId) != session)
                return new(Result(invoke.InvocationId, false, [], 0, ErrorKinds.SessionLost, $"Session {invoke.SessionId} was paused or ended meanwhile."), true);
            try
            {
                var result = await session.Slot.Sandbox.Process.InvokeAsync(invoke.Input, TimeSpan.FromMilliseconds(session.Version.Limits.TimeoutMs), ct, invoke.InvocationId);
                logs.Append(session.Function, session.Version.Version, result.Stdout, result.Stderr);
                session.Used();
                return new(Result(invoke.InvocationId, true, result.Output, result.ExecMicros, null, null), false);
            }
            catch (SandboxException e)
            {
                logs.Append(session.Function, session.Version.Version, e.Stdout, e.Stderr);
                session.Used();
                if (e.Kind == ErrorKinds.Exception && !e.InstanceDiscarded)
                    return new(Result(invoke.InvocationId, false, [], 0, e.Kind, e.Message), false); // the script raised; its state is intact
                Drop(session);
                pool.Discard(session.Slot, e.InstanceDiscarded);
                return new(Result(invoke.InvocationId, false, [], 0, e.Kind, e.Message), true);
            }
        }
        finally
        {
            session.Gate.Release();
        }
    }

    public async Task<WorkerSessionReplies.Released> ReleaseAsync(WorkerSessionCommands.Release release, CancellationToken ct)
    {
        if (Find(release.SessionId) is not { } session)
            return new(release.SessionId, false);
        await session.Gate.WaitAsync(ct);
        try
        {
            if (Find(release.SessionId) != session)
                return new(release.SessionId, false);
            Drop(session);
            await FreeSandboxAsync(session, ct);
            return new(release.SessionId, true);
        }
        finally
        {
            session.Gate.Release();
        }
    }

    /// <summary>Sessions idle past their timeout are reported to their entity (which pauses them), again every 30 s until it does.</summary>
    public void ReportIdle()
    {
        var now = DateTimeOffset.UtcNow;
        List<ActiveSession> idle;
        lock (_gate)
            idle = _sessions.Values.Where(s => s.ShouldReportIdle(now)).ToList();
        foreach (var s in idle)
            registry.SessionIdle(new SessionCommands.IdleExpired(s.Id, settings.Name, Address));
    }

    private ActiveSession? Find(string id)
    {
        lock (_gate)
            return _sessions.GetValueOrDefault(id);
    }

    private void Drop(ActiveSession session)
    {
        lock (_gate)
        {
            if (_sessions.GetValueOrDefault(session.Id) == session)
                _sessions.Remove(session.Id);
        }
    }

    private async Task FreeSandboxAsync(ActiveSession session, CancellationToken ct)
    {
        await pool.ResetToGenericAsync([session.Slot], ct);
        mappings.Report();
    }

    private WorkerInvokeResult Result(string invocationId, bool ok, byte[] output, long execMicros, string? kind, string? message)
        => new(invocationId, ok, output, StartKind.Warm, SandboxOrigin.Session, settings.Name, 0, execMicros, kind, message, null);

    private WorkerSessionReplies.Started StartFailed(WorkerSessionCommands.Start start, string kind, string message)
    {
        WorkerLog.Failed(log, start.InvocationId, start.Function, start.Version.Version, kind, start.Delta is null ? "session" : "resume", message);
        return new(start.SessionId, false, settings.Name, start.Delta is null ? "cold" : "resume", 0, 0, null, null, kind, message);
    }
}
