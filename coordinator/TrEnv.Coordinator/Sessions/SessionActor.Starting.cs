using Akka.Actor;
using Akka.Event;
using TrEnv.Contracts;
using TrEnv.Coordinator.Placement;

namespace TrEnv.Coordinator.Sessions;

// Bringing a session up on a worker: a new one of a function, or a paused (or lost, checkpointed) one from its last delta.
public sealed partial class SessionActor
{
    private async Task<Outcome> CreateAsync(SessionCommands.Create create)
    {
        var id = Id;
        FunctionVersion? version = _s.Functions.TryGet(create.Function, out var known) ? known : null;
        if (version is null)
        {
            var view = await _s.FunctionRegistry.Ask<FunctionReplies.View>(new FunctionCommands.Get(create.Function), AskTimeout);
            _s.Functions.Set(view);
            version = view.Current;
        }
        if (version is null)
            return Refuse(id, ErrorKinds.NotFound, $"There is no function named \"{create.Function}\".");
        var key = TemplateCommands.KeyOf(create.Function, version.Version);
        var template = _s.Templates.Find(key);
        if (_s.Workers.Choose("") is not { } worker)
            return Refuse(id, ErrorKinds.Unavailable, "No worker has room for a new session right now.");
        var start = new WorkerSessionCommands.Start(id, create.InvocationId, create.Function, version, template, null, create.IdleTimeoutSeconds) { TraceParent = TrEnv.Cluster.NodeTelemetry.CurrentTraceParent() };
        var started = await StartOnAsync(worker, start, version);
        if (!started.Ok)
            return Refuse(id, started.ErrorKind ?? ErrorKinds.Internal, started.ErrorMessage ?? "The session could not start.");
        if (started.CapturedTemplate is { } captured)
            _s.Templates.Add(captured);
        // The template the session's deltas apply over must outlive any redeploy while the session exists.
        if (started.Base is { } baseTemplate && !await HoldAsync(baseTemplate.Key, id))
            _log.Error("session {0}: the template {1} could not be held; a redeploy may free it under the session", id, baseTemplate.Key);
        var now = DateTimeOffset.UtcNow;
        return new Outcome(
            [new SessionEvents.Created(id, create.Function, version, create.IdleTimeoutSeconds, now, create.CheckpointEverySeconds),
             new SessionEvents.Activated(id, started.Node, worker.Status.Address, started.Base, started.MemoryBytes, started.StartupMicros / 1000.0, now)],
            st => new SessionReplies.View(st.ToInfo()));
    }

    private async Task<Outcome> ResumeAsync(SessionState st, string invocationId, string? node)
    {
        if (st.Status == SessionStates.Lost && st.CanRecover)
        {
            var (recovered, back, notBack) = await RecoverCoreAsync(st, invocationId, node);
            return back is null ? notBack! : new Outcome([recovered!, back], s => new SessionReplies.View(s.ToInfo()));
        }
        var (activated, refused) = await ResumeCoreAsync(st, invocationId, node);
        return activated is null ? refused! : new Outcome([activated], s => new SessionReplies.View(s.ToInfo()));
    }

    // A lost session with a checkpoint: its last stored state resumed on a live worker, with what was lost on record.
    private async Task<(SessionEvents.Recovered? Recovered, SessionEvents.Activated? Activated, Outcome? Refused)> RecoverCoreAsync(SessionState st, string invocationId, string? node)
    {
        var recovery = new SessionRecovery(DateTimeOffset.UtcNow, st.LastSavedAt!.Value, st.CallsSinceSaved, st.Error ?? "Its instance was lost.", st.Node);
        var (activated, refused) = await ResumeCoreAsync(st, invocationId, node);
        if (activated is null)
            return (null, null, refused);
        _log.Info("Session {0} recovered on {1} from its checkpoint of {2:O} ({3} calls since lost)", Id, activated.Node, recovery.CheckpointAt,
            recovery.LostCalls?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "an unknown number of");
        return (new SessionEvents.Recovered(Id, recovery with { At = activated.At }), activated, null);
    }

    private async Task<(SessionEvents.Activated? Activated, Outcome? Refused)> ResumeCoreAsync(SessionState st, string invocationId, string? node)
    {
        var id = Id;
        var stays = st.Status == SessionStates.Lost ? "it stays lost until a call or a resume brings it back" : "it stays paused";
        WorkerEntry? worker;
        if (node is not null)
        {
            worker = _s.Workers.Workers.FirstOrDefault(w => w.Status.Node == node && !w.Leaving);
            if (worker is null)
                return (null, Refuse(id, ErrorKinds.Unavailable, $"There is no worker named \"{node}\" in the cluster now; {stays}."));
        }
        else if ((worker = _s.Workers.Choose("")) is null)
        {
            return (null, Refuse(id, ErrorKinds.Unavailable, $"No worker has room to resume the session right now; {stays}."));
        }
        // The base template rides once, inside the delta; the event need not repeat what the state holds.
        var start = new WorkerSessionCommands.Start(id, invocationId, st.Function!, st.Version!, null, st.Delta!, st.IdleTimeoutSeconds) { TraceParent = TrEnv.Cluster.NodeTelemetry.CurrentTraceParent() };
        var started = await StartOnAsync(worker, start, st.Version!);
        if (!started.Ok)
        {
            // Pages not readable yet (a pool rebuilding from its durable copies) or no room: the session is intact, retry.
            var kind = started.ErrorKind is ErrorKinds.TemplateInvalid or ErrorKinds.SandboxCrashed ? ErrorKinds.Unavailable : started.ErrorKind ?? ErrorKinds.Internal;
            return (null, Refuse(id, kind, $"The session could not be resumed on {worker.Status.Node}: {started.ErrorMessage} {char.ToUpperInvariant(stays[0])}{stays[1..]}."));
        }
        return (new SessionEvents.Activated(id, started.Node, worker.Status.Address, null, started.MemoryBytes, started.StartupMicros / 1000.0, DateTimeOffset.UtcNow), null);
    }

    private async Task<WorkerSessionReplies.Started> StartOnAsync(WorkerEntry worker, WorkerSessionCommands.Start start, FunctionVersion version)
    {
        Interlocked.Increment(ref worker.InFlight);
        try
        {
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(worker.Gone.Token);
            return await worker.Invoker.Ask<WorkerSessionReplies.Started>(start, Api.InvokeApi.AnswerDeadline(version.Limits), gone.Token);
        }
        catch (Exception e) when (e is AskTimeoutException or OperationCanceledException)
        {
            // It may still come up there: release it so no sandbox stays bound to a session that never started.
            worker.Invoker.Tell(new WorkerSessionCommands.Release(start.SessionId));
            return new(start.SessionId, false, worker.Status.Node, "cold", 0, 0, null, null, ErrorKinds.Unavailable,
                $"Worker {worker.Status.Node} {(e is AskTimeoutException ? "did not answer in time" : "left the cluster")}.");
        }
        finally
        {
            Interlocked.Decrement(ref worker.InFlight);
        }
    }

    private async Task<bool> HoldAsync(string key, string id)
    {
        try
        {
            return await _s.TemplateRegistry.Ask<IProtocolMessage>(new TemplateCommands.Hold(key, id), AskTimeout) is TemplateReplies.Ack;
        }
        catch (AskTimeoutException)
        {
            return false;
        }
    }
}
