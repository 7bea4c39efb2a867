using TrEnv.Contracts;

namespace TrEnv.Worker.Placement;

/// <summary>Where a slot is in the pool.</summary>
public enum SlotState
{
    /// <summary>Generic: no instance, ready for any function.</summary>
    Idle,

    /// <summary>Idle with an instance of <see cref="SandboxSlot{TSandbox}.Instance"/>'s version loaded: a REUSE candidate.</summary>
    Warm,

    /// <summary>Taken by one invocation (or being loaded, reset or evicted).</summary>
    Busy,

    /// <summary>Bound to an agent session: never reused, repurposed or evicted until the session lets go.</summary>
    Session,
}

/// <summary>Whether a sandbox needs a reset before its next load.</summary>
public enum SlotHistory
{
    /// <summary>Never loaded: a NEW sandbox.</summary>
    Fresh,

    /// <summary>Loaded before and reset since: a repurposed sandbox that needs no second reset.</summary>
    Reset,

    /// <summary>Holds, or held, an instance since its last reset.</summary>
    Used,
}

/// <summary>Why an acquire found no sandbox.</summary>
public enum NoRoom
{
    Sandboxes,
    Memory,
}

/// <summary>The instance a load put into a slot.</summary>
/// <param name="MappedTemplate">The template key whose pool region the instance maps, when restored rather than initialised.</param>
public sealed record LoadedInstance(FunctionVersionKey Key, long MemoryBytes, string? MappedTemplate, long MappedBytes);

/// <summary>One sandbox in the pool. Its state fields change only under the pool's lock.</summary>
public sealed class SandboxSlot<TSandbox>(TSandbox sandbox, DateTimeOffset created)
    where TSandbox : class, IPooledSandbox
{
    public TSandbox Sandbox { get; } = sandbox;

    public SlotState State { get; internal set; } = SlotState.Busy;

    public SlotHistory History { get; internal set; } = SlotHistory.Fresh;

    /// <summary>What the sandbox holds now; null while generic or while a load is under way.</summary>
    public LoadedInstance? Instance { get; internal set; }

    /// <summary>The version of the invocation in progress, shown while busy.</summary>
    public FunctionVersionKey? Serving { get; internal set; }

    public string? Session { get; internal set; }

    public DateTimeOffset LastUsed { get; internal set; } = created;

    internal LinkedListNode<SandboxSlot<TSandbox>>? WarmNode { get; set; }

    public bool IsIdle => State is SlotState.Idle or SlotState.Warm;
}

/// <summary>An acquire's answer: a busy slot and how it was found, or why there is none.</summary>
public readonly record struct Acquisition<TSandbox>(SandboxSlot<TSandbox>? Slot, SandboxOrigin Origin, NoRoom? Refused = null)
    where TSandbox : class, IPooledSandbox;
