using Akka.Event;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Sessions;

// Forking: the parent gives its state as a shareable delta; each child starts paused at it.
public sealed partial class SessionActor
{
    // An active parent's pages are captured into the fork's own region (not made durable here: the caller does
    // that while the parent runs on); the parent's calls wait only for this.
    private async Task<Outcome> ForkAsync(SessionState st, string owner)
    {
        // What the parent's callers wait: this entity takes no other message until the capture is back.
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var (reply, refused) = await CaptureAsync(st, owner, "fork", keepActive: true, durable: false);
        if (reply is null)
            return refused!;
        var blockedMs = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return new Outcome([], s => new SessionReplies.ForkPoint(s.ToInfo(), s.Version!, reply.Delta!, true, blockedMs));
    }

    private async Task<Outcome> CreateForkAsync(SessionCommands.CreateFork fork)
    {
        var id = Id;
        // The template the shared delta applies over must outlive a redeploy while this child exists.
        if (!fork.BaseHeld && fork.Delta.Base is { } baseTemplate && !await HoldAsync(baseTemplate.Key, id))
            _log.Error("session {0}: the template {1} could not be held; a redeploy may free it under the session", id, baseTemplate.Key);
        return new Outcome([new SessionEvents.Forked(id, fork.ParentId, fork.Function, fork.Version, fork.IdleTimeoutSeconds, fork.CheckpointEverySeconds, fork.Delta,
            DateTimeOffset.UtcNow)], s => new SessionReplies.View(s.ToInfo()));
    }
}
