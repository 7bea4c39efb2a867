using Akka.Actor;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Sessions;

// Storing a session as a delta in the pool (a pause, or a checkpoint that keeps it running), and deleting it with what it holds.
public sealed partial class SessionActor
{
    // A pause stores the session and frees its sandbox; a checkpoint (keepActive) stores it and leaves it running.
    private async Task<Outcome> StoreAsync(SessionState st, string reason, bool keepActive)
    {
        var id = Id;
        var (reply, refused) = await CaptureAsync(st, st.NextDeltaOwner, keepActive ? "checkpoint" : "pause", keepActive, durable: true);
        if (reply is null)
            return refused!;
        var previous = st.Delta;
        var pool = _s.Pool;
        var letGo = previous is null || previous.Owner == reply.Delta!.Owner ? null : st.LetGo(previous);
        IEvent stored = keepActive
            ? new SessionEvents.Checkpointed(id, reply.Delta!, reason, reply.PauseMicros / 1000.0)
            : new SessionEvents.Paused(id, reply.Delta!, reason, reply.PauseMicros / 1000.0);
        return new Outcome([stored], s => new SessionReplies.View(s.ToInfo()),
            After: () =>
            {
                // Only once the new delta is durable and recorded does the previous one go.
                if (letGo is not null)
                    pool.Tell(letGo);
            });
    }

    // The session's pages (and /tmp changes) captured on its worker into a region of the owner; the reply, or the refusal.
    private async Task<(WorkerSessionReplies.Paused? Reply, Outcome? Refused)> CaptureAsync(SessionState st, string owner, string what, bool keepActive, bool durable)
    {
        var id = Id;
        var (worker, missing) = FindWorker(st, st.Address);
        if (worker is null)
            return (null, missing);
        WorkerSessionReplies.Paused reply;
        try
        {
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(worker.Gone.Token);
            reply = await worker.Invoker.Ask<WorkerSessionReplies.Paused>(new WorkerSessionCommands.Pause(id, owner, st.Base, keepActive, durable) { TraceParent = TrEnv.Cluster.NodeTelemetry.CurrentTraceParent() }, PauseTimeout, gone.Token);
        }
        catch (OperationCanceledException) when (worker.Gone.IsCancellationRequested)
        {
            return (null, Refuse(id, ErrorKinds.SessionLost, $"Worker {worker.Status.Node} left the cluster during the session's {what}; {SinceSaved(st)} is gone.",
                [new SessionEvents.Lost(id, $"Worker {worker.Status.Node} left the cluster during the session's {what}.", DateTimeOffset.UtcNow)]));
        }
        catch (AskTimeoutException)
        {
            return (null, Refuse(id, ErrorKinds.Unavailable, $"Worker {worker.Status.Node} did not finish the {what} in time; the session stays active there."));
        }
        if (reply.InstanceLost)
            return (null, Refuse(id, ErrorKinds.SessionLost, reply.ErrorMessage ?? "The session's instance is gone.",
                [new SessionEvents.Lost(id, reply.ErrorMessage ?? "Its instance is gone.", DateTimeOffset.UtcNow)]));
        if (!reply.Ok || reply.Delta is null)
            return (null, Refuse(id, reply.ErrorKind ?? ErrorKinds.Internal, reply.ErrorMessage ?? $"The {what} failed; the session stays active."));
        return (reply, null);
    }

    private async Task<Outcome> DeleteAsync(SessionState st)
    {
        var id = Id;
        if (st.Status == SessionStates.Active && _s.Workers.Find(st.Address) is { } worker)
        {
            try
            {
                await worker.Invoker.Ask<WorkerSessionReplies.Released>(new WorkerSessionCommands.Release(id), TimeSpan.FromSeconds(10));
            }
            catch (AskTimeoutException)
            {
                // The worker reports the sandbox as idle later, and this entity (deleted) releases it then.
            }
        }
        var pool = _s.Pool;
        var templates = _s.TemplateRegistry;
        return new Outcome([new SessionEvents.Deleted(id, DateTimeOffset.UtcNow)], s => new SessionReplies.View(s.ToInfo()), After: () =>
        {
            if (st.Delta is not null)
                pool.Tell(st.LetGo(st.Delta));
            if (st.Base is not null)
                templates.Tell(new TemplateCommands.Unhold(st.Base.Key, id));
        });
    }
}
