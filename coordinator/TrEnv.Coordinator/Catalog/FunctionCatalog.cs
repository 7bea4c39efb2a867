using System.Collections.Concurrent;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// The coordinator's local read model of every function's current version. The invoke path reads it
/// without a network hop; it is fed by the journal's tagged events and by this coordinator's own writes.
/// </summary>
/// <remarks>
/// Events arrive from two sources out of step: this coordinator's own writes at once, and the journal's tagged
/// stream (read from the start, in journal order) later. So a delete leaves a tombstone, the highest version it
/// removed, and no version at or below it comes back; a new deploy numbers on from the old versions and so
/// passes. A delete read from the journal covers only the versions that stream had shown before it.
/// </remarks>
public sealed class FunctionCatalog
{
    private readonly ConcurrentDictionary<string, FunctionVersion> _current = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _removedThrough = new(StringComparer.Ordinal);
    private readonly Lock _writes = new();

    /// <summary>True once the journal has been read up to its end at start-up.</summary>
    public bool Loaded { get; set; }

    public IReadOnlyCollection<string> Names => _current.Keys.Order(StringComparer.Ordinal).ToList();

    public bool TryGet(string name, out FunctionVersion version) => _current.TryGetValue(name, out version!);

    /// <summary>
    /// Applies an event: from the journal's stream when <paramref name="pass"/> is the stream's own (one per read of
    /// the journal, fed in order), else one this node's entities just published.
    /// </summary>
    public void Apply(IEvent e, JournalPass? pass = null)
    {
        lock (_writes)
        {
            switch (e)
            {
                case FunctionEvents.VersionAdded v:
                    pass?.Saw(v.Name, v.Version.Version);
                    if (v.Version.Version <= _removedThrough.GetValueOrDefault(v.Name))
                        return;
                    _current.AddOrUpdate(v.Name, v.Version, (_, old) => old.Version >= v.Version.Version ? old : v.Version);
                    break;
                case FunctionEvents.Deleted d:
                    Remove(d.Name, pass is null ? (_current.TryGetValue(d.Name, out var now) ? now.Version : 0) : pass.Highest(d.Name));
                    break;
            }
        }
    }

    /// <summary>This coordinator deleted the function, whose newest version was <paramref name="lastVersion"/>.</summary>
    public void Removed(string name, int lastVersion)
    {
        lock (_writes)
            Remove(name, lastVersion);
    }

    /// <summary>The registry's answer, which is newer than anything the journal stream may still deliver.</summary>
    public void Set(FunctionReplies.View view)
    {
        lock (_writes)
        {
            if (view.Current is { } current)
            {
                _removedThrough.Remove(view.Name);
                _current[view.Name] = current;
            }
            else
                Remove(view.Name, view.Versions.Count > 0 ? view.Versions[^1].Version : 0);
        }
    }

    // Removes the current version only if the delete covers it: a late delete never takes a newer deploy away.
    private void Remove(string name, int through)
    {
        if (_current.TryGetValue(name, out var current) && current.Version <= through)
            _current.TryRemove(name, out _);
        _removedThrough[name] = Math.Max(_removedThrough.GetValueOrDefault(name), through);
    }

    /// <summary>One in-order read of the journal: the highest version of each function it has shown so far.</summary>
    public sealed class JournalPass
    {
        private readonly Dictionary<string, int> _highest = new(StringComparer.Ordinal);

        internal void Saw(string name, int version) => _highest[name] = Math.Max(_highest.GetValueOrDefault(name), version);

        internal int Highest(string name) => _highest.GetValueOrDefault(name);
    }
}
