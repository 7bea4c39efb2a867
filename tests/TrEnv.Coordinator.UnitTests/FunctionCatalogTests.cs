using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;

namespace TrEnv.Tests;

public sealed class FunctionCatalogTests
{
    private static readonly FunctionLimits Limits = new(128, 500, 4, new Dictionary<string, string>());

    private static FunctionVersion V(int n) => new(n, new string('a', 64), 10, Limits, DateTimeOffset.UnixEpoch);

    private static FunctionEvents.VersionAdded Added(int n) => new("f", V(n));

    private static readonly FunctionEvents.Deleted Deleted = new("f", DateTimeOffset.UnixEpoch);

    [Fact]
    public void A_version_the_journal_delivers_after_this_coordinator_deleted_it_stays_deleted()
    {
        var catalog = new FunctionCatalog();
        catalog.Set(new FunctionReplies.View("f", V(2), [V(1), V(2)], false));
        catalog.Removed("f", 2);
        var live = new FunctionCatalog.JournalPass();
        catalog.Apply(Added(1), live);
        catalog.Apply(Added(2), live);
        Assert.False(catalog.TryGet("f", out _));
        catalog.Apply(Deleted, live);
        Assert.False(catalog.TryGet("f", out _));
    }

    [Fact]
    public void A_late_delete_from_the_journal_does_not_take_away_a_newer_deploy()
    {
        var catalog = new FunctionCatalog();
        catalog.Set(new FunctionReplies.View("f", V(1), [V(1)], false));
        catalog.Removed("f", 1);
        catalog.Set(new FunctionReplies.View("f", V(2), [V(1), V(2)], false));
        var live = new FunctionCatalog.JournalPass();
        catalog.Apply(Added(1), live);
        catalog.Apply(Deleted, live);
        Assert.True(catalog.TryGet("f", out var now));
        Assert.Equal(2, now.Version);
        catalog.Apply(Added(2), live);
        Assert.True(catalog.TryGet("f", out now));
        Assert.Equal(2, now.Version);
    }

    [Fact]
    public void Replaying_the_whole_journal_again_ends_where_the_first_read_ended()
    {
        var catalog = new FunctionCatalog();
        foreach (var pass in new[] { new FunctionCatalog.JournalPass(), new FunctionCatalog.JournalPass() })
        {
            catalog.Apply(Added(1), pass);
            catalog.Apply(Deleted, pass);
            catalog.Apply(Added(2), pass);
            Assert.True(catalog.TryGet("f", out var now));
            Assert.Equal(2, now.Version);
        }
    }

    [Fact]
    public void A_delete_published_by_a_local_entity_removes_the_current_version()
    {
        var catalog = new FunctionCatalog();
        catalog.Apply(Added(3));
        catalog.Apply(Deleted);
        Assert.False(catalog.TryGet("f", out _));
        catalog.Apply(Added(3), new FunctionCatalog.JournalPass());
        Assert.False(catalog.TryGet("f", out _));
        catalog.Apply(Added(4));
        Assert.True(catalog.TryGet("f", out var now));
        Assert.Equal(4, now.Version);
    }

    [Fact]
    public void The_registry_saying_deleted_tombstones_its_last_version()
    {
        var catalog = new FunctionCatalog();
        catalog.Apply(Added(1));
        catalog.Set(new FunctionReplies.View("f", null, [V(1), V(2)], true));
        catalog.Apply(Added(2), new FunctionCatalog.JournalPass());
        Assert.False(catalog.TryGet("f", out _));
    }
}
