using TrEnv.Contracts;

namespace TrEnv.Worker.Placement;

/// <summary>
/// A worker's sandboxes and the placement policy of the paper, with no I/O of its own: REUSE a warm idle
/// instance of the same version, else take a generic sandbox, else start a NEW one below the sandbox and
/// memory bounds, else SWITCH the least recently used warm idle instance. Sessions hold their sandbox until
/// they let go. Versions forgotten (deleted or replaced) never go back to warm.
/// </summary>
public sealed partial class SandboxPool<TSandbox>(ISandboxFactory<TSandbox> factory, int maxSandboxes, TimeProvider? clock = null)
    where TSandbox : class, IPooledSandbox
{
    private readonly Lock _gate = new();
    private readonly TimeProvider _clock = clock ?? TimeProvider.System;
    private readonly List<SandboxSlot<TSandbox>> _all = [];
    private readonly Stack<SandboxSlot<TSandbox>> _generic = new();
    private readonly Stack<SandboxSlot<TSandbox>> _genericNetwork = new(); // sandboxes that keep the node's network
    private readonly Dictionary<FunctionVersionKey, LinkedList<SandboxSlot<TSandbox>>> _warm = [];
    private readonly Dictionary<string, int> _forgotten = new(StringComparer.Ordinal); // function -> lowest live version
    private int _starting;
    private long _sequence;

    public int MaxSandboxes => maxSandboxes;

    /// <param name="reuse">False for a session, which must start from the template's state, never from a used instance.</param>
    /// <param name="atMemoryBound">
    /// Whether the sandboxes' charged memory is at the worker's bound (switch rather than grow). It reads every
    /// sandbox's charge, so it is asked only when no warm instance of the version is there to reuse.
    /// </param>
    public async Task<Acquisition<TSandbox>> AcquireAsync(FunctionVersionKey key, bool network, bool reuse = true, Func<bool>? atMemoryBound = null)
    {
        if (reuse)
        {
            lock (_gate)
            {
                if (ReuseLocked(key) is { } warm)
                    return warm;
            }
        }
        var atBound = atMemoryBound?.Invoke() ?? false;
        lock (_gate)
        {
            // An instance may have gone warm while the bound was read.
            if (reuse && ReuseLocked(key) is { } warm)
                return warm;
            if (GenericFor(network).TryPop(out var generic))
            {
                generic.State = SlotState.Busy;
                return Taken(generic, key, generic.History == SlotHistory.Fresh ? SandboxOrigin.New : SandboxOrigin.Repurposed);
            }
            if (atBound || _all.Count + _starting >= maxSandboxes)
            {
                return OldestWarmIdleLocked(network) is { } victim
                    ? Taken(TakeLocked(victim), key, SandboxOrigin.Repurposed)
                    : new(null, SandboxOrigin.New, atBound ? NoRoom.Memory : NoRoom.Sandboxes);
            }
            _starting++;
        }
        try
        {
            var slot = new SandboxSlot<TSandbox>(await factory.StartAsync(network), _clock.GetUtcNow()) { Serving = key };
            lock (_gate)
                _all.Add(slot);
            return new(slot, SandboxOrigin.New);
        }
        finally
        {
            lock (_gate)
                _starting--;
        }
    }

    private Acquisition<TSandbox>? ReuseLocked(FunctionVersionKey key)
        => _warm.TryGetValue(key, out var list) && list.Last is { } node ? Taken(TakeLocked(node.Value), key, SandboxOrigin.Reused) : null;

    /// <summary>Binds a busy slot to a session until <see cref="ResetToGenericAsync"/> or <see cref="Discard"/>.</summary>
    public void BindSession(SandboxSlot<TSandbox> slot, string sessionId)
    {
        lock (_gate)
        {
            slot.Session = sessionId;
            slot.State = SlotState.Session;
        }
    }

    /// <summary>A load begins: the slot holds no instance until <see cref="CompleteLoad"/>. True when it must be reset first.</summary>
    public bool BeginLoad(SandboxSlot<TSandbox> slot)
    {
        lock (_gate)
        {
            var needsReset = slot.History == SlotHistory.Used;
            slot.History = SlotHistory.Used;
            slot.Instance = null;
            return needsReset;
        }
    }

    public void CompleteLoad(SandboxSlot<TSandbox> slot, LoadedInstance instance)
    {
        lock (_gate)
            slot.Instance = instance;
    }

    /// <summary>
    /// After a call: the instance stays warm under its version. False when that version was forgotten while the
    /// call ran; the slot stays busy and the caller resets it to generic.
    /// </summary>
    public bool Release(SandboxSlot<TSandbox> slot)
    {
        lock (_gate)
        {
            if (slot.Instance is not { } instance || IsForgottenLocked(instance.Key))
                return false;
            slot.State = SlotState.Warm;
            slot.Serving = null;
            slot.LastUsed = _clock.GetUtcNow();
            if (!_warm.TryGetValue(instance.Key, out var list))
                _warm[instance.Key] = list = new LinkedList<SandboxSlot<TSandbox>>();
            slot.WarmNode = list.AddLast(slot);
            return true;
        }
    }

    /// <summary>
    /// After a failure: a live process whose instance is gone goes back to the generic stack (reset at its next
    /// load); any other is destroyed. Never reused dirty.
    /// </summary>
    public void Discard(SandboxSlot<TSandbox> slot, bool instanceGone)
    {
        lock (_gate)
        {
            slot.Instance = null;
            slot.Session = null;
            slot.Serving = null;
            if (slot.Sandbox.IsAlive && instanceGone)
            {
                slot.State = SlotState.Idle;
                GenericFor(slot.Sandbox.Network).Push(slot);
                return;
            }
            RemoveLocked(slot);
        }
        _ = factory.DestroyAsync(slot.Sandbox);
    }

    /// <summary>Resets taken slots into generic sandboxes; one whose reset fails is discarded.</summary>
    public async Task ResetToGenericAsync(IEnumerable<SandboxSlot<TSandbox>> slots, CancellationToken ct)
    {
        foreach (var slot in slots)
        {
            var outcome = await factory.ResetAsync(slot.Sandbox, ct);
            if (outcome != ResetOutcome.Done)
            {
                Discard(slot, instanceGone: outcome == ResetOutcome.InstanceLost);
                continue;
            }
            lock (_gate)
            {
                slot.State = SlotState.Idle;
                slot.History = SlotHistory.Reset;
                slot.Instance = null;
                slot.Session = null;
                slot.Serving = null;
                GenericFor(slot.Sandbox.Network).Push(slot);
            }
        }
    }

    /// <summary>Removes taken or idle slots from the pool and destroys their sandboxes.</summary>
    public Task DestroyAsync(IEnumerable<SandboxSlot<TSandbox>> slots)
    {
        var doomed = slots.ToList();
        lock (_gate)
        {
            foreach (var slot in doomed)
                RemoveLocked(slot);
        }
        return Task.WhenAll(doomed.Select(s => factory.DestroyAsync(s.Sandbox)));
    }

    private static Acquisition<TSandbox> Taken(SandboxSlot<TSandbox> slot, FunctionVersionKey key, SandboxOrigin origin)
    {
        slot.Serving = key;
        return new(slot, origin);
    }

    private Stack<SandboxSlot<TSandbox>> GenericFor(bool network) => network ? _genericNetwork : _generic;

    private SandboxSlot<TSandbox>? OldestWarmIdleLocked(bool network)
    {
        SandboxSlot<TSandbox>? oldest = null;
        foreach (var list in _warm.Values)
        {
            foreach (var s in list)
            {
                if (s.Sandbox.Network == network && (oldest is null || s.LastUsed < oldest.LastUsed))
                    oldest = s;
            }
        }
        return oldest;
    }

    // Out of the warm lists and the generic stacks, marked busy: nobody else can take it.
    private SandboxSlot<TSandbox> TakeLocked(SandboxSlot<TSandbox> slot)
    {
        if (slot.WarmNode is { List: { } list } node)
        {
            list.Remove(node);
            if (list.Count == 0 && slot.Instance is { } instance)
                _warm.Remove(instance.Key);
            slot.WarmNode = null;
        }
        else if (slot.State == SlotState.Idle)
        {
            RemoveFromGenericLocked(slot);
        }
        slot.State = SlotState.Busy;
        return slot;
    }

    private void RemoveFromGenericLocked(SandboxSlot<TSandbox> slot)
    {
        var stack = GenericFor(slot.Sandbox.Network);
        if (stack.Count == 0 || (stack.Peek() != slot && !stack.Contains(slot)))
            return;
        var rest = stack.Where(s => s != slot).Reverse().ToList();
        stack.Clear();
        foreach (var s in rest)
            stack.Push(s);
    }

    private void RemoveLocked(SandboxSlot<TSandbox> slot)
    {
        if (slot.IsIdle)
            TakeLocked(slot);
        _all.Remove(slot);
    }
}
