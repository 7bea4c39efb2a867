using System.Collections.Concurrent;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// The coordinator's local read model of every function's current version. The invoke path reads it
/// without a network hop; it is fed by the journal's tagged events and by this coordinator's own writes.
/// </summary>
public sealed class FunctionCatalog
{
    private readonly ConcurrentDictionary<string, FunctionVersion> _current = new(StringComparer.Ordinal);

    /// <summary>True once the journal has been read up to its end at start-up.</summary>
    public bool Loaded { get; set; }

    public IReadOnlyCollection<string> Names => _current.Keys.Order(StringComparer.Ordinal).ToList();

    public bool TryGet(string name, out FunctionVersion version) => _current.TryGetValue(name, out version!);

    public void Apply(IEvent e)
    {
        switch (e)
        {
            case FunctionEvents.VersionAdded v:
                _current.AddOrUpdate(v.Name, v.Version, (_, old) => old.Version >= v.Version.Version ? old : v.Version);
                break;
            case FunctionEvents.Deleted d:
                _current.TryRemove(d.Name, out _);
                break;
        }
    }

    public void Set(FunctionReplies.View view)
    {
        if (view.Current is { } current)
            _current[view.Name] = current;
        else
            _current.TryRemove(view.Name, out _);
    }
}
