namespace TrEnv.Coordinator.Sessions;

/// <summary>
/// Keeps sessions from taking every sandbox: active sessions together may hold at most a share of the cluster's
/// sandboxes, and one function at most a fixed number. The session catalog lags the entities by the read
/// journal's poll, so what this coordinator admitted and the catalog does not show yet counts too (two
/// coordinators admitting at once may overshoot by what each admits within that lag).
/// </summary>
public sealed class SessionAdmission(int sandboxPercent, int perFunction, Func<long>? clock = null)
{
    /// <summary>How long an admission counts while the catalog does not record the session (a create's usual span).</summary>
    public const long PendingMs = 60_000;

    /// <summary>Seconds a refused caller is told to wait (Retry-After).</summary>
    public const int RetryAfterSeconds = 5;

    private readonly Func<long> _clock = clock ?? (() => Environment.TickCount64);
    private readonly Dictionary<string, (string Function, long At)> _pending = new(StringComparer.Ordinal);
    private readonly object _gate = new();

    /// <summary>
    /// Admits session <paramref name="id"/> of <paramref name="function"/> to take a sandbox, or returns why not.
    /// <paramref name="active"/> is every session the catalog shows active; one of them is admitted again freely.
    /// <paramref name="recorded"/> tells whether the catalog records a session in any state: from then on its
    /// active list counts it (or not, once paused or deleted), so the admission no longer does.
    /// </summary>
    public string? TryAdmit(string id, string function, int clusterSandboxes, IReadOnlyCollection<(string Id, string Function)> active, Func<string, bool>? recorded = null)
    {
        lock (_gate)
        {
            var now = _clock();
            var shown = active.Select(a => a.Id).ToHashSet(StringComparer.Ordinal);
            foreach (var stale in _pending.Where(p => shown.Contains(p.Key) || recorded?.Invoke(p.Key) == true || now - p.Value.At > PendingMs).Select(p => p.Key).ToList())
                _pending.Remove(stale);
            if (shown.Contains(id))
                return null;
            var all = active.Concat(_pending.Select(p => (Id: p.Key, p.Value.Function))).ToList();
            var cap = (int)((long)clusterSandboxes * sandboxPercent / 100);
            if (all.Count >= cap)
                return $"Active sessions hold {all.Count} of the {cap} sandboxes sessions may take ({sandboxPercent}% of the cluster's {clusterSandboxes}, "
                    + "TRENV_SESSION_SANDBOX_PERCENT); the rest stays for functions. Pause or delete a session, or retry later.";
            var ofFunction = all.Count(a => a.Function == function);
            if (ofFunction >= perFunction)
                return $"Function \"{function}\" has {ofFunction} active sessions, its limit (TRENV_SESSIONS_PER_FUNCTION={perFunction}). Pause or delete one, or retry later.";
            _pending[id] = (function, now);
            return null;
        }
    }

    /// <summary>Takes back an admission whose create or resume failed, or whose session was deleted.</summary>
    public void Forget(string id)
    {
        lock (_gate)
            _pending.Remove(id);
    }
}
