using TrEnv.Contracts;

namespace TrEnv.Coordinator.Sessions;

/// <summary>
/// One agent session as a pure state machine over its events. Active: an instance on <see cref="Node"/> holds
/// it. Paused: only <see cref="Delta"/> (the pages that differ from <see cref="Base"/>) and the registry hold it.
/// Lost: the instance failed or its worker died while active; what was paused before is not brought back
/// silently. Counters that change on every call (<see cref="Invocations"/>) are not persisted.
/// </summary>
public sealed record SessionState(
    string Id,
    string Status,
    string? Function,
    FunctionVersion? Version,
    int IdleTimeoutSeconds,
    string? Node,
    string? Address,
    TemplateInfo? Base,
    SessionDelta? Delta,
    DateTimeOffset CreatedAt,
    DateTimeOffset LastActiveAt,
    int Pauses,
    int Resumes,
    long MemoryBytes,
    double? LastPauseMs,
    double? LastResumeMs,
    string? Error)
{
    public const string None = "none";

    public long Invocations { get; init; }

    public int CheckpointEverySeconds { get; init; }

    public int Checkpoints { get; init; }

    public DateTimeOffset? LastCheckpointAt { get; init; }

    public double? LastCheckpointMs { get; init; }

    /// <summary>
    /// Calls answered since the state was last stored (a pause, a checkpoint) or restored; null when unknown (the
    /// entity was recovered from its journal meanwhile). Not persisted, like <see cref="Invocations"/>.
    /// </summary>
    public long? CallsSinceSaved { get; init; }

    public int Recoveries { get; init; }

    /// <summary>The session this one was forked from, if any.</summary>
    public string? ForkedFrom { get; init; }

    public SessionRecovery? LastRecovery { get; init; }

    /// <summary>Checkpointed at least once and holding a stored state: a dead worker costs only the calls since.</summary>
    public bool CanRecover => Checkpoints > 0 && Delta is not null;

    public static SessionState Empty(string id) => new(id, None, null, null, 0, null, null, null, null, default, default, 0, 0, 0, null, null, null);

    public bool Exists => Status is not (None or SessionStates.Deleted);

    /// <summary>The pool owner of the next pause's delta: one region per pause, so the last durable one is never overwritten.</summary>
    public string NextDeltaOwner => $"session-{Id}-{Pauses + Checkpoints + 1}";

    public SessionState Apply(IEvent e) => e switch
    {
        SessionEvents.Created c => this with
        {
            Status = SessionStates.Active, Function = c.Function, Version = c.Version, IdleTimeoutSeconds = c.IdleTimeoutSeconds,
            CreatedAt = c.At, LastActiveAt = c.At, CheckpointEverySeconds = c.CheckpointEverySeconds, CallsSinceSaved = 0,
        },
        SessionEvents.Activated a => this with
        {
            Status = SessionStates.Active, Node = a.Node, Address = a.Address, Base = a.Base ?? Base, MemoryBytes = a.MemoryBytes,
            LastActiveAt = a.At, Resumes = Delta is null ? Resumes : Resumes + 1, LastResumeMs = Delta is null ? LastResumeMs : a.StartMs,
            Error = null, Invocations = 0, CallsSinceSaved = 0,
        },
        SessionEvents.Paused p => this with
        {
            Status = SessionStates.Paused, Delta = p.Delta, Base = p.Delta.Base ?? Base, Pauses = Pauses + 1, LastPauseMs = p.PauseMs,
            MemoryBytes = p.Delta.MemoryBytes, CallsSinceSaved = 0,
        },
        SessionEvents.Checkpointed k => this with
        {
            Delta = k.Delta, Base = k.Delta.Base ?? Base, Checkpoints = Checkpoints + 1, LastCheckpointAt = k.Delta.PausedAt,
            LastCheckpointMs = k.CheckpointMs, CallsSinceSaved = 0,
        },
        SessionEvents.Recovered r => this with { Recoveries = Recoveries + 1, LastRecovery = r.Recovery },
        SessionEvents.Forked f => this with
        {
            Status = SessionStates.Paused, Function = f.Function, Version = f.Version, IdleTimeoutSeconds = f.IdleTimeoutSeconds,
            CheckpointEverySeconds = f.CheckpointEverySeconds, Delta = f.Delta, Base = f.Delta.Base, MemoryBytes = f.Delta.MemoryBytes,
            CreatedAt = f.At, LastActiveAt = f.At, ForkedFrom = f.ParentId, CallsSinceSaved = 0,
        },
        SessionEvents.Lost l => this with { Status = SessionStates.Lost, Error = l.Reason, LastActiveAt = l.At },
        SessionEvents.Deleted => this with { Status = SessionStates.Deleted },
        _ => this,
    };

    public SessionInfo ToInfo() => new(Id, Function ?? "", Version?.Version ?? 0, Status, Node, CreatedAt, LastActiveAt, Delta?.PausedAt, Invocations, Pauses, Resumes,
        MemoryBytes, Delta?.StoredBytes ?? 0, Delta?.DirtiedBytes ?? 0, Base is null ? 0 : Base.NonZeroPages * 4096, LastPauseMs, LastResumeMs, IdleTimeoutSeconds, Error,
        CheckpointEverySeconds, Checkpoints, LastCheckpointAt, LastCheckpointMs, Status == SessionStates.Active ? CallsSinceSaved : 0, Recoveries, LastRecovery,
        Delta?.FilesBytes ?? 0, ForkedFrom);

    /// <summary>
    /// What to send the pool when the session is done with a stored delta: a region of its own is freed; one it
    /// shares with its fork siblings (owned by its parent) is released, and goes with the last of them.
    /// </summary>
    public PoolCommands.IPoolCommand LetGo(SessionDelta delta)
        => delta.Owner.StartsWith($"session-{Id}-", StringComparison.Ordinal)
            ? new PoolCommands.Free(PoolCommands.DefaultPool, delta.Owner)
            : new PoolCommands.Release(PoolCommands.DefaultPool, delta.Owner, Id);

    /// <summary>When the stored state (the last pause or checkpoint) was captured.</summary>
    public DateTimeOffset? LastSavedAt => Delta?.PausedAt;

    /// <summary>A call answered on the live instance: counted, and the state differs from what is stored.</summary>
    public SessionState Called(DateTimeOffset at) => this with { Invocations = Invocations + 1, CallsSinceSaved = CallsSinceSaved + 1, LastActiveAt = at };

    /// <summary>Read back from the journal while active: the calls since the last store happened unseen.</summary>
    public SessionState Recovered() => Status == SessionStates.Active ? this with { CallsSinceSaved = null } : this;

    /// <summary>Why a command cannot run in this state, as (error kind, sentence); null when it can.</summary>
    public (string Kind, string Message)? Refusal(SessionCommands.ISessionCommand command) => (Status, command) switch
    {
        (_, SessionCommands.Create or SessionCommands.CreateFork) when Status != None => (ErrorKinds.Conflict, $"Session {Id} already exists."),
        (_, SessionCommands.Create or SessionCommands.CreateFork) => null,
        (None or SessionStates.Deleted, _) => (ErrorKinds.NotFound, $"There is no session {Id}."),
        (SessionStates.Lost, SessionCommands.Resume { FromLastPause: true }) when Delta is not null => null,
        // Checkpointed: the next call or resume brings it back from its last stored state by itself.
        (SessionStates.Lost, SessionCommands.Invoke or SessionCommands.Resume) when CanRecover => null,
        (SessionStates.Lost, SessionCommands.Pause or SessionCommands.Checkpoint or SessionCommands.Fork) when CanRecover =>
            (ErrorKinds.SessionLost, $"Session {Id} was lost: {Error} Its next call (or POST /v1/sessions/{Id}/resume) brings it back from its checkpoint of {LastSavedAt:O}; there is nothing to store until then."),
        (SessionStates.Lost, SessionCommands.Invoke or SessionCommands.Pause or SessionCommands.Resume or SessionCommands.Checkpoint or SessionCommands.Fork) =>
            (ErrorKinds.SessionLost, Delta is null
                ? $"Session {Id} was lost: {Error} It was never paused, so there is nothing to go back to; delete it and start a new one."
                : $"Session {Id} was lost: {Error} Resume it from its last pause (POST /v1/sessions/{Id}/resume?fromLastPause=true; what it did since is gone) or delete it."),
        _ => null,
    };
}
