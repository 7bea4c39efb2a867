using TrEnv.Contracts;

namespace TrEnv.Worker.Placement;

/// <summary>One consistent read of the pool for status reports; reading never changes it.</summary>
public sealed record PoolView<TSandbox>(
    IReadOnlyList<SlotView<TSandbox>> Slots,
    IReadOnlyDictionary<string, int> WarmIdle,
    int Busy,
    int IdleGeneric,
    long Sequence)
    where TSandbox : class, IPooledSandbox;

/// <summary>A slot as reported: <paramref name="Function"/> is what it serves while busy, else what it holds.</summary>
public sealed record SlotView<TSandbox>(SandboxSlot<TSandbox> Slot, string State, FunctionVersionKey? Function, string? MappedTemplate, long MappedBytes)
    where TSandbox : class, IPooledSandbox;

public sealed partial class SandboxPool<TSandbox>
{
    /// <summary>Every slot now, for reads outside the lock (charged memory).</summary>
    public List<SandboxSlot<TSandbox>> All()
    {
        lock (_gate)
            return [.. _all];
    }

    /// <summary>Busy sandboxes (calls, sessions and starts under way).</summary>
    public int Busy
    {
        get
        {
            lock (_gate)
                return BusyLocked();
        }
    }

    /// <summary>
    /// Marks a change a coordinator must not miss (an invocation's result): the busy count now and a sequence
    /// that orders it with status snapshots.
    /// </summary>
    public (int Busy, long Sequence) Advance()
    {
        lock (_gate)
            return (BusyLocked(), ++_sequence);
    }

    public PoolView<TSandbox> View()
    {
        lock (_gate)
        {
            var slots = _all.Select(s => new SlotView<TSandbox>(s, StateName(s), s.State is SlotState.Busy or SlotState.Session ? s.Serving : s.Instance?.Key,
                s.Instance?.MappedTemplate, s.Instance?.MappedBytes ?? 0)).ToList();
            var warm = _warm.Where(kv => kv.Value.Count > 0).ToDictionary(kv => kv.Key.ToString(), kv => kv.Value.Count, StringComparer.Ordinal);
            return new PoolView<TSandbox>(slots, warm, _all.Count(s => s.State is SlotState.Busy or SlotState.Session), _generic.Count + _genericNetwork.Count, _sequence);
        }
    }

    /// <summary>How many instances map each template's region.</summary>
    public Dictionary<string, int> Mappings()
    {
        lock (_gate)
        {
            return _all.Where(s => s.Instance?.MappedTemplate is not null).GroupBy(s => s.Instance!.MappedTemplate!)
                .ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        }
    }

    /// <summary>Generic sandboxes without the network (what pre-starting keeps up).</summary>
    public int IdleGenericCount
    {
        get
        {
            lock (_gate)
                return _generic.Count;
        }
    }

    private int BusyLocked() => _all.Count(s => s.State is SlotState.Busy or SlotState.Session) + _starting;

    private static string StateName(SandboxSlot<TSandbox> slot) => slot.State switch
    {
        SlotState.Session => "session",
        SlotState.Busy => "busy",
        SlotState.Warm => "warm",
        _ => "idle",
    };
}
