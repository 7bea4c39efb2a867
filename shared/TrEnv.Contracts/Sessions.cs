namespace TrEnv.Contracts;

/// <summary>Messages routed to a session entity by its id.</summary>
public interface IWithSessionId
{
    string SessionId { get; }
}

/// <summary>
/// A paused session's stored state: the pages that differ from its base template (or every non-zero page
/// when the function has no template), in the pool region of <paramref name="Owner"/>, described by
/// <paramref name="Header"/> (a TemplateHeader of format 2). <paramref name="Base"/> is the template it
/// applies over, kept with the delta so a resume never depends on what the catalog holds by then. What the
/// session changed in /tmp follows the pages in the same region (<paramref name="FilesBytes"/> at
/// <paramref name="FilesOffset"/>), so the pool's durable copy keeps both.
/// </summary>
public sealed record SessionDelta(
    string Owner,
    PoolRegion Region,
    byte[] Header,
    TemplateInfo? Base,
    long StoredBytes,
    long MemoryBytes,
    DateTimeOffset PausedAt,
    long DirtiedBytes = 0, // what the guest wrote since its template was mapped: the delta's upper bound
    long FilesOffset = 0, // where in the region its /tmp changes start (after the pages)
    long FilesBytes = 0,
    string? FilesSha256 = null);

/// <summary>A session as the API shows it.</summary>
public sealed record SessionInfo(
    string Id,
    string Function,
    int Version,
    string State,
    string? Node,
    DateTimeOffset CreatedAt,
    DateTimeOffset LastActiveAt,
    DateTimeOffset? PausedAt,
    long Invocations,
    int Pauses,
    int Resumes,
    long MemoryBytes,
    long StoredBytes,
    long DirtiedBytes,
    long TemplateBytes,
    double? LastPauseMs,
    double? LastResumeMs,
    int IdleTimeoutSeconds,
    string? Error,
    int CheckpointEveryS = 0,
    int Checkpoints = 0,
    DateTimeOffset? LastCheckpointAt = null,
    double? LastCheckpointMs = null,
    long? CallsSinceSaved = 0,
    int Recoveries = 0,
    SessionRecovery? LastRecovery = null,
    long StoredFilesBytes = 0,
    string? ForkedFrom = null);

/// <summary>
/// A session brought back from its last checkpoint after its worker (<paramref name="Node"/>) died: when, from
/// which checkpoint, and the calls answered after that checkpoint whose effects are gone (null when the entity
/// did not see them all: it moved to another coordinator since the checkpoint).
/// </summary>
public sealed record SessionRecovery(DateTimeOffset At, DateTimeOffset CheckpointAt, long? LostCalls, string Reason, string? Node);

public static class SessionStates
{
    public const string Active = "active";
    public const string Paused = "paused";
    public const string Lost = "lost";
    public const string Deleted = "deleted";
}

/// <summary>The session registry: one sharded, persistent entity per session, which serializes everything done to it.</summary>
public static class SessionCommands
{
    public interface ISessionCommand : IWithSessionId, IProtocolMessage;

    /// <summary>
    /// <paramref name="CheckpointEverySeconds"/> &gt; 0: checkpoint the active session after calls, at most that often, so a
    /// worker's death loses only the calls since.
    /// </summary>
    public sealed record Create(string SessionId, string Function, int IdleTimeoutSeconds, string InvocationId, int CheckpointEverySeconds = 0) : ISessionCommand, ITraced
    {
        public string? TraceParent { get; init; }
    }

    public sealed record Invoke(string SessionId, string InvocationId, byte[] Input) : ISessionCommand, ITraced
    {
        public string? TraceParent { get; init; }
    }

    /// <summary>Pause now; <paramref name="Reason"/> is "api" or "idle".</summary>
    public sealed record Pause(string SessionId, string Reason) : ISessionCommand, ITraced
    {
        public string? TraceParent { get; init; }
    }

    /// <summary>Store the active session's state durably without pausing it; <paramref name="Reason"/> is "api" or "periodic".</summary>
    public sealed record Checkpoint(string SessionId, string Reason) : ISessionCommand, ITraced
    {
        public string? TraceParent { get; init; }
    }

    /// <summary>
    /// The parent's side of a fork: its state now, as a delta forked children can share (an active session's pages
    /// captured into a region of <paramref name="Owner"/>, a paused one's last delta). Answered with <see cref="SessionReplies.ForkPoint"/>.
    /// </summary>
    public sealed record Fork(string SessionId, string Owner) : ISessionCommand;

    /// <summary>
    /// A child's side of a fork: a new session, paused at <paramref name="Delta"/> (a region its parent's fork holds for it);
    /// <paramref name="BaseHeld"/> when the fork already holds the base template for it.
    /// </summary>
    public sealed record CreateFork(string SessionId, string ParentId, string Function, FunctionVersion Version, SessionDelta Delta, int IdleTimeoutSeconds,
        int CheckpointEverySeconds, bool BaseHeld = false) : ISessionCommand;

    /// <summary>
    /// Resume now, on <paramref name="Node"/> when given (a worker's name), else wherever placement says. With
    /// <paramref name="FromLastPause"/> a lost session goes back to its last pause: what it did since is gone.
    /// </summary>
    public sealed record Resume(string SessionId, string InvocationId, string? Node, bool FromLastPause = false) : ISessionCommand, ITraced
    {
        public string? TraceParent { get; init; }
    }

    public sealed record Get(string SessionId) : ISessionCommand;

    public sealed record Delete(string SessionId) : ISessionCommand;

