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
        var what = keepActive ? "checkpoint" : "pause";
        var (worker, missing) = FindWorker(st, st.Address);
        if (worker is null)
            return missing!;
        WorkerSessionReplies.Paused reply;
        try
        {
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(worker.Gone.Token);
            reply = await worker.Invoker.Ask<WorkerSessionReplies.Paused>(new WorkerSessionCommands.Pause(id, st.NextDeltaOwner, st.Base, keepActive), PauseTimeout, gone.Token);
        }
        catch (OperationCanceledException) when (worker.Gone.IsCancellationRequested)
        {
            return Refuse(id, ErrorKinds.SessionLost, $"Worker {worker.Status.Node} left the cluster during the session's {what}; {SinceSaved(st)} is gone.",
                [new SessionEvents.Lost(id, $"Worker {worker.Status.Node} left the cluster during the session's {what}.", DateTimeOffset.UtcNow)]);
        }
        catch (AskTimeoutException)
        {
            return Refuse(id, ErrorKinds.Unavailable, $"Worker {worker.Status.Node} did not finish the {what} in time; the session stays active there.");
        }
        if (reply.InstanceLost)
            return Refuse(id, ErrorKinds.SessionLost, reply.ErrorMessage ?? "The session's instance is gone.",
                [new SessionEvents.Lost(id, reply.ErrorMessage ?? "Its instance is gone.", DateTimeOffset.UtcNow)]);
        if (!reply.Ok || reply.Delta is null)
            return Refuse(id, reply.ErrorKind ?? ErrorKinds.Internal, reply.ErrorMessage ?? $"The {what} failed; the session stays active.");
        var previous = st.Delta?.Owner;
        var pool = _s.Pool;
        IEvent stored = keepActive
            ? new SessionEvents.Checkpointed(id, reply.Delta, reason, reply.PauseMicros / 1000.0)
            : new SessionEvents.Paused(id, reply.Delta, reason, reply.PauseMicros / 1000.0);
        return new Outcome([stored], s => new SessionReplies.View(s.ToInfo()),
            After: () =>
            {
                // Only once the new delta is durable and recorded does the previous one go.
                if (previous is not null && previous != reply.Delta.Owner)
                    pool.Tell(new PoolCommands.Free(PoolCommands.DefaultPool, previous));
            });
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
                pool.Tell(new PoolCommands.Free(PoolCommands.DefaultPool, st.Delta.Owner));
            if (st.Base is not null)
                templates.Tell(new TemplateCommands.Unhold(st.Base.Key, id));
        });
    }
}
