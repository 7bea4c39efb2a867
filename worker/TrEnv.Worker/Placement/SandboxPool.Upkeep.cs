using TrEnv.Contracts;

namespace TrEnv.Worker.Placement;

/// <summary>Taking idle slots out for reclaim, expiry, replacement and eviction, and keeping generic sandboxes pre-started.</summary>
public sealed partial class SandboxPool<TSandbox>
{
    /// <summary>Takes the warm idle instances whose version matches; the caller resets or destroys them.</summary>
    public List<SandboxSlot<TSandbox>> TakeWarm(Func<FunctionVersionKey, bool> which)
    {
        lock (_gate)
        {
            var taken = _warm.Where(kv => which(kv.Key)).SelectMany(kv => kv.Value).ToList();
            foreach (var slot in taken)
                TakeLocked(slot);
            return taken;
        }
    }

    /// <summary>Takes warm instances idle since before <paramref name="cutoff"/> (the keep-alive: scale to zero).</summary>
    public List<SandboxSlot<TSandbox>> TakeWarmIdleSince(DateTimeOffset cutoff)
    {
        lock (_gate)
        {
            var taken = _warm.Values.SelectMany(list => list).Where(s => s.LastUsed < cutoff).ToList();
            foreach (var slot in taken)
                TakeLocked(slot);
            return taken;
        }
    }

    /// <summary>Removes idle slots whose sandbox is <paramref name="broken"/> (crashed, or blind to the pool) and destroys them.</summary>
    public int DestroyIdleWhere(Func<TSandbox, bool> broken)
    {
        List<SandboxSlot<TSandbox>> doomed;
        lock (_gate)
        {
            doomed = _all.Where(s => s.IsIdle && broken(s.Sandbox)).ToList();
            foreach (var slot in doomed)
                RemoveLocked(slot);
        }
        foreach (var slot in doomed)
            _ = factory.DestroyAsync(slot.Sandbox);
        return doomed.Count;
    }

    /// <summary>
    /// Takes idle sandboxes, warm or generic, least recently used first, until the charged memory left is at
    /// most <paramref name="bound"/>; they leave the pool and the caller destroys them.
    /// </summary>
    public List<SandboxSlot<TSandbox>> TakeForEviction(IReadOnlyDictionary<SandboxSlot<TSandbox>, long> charged, long bound)
    {
        var total = charged.Values.Sum();
        var victims = new List<SandboxSlot<TSandbox>>();
        lock (_gate)
        {
            foreach (var slot in _all.Where(s => s.IsIdle).OrderBy(s => s.LastUsed).ToList())
            {
                if (total <= bound)
                    break;
                RemoveLocked(slot);
                victims.Add(slot);
                total -= charged.GetValueOrDefault(slot);
            }
        }
        return victims;
    }

    /// <summary>
    /// Reserves room to pre-start generic sandboxes up to <paramref name="target"/>, counting
    /// <paramref name="returning"/> that are on their way back; each reservation ends in
    /// <see cref="PrestartAsync"/> or <see cref="CancelReservations"/>.
    /// </summary>
    public int ReservePrestart(int target, int returning)
    {
        lock (_gate)
        {
            var room = maxSandboxes - _all.Count - _starting;
            var missing = Math.Min(room, target - _generic.Count - returning);
            if (missing <= 0)
                return 0;
            _starting += missing;
            return missing;
        }
    }

    public void CancelReservations(int count)
    {
        lock (_gate)
            _starting -= count;
    }

    /// <summary>Starts one generic sandbox on a reservation; throws what the factory throws.</summary>
    public async Task PrestartAsync()
    {
        try
        {
            var slot = new SandboxSlot<TSandbox>(await factory.StartAsync(network: false), _clock.GetUtcNow()) { State = SlotState.Idle };
            lock (_gate)
            {
                _all.Add(slot);
                _generic.Push(slot);
            }
        }
        finally
        {
            lock (_gate)
                _starting--;
        }
    }

    /// <summary>Versions of <paramref name="function"/> below <paramref name="belowVersion"/> are gone: takes their warm instances.</summary>
    public List<SandboxSlot<TSandbox>> Forget(string function, int belowVersion)
    {
        lock (_gate)
        {
            _forgotten[function] = Math.Max(_forgotten.GetValueOrDefault(function), belowVersion);
            var taken = _warm.Where(kv => IsForgottenLocked(kv.Key)).SelectMany(kv => kv.Value).ToList();
            foreach (var slot in taken)
                TakeLocked(slot);
            return taken;
        }
    }

    public bool IsForgotten(FunctionVersionKey key)
    {
        lock (_gate)
            return IsForgottenLocked(key);
    }

    /// <summary>Whether a call is running a forgotten version of <paramref name="function"/> (its files are still in use).</summary>
    public bool IsServingForgotten(string function)
    {
        lock (_gate)
            return _all.Any(s => (s.State is SlotState.Busy or SlotState.Session) && s.Serving is { } serving && serving.Name == function && IsForgottenLocked(serving));
    }

    private bool IsForgottenLocked(FunctionVersionKey key)
        => _forgotten.Count > 0 && _forgotten.TryGetValue(key.Name, out var below) && key.Version < below;
}