    /// <summary>A worker's report that the session's sandbox has been idle past its timeout (or that it holds a sandbox for it at all).</summary>
    public sealed record IdleExpired(string SessionId, string Node, string Address) : ISessionCommand;
}

public static class SessionReplies
{
    public sealed record View(SessionInfo Session) : IProtocolMessage;

    /// <summary>
    /// An invocation's answer; <paramref name="Resumed"/> when this call had to resume the session first,
    /// <paramref name="Recovered"/> when that resume brought it back from a checkpoint after its worker died.
    /// </summary>
    public sealed record Invoked(SessionInfo Session, WorkerInvokeResult Result, bool Resumed, SessionRecovery? Recovered = null) : IProtocolMessage;

    /// <summary>
    /// The parent's state to fork from. <paramref name="Captured"/>: a new region was written for the fork (the parent was
    /// active; its calls waited <paramref name="BlockedMs"/>), rather than the parent's paused delta being shared.
    /// </summary>
    public sealed record ForkPoint(SessionInfo Parent, FunctionVersion Version, SessionDelta Delta, bool Captured, double BlockedMs) : IProtocolMessage;

    /// <summary>Refused: <paramref name="Kind"/> is an error kind (not_found, session_lost, unavailable, ...).</summary>
    public sealed record Refused(string SessionId, string Kind, string Message, SessionInfo? Session) : IProtocolMessage;
}

public static class SessionEvents
{
    public const string Tag = "session";

    public sealed record Created(string SessionId, string Function, FunctionVersion Version, int IdleTimeoutSeconds, DateTimeOffset At, int CheckpointEverySeconds = 0) : IEvent;

    /// <summary>An instance holds the session on <paramref name="Node"/> (started from the template, or resumed from its delta).</summary>
    public sealed record Activated(string SessionId, string Node, string Address, TemplateInfo? Base, long MemoryBytes, double StartMs, DateTimeOffset At) : IEvent;

    public sealed record Paused(string SessionId, SessionDelta Delta, string Reason, double PauseMs) : IEvent;

    /// <summary>The active session's state was stored in <paramref name="Delta"/> while it kept running ("api" or "periodic").</summary>
    public sealed record Checkpointed(string SessionId, SessionDelta Delta, string Reason, double CheckpointMs) : IEvent;

    /// <summary>A session forked from <paramref name="ParentId"/>: paused at the parent's state, in a region it shares with its siblings.</summary>
    public sealed record Forked(string SessionId, string ParentId, string Function, FunctionVersion Version, int IdleTimeoutSeconds, int CheckpointEverySeconds,
        SessionDelta Delta, DateTimeOffset At) : IEvent;

    /// <summary>The session came back from its last checkpoint on another worker after the one holding it died.</summary>
    public sealed record Recovered(string SessionId, SessionRecovery Recovery) : IEvent;

    /// <summary>The instance and everything since the last pause are gone (its worker died, or the guest trapped).</summary>
    public sealed record Lost(string SessionId, string Reason, DateTimeOffset At) : IEvent;

    public sealed record Deleted(string SessionId, DateTimeOffset At) : IEvent;
}

/// <summary>Coordinator (session entity) to worker.</summary>
public static class WorkerSessionCommands
{
    /// <summary>
    /// Binds a fresh instance of the version to the session: restored from <paramref name="Template"/> (or cold,
    /// capturing the template), then <paramref name="Delta"/> overlaid when resuming.
    /// </summary>
    public sealed record Start(string SessionId, string InvocationId, string Function, FunctionVersion Version, TemplateInfo? Template, SessionDelta? Delta,
        int IdleTimeoutSeconds) : IProtocolMessage, ITraced
    {
        public string? TraceParent { get; init; }
    }

    public sealed record Invoke(string SessionId, string InvocationId, byte[] Input) : IProtocolMessage, ITraced
    {
        public string? TraceParent { get; init; }
    }

    /// <summary>
    /// Capture the session as a delta over <paramref name="Base"/> into a pool region owned by <paramref name="Owner"/>,
    /// make it durable, then free the sandbox, or with <paramref name="KeepActive"/> (a checkpoint) leave the session running.
    /// Without <paramref name="Durable"/> (a fork) the durable copy is left to the caller.
    /// </summary>
    public sealed record Pause(string SessionId, string Owner, TemplateInfo? Base, bool KeepActive = false, bool Durable = true) : IProtocolMessage, ITraced
    {
        public string? TraceParent { get; init; }
    }

    /// <summary>Drop the session's instance without saving it (the session was deleted, or is held elsewhere).</summary>
    public sealed record Release(string SessionId) : IProtocolMessage;
}

public static class WorkerSessionReplies
{
    public sealed record Started(string SessionId, bool Ok, string Node, string Start, long StartupMicros, long MemoryBytes, TemplateInfo? Base,
        TemplateInfo? CapturedTemplate, string? ErrorKind, string? ErrorMessage) : IProtocolMessage;

    /// <summary>
    /// <paramref name="InstanceLost"/>: the worker holds no instance for the session any more (it failed and was
    /// discarded, or the worker never had it).
    /// </summary>
    public sealed record Invoked(WorkerInvokeResult Result, bool InstanceLost) : IProtocolMessage;

    public sealed record Paused(string SessionId, bool Ok, SessionDelta? Delta, long PauseMicros, string? ErrorKind, string? ErrorMessage, bool InstanceLost) : IProtocolMessage;

    public sealed record Released(string SessionId, bool Existed) : IProtocolMessage;
}

/// <summary>A message that carries its sender's span (W3C traceparent), so the receiver's spans join the same trace.</summary>
public interface ITraced
{
    string? TraceParent { get; }
}
