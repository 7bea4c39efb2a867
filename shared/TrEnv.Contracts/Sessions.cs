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
/// applies over, kept with the delta so a resume never depends on what the catalog holds by then.
/// </summary>
public sealed record SessionDelta(
    string Owner,
    PoolRegion Region,
    byte[] Header,
    TemplateInfo? Base,
    long StoredBytes,
    long MemoryBytes,
    DateTimeOffset PausedAt,
    long DirtiedBytes = 0); // what the guest wrote since its template was mapped: the delta's upper bound

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
    string? Error);

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

    public sealed record Create(string SessionId, string Function, int IdleTimeoutSeconds, string InvocationId) : ISessionCommand;

    public sealed record Invoke(string SessionId, string InvocationId, byte[] Input) : ISessionCommand;

    /// <summary>Pause now; <paramref name="Reason"/> is "api" or "idle".</summary>
    public sealed record Pause(string SessionId, string Reason) : ISessionCommand;

    /// <summary>
    /// Resume now, on <paramref name="Node"/> when given (a worker's name), else wherever placement says. With
    /// <paramref name="FromLastPause"/> a lost session goes back to its last pause: what it did since is gone.
    /// </summary>
    public sealed record Resume(string SessionId, string InvocationId, string? Node, bool FromLastPause = false) : ISessionCommand;

    public sealed record Get(string SessionId) : ISessionCommand;

    public sealed record Delete(string SessionId) : ISessionCommand;

    /// <summary>A worker's report that the session's sandbox has been idle past its timeout (or that it holds a sandbox for it at all).</summary>
    public sealed record IdleExpired(string SessionId, string Node, string Address) : ISessionCommand;
}

public static class SessionReplies
{
    public sealed record View(SessionInfo Session) : IProtocolMessage;

    /// <summary>An invocation's answer; <paramref name="Resumed"/> when this call had to resume the session first.</summary>
    public sealed record Invoked(SessionInfo Session, WorkerInvokeResult Result, bool Resumed) : IProtocolMessage;

    /// <summary>Refused: <paramref name="Kind"/> is an error kind (not_found, session_lost, unavailable, ...).</summary>
    public sealed record Refused(string SessionId, string Kind, string Message, SessionInfo? Session) : IProtocolMessage;
}

public static class SessionEvents
{
    public const string Tag = "session";

    public sealed record Created(string SessionId, string Function, FunctionVersion Version, int IdleTimeoutSeconds, DateTimeOffset At) : IEvent;

    /// <summary>An instance holds the session on <paramref name="Node"/> (started from the template, or resumed from its delta).</summary>
    public sealed record Activated(string SessionId, string Node, string Address, TemplateInfo? Base, long MemoryBytes, double StartMs, DateTimeOffset At) : IEvent;

    public sealed record Paused(string SessionId, SessionDelta Delta, string Reason, double PauseMs) : IEvent;

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
        int IdleTimeoutSeconds) : IProtocolMessage;

    public sealed record Invoke(string SessionId, string InvocationId, byte[] Input) : IProtocolMessage;

    /// <summary>Capture the session as a delta over <paramref name="Base"/> into a pool region owned by <paramref name="Owner"/>, make it durable, free the sandbox.</summary>
    public sealed record Pause(string SessionId, string Owner, TemplateInfo? Base) : IProtocolMessage;

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
