namespace TrEnv.Contracts;

/// <summary>What a coordinator sends a worker to run one invocation; everything the worker needs rides along, so no lookup sits on the path.</summary>
public sealed record WorkerInvoke(
    string InvocationId,
    string Function,
    FunctionVersion Version,
    TemplateInfo? Template,
    byte[] Input) : IProtocolMessage;

/// <summary>A worker's answer. On failure <see cref="ErrorKind"/> is an <see cref="ErrorKinds"/> value and Output is empty.</summary>
public sealed record WorkerInvokeResult(
    string InvocationId,
    bool Ok,
    byte[] Output,
    string Start,
    string Sandbox,
    string Node,
    long StartupMicros,
    long ExecMicros,
    string? ErrorKind,
    string? ErrorMessage,
    TemplateInfo? CapturedTemplate) : IProtocolMessage;

/// <summary>A sandbox as a worker reports it: idle (generic), warm (idle with a function loaded) or busy.</summary>
public sealed record SandboxStatus(int Pid, string State, string? Function, int? Version, long PssBytes);

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
    DateTimeOffset At) : IProtocolMessage;

/// <summary>Reclaims a worker's idle warm instances (of one function, or all when null) back to generic sandboxes: scale to zero now.</summary>
public sealed record WorkerReclaim(string? Function) : IProtocolMessage;

public sealed record WorkerReclaimed(string Node, int Count) : IProtocolMessage;
