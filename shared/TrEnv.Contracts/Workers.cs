namespace TrEnv.Contracts;

/// <summary>
/// What a coordinator sends a worker to run one invocation; everything the worker needs rides along, so no lookup sits on
/// the path. <paramref name="TraceParent"/> is the W3C trace context of the coordinator's span around the call.
/// </summary>
public sealed record WorkerInvoke(
    string InvocationId,
    string Function,
    FunctionVersion Version,
    TemplateInfo? Template,
    byte[] Input,
    string? TraceParent = null) : IProtocolMessage;

/// <summary>A worker's answer. On failure <see cref="ErrorKind"/> is an <see cref="ErrorKinds"/> value and Output is empty.</summary>
public sealed record WorkerInvokeResult(
    string InvocationId,
    bool Ok,
    byte[] Output,
    StartKind Start,
    SandboxOrigin Sandbox,
    string Node,
    long StartupMicros,
    long ExecMicros,
    string? ErrorKind,
    string? ErrorMessage,
    TemplateInfo? CapturedTemplate,
    int BusyAfter = -1, // the worker's busy sandboxes once this one was released; -1 unknown
    long Sequence = 0) : IProtocolMessage; // the worker's state sequence at BusyAfter, ordered with WorkerStatus.Sequence

/// <summary>
/// A sandbox as a worker reports it: idle (generic), warm (idle with a function loaded) or busy, and the
/// memory charged to it (its cgroup's charge, or its PSS without cgroups). <paramref name="Template"/> is the
/// template key its instance maps from the pool, when it was restored rather than initialised.
/// </summary>
public sealed record SandboxStatus(int Pid, string State, string? Function, int? Version, long MemoryBytes, string? Template = null);

/// <summary>Published by every worker to the coordinators; their placement reads it locally.</summary>
public sealed record WorkerStatus(
    string Node,
    string Address,
    int MaxSandboxes,
    int Busy,
    int IdleGeneric,
    IReadOnlyDictionary<string, int> WarmIdle,
    IReadOnlyList<SandboxStatus> Sandboxes,
    string Isolation,
    DateTimeOffset At,
    long MemoryBytes = 0,
    int MemoryBoundMb = 0,
    long Evicted = 0,
    long Sequence = 0, // orders snapshots and results of one worker: an older snapshot never overrides a newer result
    long PoolMappedBytes = 0, // pool bytes its instances map (each template region once per instance)
    IReadOnlyList<string>? IsolationMissing = null, // each isolation layer its sandboxes lack, and why
    string? InvokeEndpoint = null) : IProtocolMessage; // host:port of the worker's invoke channel; null: remoting only

/// <summary>
/// Reclaims a worker's idle warm instances (of one function, or all when null) back to generic sandboxes: scale to zero now.
/// With <paramref name="Destroy"/> the sandboxes themselves are shut down and their memory returned instead.</summary>
public sealed record WorkerReclaim(string? Function, bool Destroy = false) : IProtocolMessage;

public sealed record WorkerReclaimed(string Node, int Count) : IProtocolMessage;

/// <summary>
/// A function's versions below <paramref name="BelowVersion"/> are gone (deleted, or replaced by a redeploy): the
/// worker reclaims their warm instances now and those busy as they finish, drops their template headers, and
/// deletes the modules and layers no live function uses any more (named by hash; fetched again if one is needed).
/// </summary>
public sealed record WorkerForget(string Function, int BelowVersion, IReadOnlyList<string> Modules, IReadOnlyList<string> Layers) : IProtocolMessage;

public sealed record WorkerForgot(string Node, int Reclaimed) : IProtocolMessage;

/// <summary>
/// A version was just deployed: the worker fetches its module and layer and compiles a script runtime's module in
/// the background, so the first call does not pay for them (a runtime's compile takes seconds). No reply.
/// </summary>
public sealed record WorkerPrepare(string Function, FunctionVersion Version) : IProtocolMessage;

/// <summary>Asks a worker for a function's recent log lines (its guests' stdout and stderr), newest last.</summary>
public sealed record WorkerLogsQuery(string Function, int MaxLines) : IProtocolMessage;

/// <summary>One line a guest wrote to stdout or stderr, as its worker kept it.</summary>
public sealed record LogLine(DateTimeOffset At, string Node, int Version, string Stream, string Text);

public sealed record WorkerLogs(string Node, IReadOnlyList<LogLine> Lines) : IProtocolMessage;
