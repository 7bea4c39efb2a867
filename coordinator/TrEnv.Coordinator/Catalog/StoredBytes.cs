using TrEnv.Contracts;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// Which stored modules and layers nothing references: no version of a function that exists (old versions
/// included) and no session that exists (a session keeps the version it started on, even after its function
/// is deleted). Folded from the journal's function and session events in order.
/// </summary>
public static class StoredBytes
{
    public static IReadOnlyList<string> Unreferenced(IEnumerable<string> stored, IEnumerable<IEvent> functionEvents, IEnumerable<IEvent> sessionEvents)
    {
        var functions = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var e in functionEvents)
        {
            switch (e)
            {
                case FunctionEvents.VersionAdded v:
                    if (!functions.TryGetValue(v.Name, out var set))
                        functions[v.Name] = set = new HashSet<string>(StringComparer.Ordinal);
                    set.UnionWith(Of(v.Version));
                    break;
                case FunctionEvents.Deleted d:
                    functions.Remove(d.Name);
                    break;
            }
        }
        var sessions = new Dictionary<string, string[]>(StringComparer.Ordinal);
        foreach (var e in sessionEvents)
        {
            switch (e)
            {
                case SessionEvents.Created c:
                    sessions[c.SessionId] = Of(c.Version);
                    break;
                case SessionEvents.Forked f:
                    sessions[f.SessionId] = Of(f.Version);
                    break;
                case SessionEvents.Deleted d:
                    sessions.Remove(d.SessionId);
                    break;
            }
        }
        var referenced = functions.Values.SelectMany(s => s).Concat(sessions.Values.SelectMany(s => s)).ToHashSet(StringComparer.Ordinal);
        return [.. stored.Distinct(StringComparer.Ordinal).Where(s => !referenced.Contains(s)).Order(StringComparer.Ordinal)];
    }

    private static string[] Of(FunctionVersion v) => v.Limits.Layer is { } layer ? [v.Sha256, layer] : [v.Sha256];
}
