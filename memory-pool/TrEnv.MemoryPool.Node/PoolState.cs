using TrEnv.Contracts;

namespace TrEnv.MemoryPool.Node;

/// <summary>
/// The pool's allocations by owner (a template key, or a session's delta). Decisions are made by
/// <see cref="Process"/> without mutating; <see cref="Apply"/> replays events, so the allocator rebuilt from the
/// journal is the one that answered, and a region is never handed out twice. Session deltas together may hold
/// at most <paramref name="sessionQuota"/> bytes, so paused sessions never crowd out templates, and one template
/// at most <paramref name="templateQuota"/> bytes, so one function's template never crowds out every other's.
/// A region forked sessions share has holders besides its owner and is freed when the owner and every holder
/// have let it go.
/// </summary>
public sealed class PoolState(long capacity, long sessionQuota = long.MaxValue, long templateQuota = long.MaxValue)
{
    /// <summary>Owners of session deltas start with this (<c>session-ID-N</c>).</summary>
    public const string SessionOwnerPrefix = "session-";

    private readonly RegionAllocator _allocator = new(capacity);
    private readonly Dictionary<string, Region> _owners = new(StringComparer.Ordinal);
    // Regions shared by forked sessions: who holds each, and which owners have already let theirs go.
    private readonly Dictionary<string, HashSet<string>> _holders = new(StringComparer.Ordinal);
    private readonly HashSet<string> _ownerReleased = new(StringComparer.Ordinal);

    public RegionAllocator Allocator => _allocator;

    /// <summary>Who holds the owner's region besides the owner (empty when nobody does).</summary>
    public IReadOnlyCollection<string> HoldersOf(string owner) => _holders.TryGetValue(owner, out var h) ? h : [];

    /// <summary>Whether the owner has freed a region that holders keep alive.</summary>
    public bool OwnerHasReleased(string owner) => _ownerReleased.Contains(owner);
    public IReadOnlyDictionary<string, Region> Owners => _owners;

    /// <summary>What session deltas hold now.</summary>
    public long SessionBytes { get; private set; }

    public long SessionQuota { get; } = sessionQuota;

    public long TemplateQuota { get; } = templateQuota;

    private static bool IsSession(string owner) => owner.StartsWith(SessionOwnerPrefix, StringComparison.Ordinal);

    public (IProtocolMessage Reply, IEvent? Event) Process(PoolCommands.IPoolCommand command)
    {
        switch (command)
        {
            case PoolCommands.Allocate a:
                if (_owners.TryGetValue(a.Owner, out var existing))
                    return (new PoolReplies.Allocated(a.Owner, ToWire(existing)), null);
                if (a.Bytes <= 0)
                    return (new PoolReplies.Full(a.Owner, "A region must be at least one byte long."), null);
                if (IsSession(a.Owner) && SessionBytes + RegionAllocator.RoundUp(a.Bytes) > SessionQuota)
                    return (new PoolReplies.Full(a.Owner,
                        $"Paused sessions hold {SessionBytes >> 20} MiB of the {SessionQuota >> 20} MiB of the pool they may use (TRENV_SESSION_POOL_PERCENT), "
                        + $"and this one needs {RegionAllocator.RoundUp(a.Bytes) >> 20} MiB more; delete paused sessions, or set an expiry (TRENV_SESSION_PAUSED_TTL_S).", Quota: true), null);
                if (!IsSession(a.Owner) && RegionAllocator.RoundUp(a.Bytes) > TemplateQuota)
                    return (new PoolReplies.Full(a.Owner,
                        $"A template of {RegionAllocator.RoundUp(a.Bytes) >> 20} MiB is over the {TemplateQuota >> 20} MiB one template may hold (TRENV_TEMPLATE_POOL_PERCENT of the pool); "
                        + "the function runs without one, every start cold.", Quota: true), null);
                return _allocator.FindFit(a.Bytes) is { } fit
                    ? (new PoolReplies.Allocated(a.Owner, ToWire(fit)), new PoolEvents.Allocated(a.Owner, ToWire(fit)))
                    : (new PoolReplies.Full(a.Owner, new PoolFullException(RegionAllocator.RoundUp(a.Bytes), _allocator.FreeBytes, _allocator.LargestFreeBlock).Message), null);
            case PoolCommands.Free f:
                if (!_owners.TryGetValue(f.Owner, out var region))
                    return (new PoolReplies.Freed(f.Owner, false), null);
                if (HoldersOf(f.Owner).Count > 0)
                    return (new PoolReplies.Freed(f.Owner, true), _ownerReleased.Contains(f.Owner) ? null : new PoolEvents.OwnerReleased(f.Owner));
                return (new PoolReplies.Freed(f.Owner, true), new PoolEvents.Freed(f.Owner, ToWire(region)));
            case PoolCommands.Hold h:
                if (!_owners.ContainsKey(h.Owner) || (_ownerReleased.Contains(h.Owner) && HoldersOf(h.Owner).Count == 0))
                    return (new PoolReplies.Held(h.Owner, false), null);
                var added = h.Holders.Where(x => !HoldersOf(h.Owner).Contains(x)).Distinct(StringComparer.Ordinal).ToList();
                return (new PoolReplies.Held(h.Owner, true), added.Count == 0 ? null : new PoolEvents.Held(h.Owner, added));
            case PoolCommands.Release r:
                if (!_owners.TryGetValue(r.Owner, out var held) || !HoldersOf(r.Owner).Contains(r.Holder))
                    return (new PoolReplies.Freed(r.Owner, false), null);
                // The last holder of a region its owner already freed frees it.
                return HoldersOf(r.Owner).Count == 1 && _ownerReleased.Contains(r.Owner)
                    ? (new PoolReplies.Freed(r.Owner, true), new PoolEvents.Freed(r.Owner, ToWire(held)))
                    : (new PoolReplies.Freed(r.Owner, false), new PoolEvents.Released(r.Owner, r.Holder));
            case PoolCommands.Stats s:
                return (new PoolReplies.Usage(s.Pool, _allocator.Capacity, _allocator.AllocatedBytes, _allocator.AllocationCount, _allocator.LargestFreeBlock), null);
            default:
                throw new ArgumentException($"Unknown pool command {command.GetType().Name}.");
        }
    }

    public void Apply(IEvent e)
    {
        switch (e)
        {
            case PoolEvents.Allocated a:
                _allocator.Reserve(FromWire(a.Region));
                _owners[a.Owner] = FromWire(a.Region);
                if (IsSession(a.Owner))
                    SessionBytes += a.Region.Length;
                break;
            case PoolEvents.Freed f:
                _allocator.Free(FromWire(f.Region));
                if (_owners.Remove(f.Owner) && IsSession(f.Owner))
                    SessionBytes -= f.Region.Length;
                _holders.Remove(f.Owner);
                _ownerReleased.Remove(f.Owner);
                break;
            case PoolEvents.Held h:
                if (!_holders.TryGetValue(h.Owner, out var holders))
                    _holders[h.Owner] = holders = new HashSet<string>(StringComparer.Ordinal);
                holders.UnionWith(h.Holders);
                break;
            case PoolEvents.Released r:
                if (_holders.TryGetValue(r.Owner, out var left) && left.Remove(r.Holder) && left.Count == 0)
                    _holders.Remove(r.Owner);
                break;
            case PoolEvents.OwnerReleased o:
                _ownerReleased.Add(o.Owner);
                break;
        }
    }

    public static PoolRegion ToWire(Region r) => new(r.Offset, r.Length);
    public static Region FromWire(PoolRegion r) => new(r.Offset, r.Length);
}
