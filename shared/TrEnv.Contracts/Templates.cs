namespace TrEnv.Contracts;

/// <summary>Messages routed to a template entity by its key.</summary>
public interface IWithTemplateKey
{
    string Key { get; }
}

/// <summary>A page-aligned region of the shared memory pool.</summary>
public sealed record PoolRegion(long Offset, long Length);

/// <summary>
/// A sealed template as workers need it: the header bytes (see TemplateHeader) and where its pages sit.
/// Immutable once sealed.
/// </summary>
public sealed record TemplateInfo(string Key, string Function, int Version, string Sha256, PoolRegion Region, long NonZeroPages, long MemoryBytes, string CapturedBy, DateTimeOffset SealedAt, byte[] Header);

/// <summary>
/// The template registry: one entity per function version (key "name@version"). It grants one capture
/// lease at a time, allocates the pool region, records the sealed header, and frees the region once the
/// template is retired and nothing maps it.
/// </summary>
public static class TemplateCommands
{
    public interface ITemplateCommand : IWithTemplateKey, IProtocolMessage;

    public static string KeyOf(string function, int version) => new FunctionVersionKey(function, version).ToString();

    /// <summary>Asks to capture; granted with a fresh region unless another capture holds the lease or one is sealed.</summary>
    public sealed record BeginCapture(string Key, string Function, int Version, string Sha256, long Bytes, string Worker) : ITemplateCommand;

    public sealed record Seal(string Key, string Worker, long NonZeroPages, long MemoryBytes, byte[] Header) : ITemplateCommand;

    /// <summary>The capture failed; the lease and its region are released.</summary>
    public sealed record AbortCapture(string Key, string Worker, string Reason) : ITemplateCommand;

    /// <summary>The function version was deleted or replaced; free the region when nothing maps it.</summary>
    public sealed record Retire(string Key) : ITemplateCommand;

    /// <summary>A worker's count of live instances mapping this template (sent when it changes).</summary>
    public sealed record Mappings(string Key, string Worker, int Count) : ITemplateCommand;

    public sealed record Get(string Key) : ITemplateCommand;

    /// <summary>A session depends on this template (its delta applies over it): never free the region while held.</summary>
    public sealed record Hold(string Key, string Holder) : ITemplateCommand;

    public sealed record Unhold(string Key, string Holder) : ITemplateCommand;

    /// <summary>Several sessions (the children of one fork) hold the template at once: one event for all of them.</summary>
    public sealed record HoldAll(string Key, IReadOnlyList<string> Holders) : ITemplateCommand;
}

public static class TemplateReplies
{
    public sealed record CaptureGranted(string Key, PoolRegion Region) : IProtocolMessage;

    /// <summary>No capture now: one is in progress elsewhere, or the template is already sealed (then <see cref="Sealed"/> is set).</summary>
    public sealed record CaptureRefused(string Key, string Reason, TemplateInfo? Sealed) : IProtocolMessage;

    public sealed record Sealed(TemplateInfo Template) : IProtocolMessage;

    /// <summary>The template's state: "none", "capturing", "sealed", "retired" or "freed".</summary>
    public sealed record State(string Key, string Status, TemplateInfo? Template, int LiveMappings, IReadOnlyDictionary<string, int> MappingsByWorker) : IProtocolMessage;

    public sealed record Ack(string Key) : IProtocolMessage;
}

public static class TemplateEvents
{
    public const string Tag = "template";

    public sealed record CaptureStarted(string Key, string Function, int Version, string Sha256, string Worker, PoolRegion Region, DateTimeOffset At) : IEvent;

    public sealed record CaptureAborted(string Key, string Worker, string Reason) : IEvent;

    public sealed record Sealed(TemplateInfo Template) : IEvent;

    public sealed record Retired(string Key, DateTimeOffset At) : IEvent;

    public sealed record Freed(string Key, PoolRegion Region) : IEvent;

    public sealed record Held(string Key, string Holder) : IEvent;

    public sealed record Unheld(string Key, string Holder) : IEvent;

    public sealed record HeldAll(string Key, IReadOnlyList<string> Holders) : IEvent;
}

/// <summary>The pool allocator: a single persistent entity per pool owning every region's allocation.</summary>
public static class PoolCommands
{
    public const string DefaultPool = "default";

    public interface IPoolCommand : IProtocolMessage
    {
        string Pool { get; }
    }

    /// <summary>Allocates for <paramref name="Owner"/>; a retry by the same owner returns the same region.</summary>
    public sealed record Allocate(string Pool, string Owner, long Bytes) : IPoolCommand;

    /// <summary>The owner gives its region up: freed now, or once the last of its holders (<see cref="Hold"/>) releases it.</summary>
    public sealed record Free(string Pool, string Owner) : IPoolCommand;

    /// <summary>
    /// <paramref name="Holders"/> (forked sessions) share the owner's region: it outlives its owner's <see cref="Free"/>
    /// until each holder has released it. Answered with <see cref="PoolReplies.Held"/>.
    /// </summary>
    public sealed record Hold(string Pool, string Owner, IReadOnlyList<string> Holders) : IPoolCommand;

    /// <summary>One holder is done with the owner's region (no reply needed; answered with <see cref="PoolReplies.Freed"/>).</summary>
    public sealed record Release(string Pool, string Owner, string Holder) : IPoolCommand;

    public sealed record Stats(string Pool) : IPoolCommand;

    /// <summary>The owner's region now holds a sealed template: keep a durable copy of it (no reply).</summary>
    public sealed record Sealed(string Pool, string Owner) : IPoolCommand;

    /// <summary>The owner's region, if it has one; answered with <see cref="PoolReplies.Found"/>.</summary>
    public sealed record Find(string Pool, string Owner) : IPoolCommand;

    /// <summary>Copy the owner's region to durable storage now and answer <see cref="PoolReplies.Durable"/> once it is on disk (a paused session).</summary>
    public sealed record SaveDurable(string Pool, string Owner) : IPoolCommand;
}

public static class PoolReplies
{
    public sealed record Allocated(string Owner, PoolRegion Region) : IProtocolMessage;

    /// <param name="Quota">True when the pool has room but the owner's kind (session deltas) is at its share.</param>
    public sealed record Full(string Owner, string Message, bool Quota = false) : IProtocolMessage;

    public sealed record Freed(string Owner, bool Existed) : IProtocolMessage;

    /// <summary><paramref name="Ok"/> is false when the owner has no region (already freed).</summary>
    public sealed record Held(string Owner, bool Ok) : IProtocolMessage;

    public sealed record Usage(string Pool, long Capacity, long AllocatedBytes, int Regions, long LargestFree) : IProtocolMessage;

    /// <summary>The owner's region, or null; <paramref name="Readable"/> is false while it is being rebuilt from its durable copy.</summary>
    public sealed record Found(string Owner, PoolRegion? Region, bool Readable) : IProtocolMessage;

    public sealed record Durable(string Owner, bool Ok, string? Error) : IProtocolMessage;
}

public static class PoolEvents
{
    public sealed record Allocated(string Owner, PoolRegion Region) : IEvent;

    public sealed record Freed(string Owner, PoolRegion Region) : IEvent;

    public sealed record Held(string Owner, IReadOnlyList<string> Holders) : IEvent;

    public sealed record Released(string Owner, string Holder) : IEvent;

    /// <summary>The owner freed a region others still hold: it goes with the last holder's release.</summary>
    public sealed record OwnerReleased(string Owner) : IEvent;
}
