using System.Collections.Concurrent;
using TrEnv.Contracts;
using TrEnv.Coordinator.Sessions;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// Every session's last persisted state, folded from the journal's session events in order (the projection
/// reads them per tag, so one session's events never cross); GET /v1/sessions lists it. It lags the entities
/// by the read journal's poll; one session's live view comes from its entity.
/// </summary>
public sealed class SessionCatalog
{
    private readonly ConcurrentDictionary<string, SessionState> _sessions = new(StringComparer.Ordinal);

    public IReadOnlyList<SessionInfo> List(string? function, string? state)
        => _sessions.Values.Where(s => (function is null || s.Function == function) && (state is null || s.Status == state))
            .OrderBy(s => s.CreatedAt).Select(s => s.ToInfo()).ToList();

    /// <summary>One session as last recorded, or null.</summary>
    public SessionInfo? Find(string id) => _sessions.TryGetValue(id, out var s) ? s.ToInfo() : null;

    /// <summary>The sessions recorded active (each holds a sandbox), with their functions.</summary>
    public IReadOnlyCollection<(string Id, string Function)> Active()
        => _sessions.Values.Where(s => s.Status == SessionStates.Active).Select(s => (s.Id, s.Function ?? "")).ToList();

    public void Apply(IEvent e)
    {
        var id = e switch
        {
            SessionEvents.Created c => c.SessionId,
            SessionEvents.Activated a => a.SessionId,
            SessionEvents.Paused p => p.SessionId,
            SessionEvents.Checkpointed k => k.SessionId,
            SessionEvents.Recovered r => r.SessionId,
            SessionEvents.Forked f => f.SessionId,
            SessionEvents.Lost l => l.SessionId,
            SessionEvents.Deleted d => d.SessionId,
            _ => null,
        };
        if (id is null)
            return;
        if (e is SessionEvents.Deleted)
        {
            _sessions.TryRemove(id, out _);
            return;
        }
        _sessions.AddOrUpdate(id, key => SessionState.Empty(key).Apply(e), (_, s) => s.Apply(e));
    }
}
