using System.Diagnostics;
using System.Security.Cryptography;
using Akka.Actor;
using Akka.Hosting;
using TrEnv.Contracts;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Sessions;

/// <summary>
/// A fork (<c>POST /v1/sessions/{id}/fork</c>): the parent's entity gives its state as one delta (an active
/// parent's pages and /tmp captured into a region of the fork's own, a paused parent's last delta); while it is
/// made durable (the parent runs on) the pool records every child as a holder of that region, so it is stored once
/// and freed with the last child (or parent) that lets it go, and each child's entity starts paused at it. The
/// fork answers once the copy is on disk. A child resumes on whichever worker its first call or resume lands on
/// and is independent of its parent and siblings.
/// </summary>
public sealed class SessionForking(IRequiredActor<SessionRegion> sessions, IRequiredActor<PoolProxy> pool, IRequiredActor<TemplateRegion> templates,
    ILogger<SessionForking> log)
{
    public const int MaxChildren = 64;
    private static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The children, and what the fork cost: the parent's calls waited <paramref name="ParentBlockedMs"/>.</summary>
    public sealed record Forked(string Parent, IReadOnlyList<string> Sessions, double ParentBlockedMs, double ForkMs);

    public async Task<(Forked? Ok, SessionReplies.Refused? Refused)> ForkAsync(string parentId, int count, int? idleTimeoutS, int? checkpointEveryS, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var owner = $"session-{parentId}-fork-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        var answer = await sessions.ActorRef.Ask<IProtocolMessage>(new SessionCommands.Fork(parentId, owner), StepTimeout, ct);
        if (answer is SessionReplies.Refused refused)
            return (null, refused);
        if (answer is not SessionReplies.ForkPoint point)
            return (null, Refuse(parentId, ErrorKinds.Internal, $"Unexpected answer {answer.GetType().Name} from the session registry."));
        var delta = point.Delta;
        var pointMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        double durableMs = 0, heldMs = 0;
        ct = CancellationToken.None; // from here the fork finishes (or undoes itself) even if its caller went away
        var ids = Enumerable.Range(0, count).Select(_ => Api.SessionsApi.NewId()).ToList();
        var created = new List<string>();
        try
        {
            // The durable copy is written while the pool and the template registry record the children's holds and
            // the children are created; the fork answers only once it is on disk (a child is a paused session, which
            // survives the pool's death).
            // A state no different from its template stores no pages: there is no region to copy or hold.
            var stored = delta.Region.Length > 0;
            var durable = point.Captured && stored
                ? pool.ActorRef.Ask<PoolReplies.Durable>(new PoolCommands.SaveDurable(PoolCommands.DefaultPool, owner), StepTimeout, ct)
                : Task.FromResult(new PoolReplies.Durable(owner, true, null));
            var held = stored
                ? pool.ActorRef.Ask<PoolReplies.Held>(new PoolCommands.Hold(PoolCommands.DefaultPool, delta.Owner, ids), StepTimeout, ct)
                : Task.FromResult(new PoolReplies.Held(delta.Owner, true));
            // The base template every child's state applies over: held for all of them in one event.
            var baseHold = delta.Base is { } baseTemplate
                ? templates.ActorRef.Ask<IProtocolMessage>(new TemplateCommands.HoldAll(baseTemplate.Key, ids), StepTimeout, ct)
                : Task.FromResult<IProtocolMessage>(new TemplateReplies.Ack(""));
            var baseHeld = delta.Base is not null && await baseHold is TemplateReplies.Ack;
            if (!(await held).Ok)
            {
                // No child will exist: the template holds taken for them go too.
                if (baseHeld)
                    foreach (var id in ids)
                        templates.ActorRef.Tell(new TemplateCommands.Unhold(delta.Base!.Key, id));
                await durable;
                return (null, Refuse(parentId, ErrorKinds.Unavailable, "The parent's stored state changed while it was being forked (it was resumed and paused again, or deleted); fork again."));
            }
            heldMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds - pointMs;
            var idle = idleTimeoutS ?? point.Parent.IdleTimeoutSeconds;
            var every = checkpointEveryS ?? point.Parent.CheckpointEveryS;
            var replies = await Task.WhenAll(ids.Select(id => CreateChildAsync(new SessionCommands.CreateFork(id, parentId, point.Parent.Function, point.Version, delta, idle, every, baseHeld), ct)));
            var childrenMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds - pointMs - heldMs;
            foreach (var (id, ok) in ids.Zip(replies))
            {
                if (ok)
                    created.Add(id);
                else
                    Abandon(delta, id, baseHeld); // it never existed: it holds nothing
            }
            var saved = await durable;
            durableMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds - pointMs - heldMs - childrenMs;
            if (!saved.Ok)
            {
                // Without a durable copy the children would not survive the pool: they go, and the fork is refused.
                foreach (var id in created)
                    sessions.ActorRef.Tell(new SessionCommands.Delete(id));
                return (null, Refuse(parentId, ErrorKinds.Internal, $"The fork's state could not be made durable: {saved.Error} The parent runs on; fork again."));
            }
            if (created.Count < ids.Count)
                log.LogWarning("Fork of session {SessionId}: {Failed} of {Count} children could not be created", parentId, ids.Count - created.Count, ids.Count);
            log.LogInformation("Fork of session {SessionId} into {Count}: state {PointMs:F1} ms (parent blocked {BlockedMs:F1}), holds {HeldMs:F1} ms, children {ChildrenMs:F1} ms, durable copy waited for {DurableMs:F1} ms more",
                parentId, created.Count, pointMs, point.BlockedMs, heldMs, childrenMs, Math.Max(0, durableMs));
            if (created.Count == 0)
                return (null, Refuse(parentId, ErrorKinds.Unavailable, "No child of the fork could be created (the session registry did not answer); the parent runs on, fork again."));
            return (new Forked(parentId, created, point.BlockedMs, Stopwatch.GetElapsedTime(started).TotalMilliseconds), null);
        }
        finally
        {
            // The fork's own region belongs to no session: its children hold it, and it goes with the last of them.
            if (point.Captured)
                pool.ActorRef.Tell(new PoolCommands.Free(PoolCommands.DefaultPool, owner));
        }
    }

    private void Abandon(SessionDelta delta, string id, bool baseHeld)
    {
        pool.ActorRef.Tell(new PoolCommands.Release(PoolCommands.DefaultPool, delta.Owner, id));
        if (baseHeld)
            templates.ActorRef.Tell(new TemplateCommands.Unhold(delta.Base!.Key, id));
    }

    private async Task<bool> CreateChildAsync(SessionCommands.CreateFork create, CancellationToken ct)
    {
        try
        {
            return await sessions.ActorRef.Ask<IProtocolMessage>(create, StepTimeout, ct) is SessionReplies.View;
        }
        catch (AskTimeoutException)
        {
            return false;
        }
    }

    private static SessionReplies.Refused Refuse(string id, string kind, string message) => new(id, kind, message, null);
}
