using TrEnv.Contracts;
using TrEnv.Coordinator.Sessions;
using TrEnv.MemoryPool.Node;

namespace TrEnv.Tests;

public sealed class SessionQuotaTests
{
    private static IProtocolMessage Do(PoolState s, PoolCommands.IPoolCommand c)
    {
        var (reply, e) = s.Process(c);
        if (e is not null)
            s.Apply(e);
        return reply;
    }

    [Fact]
    public void Session_deltas_share_a_quota_that_templates_do_not_count_against_and_a_free_gives_back()
    {
        var s = new PoolState(64 << 20, sessionQuota: 16 << 20);
        Assert.IsType<PoolReplies.Allocated>(Do(s, new PoolCommands.Allocate("p", "hello@1", 40 << 20)));   // a template: not in the quota
        Assert.IsType<PoolReplies.Allocated>(Do(s, new PoolCommands.Allocate("p", "session-a-1", 10 << 20)));
        var refused = Assert.IsType<PoolReplies.Full>(Do(s, new PoolCommands.Allocate("p", "session-b-1", 8 << 20)));
        Assert.True(refused.Quota);
        Assert.Contains("TRENV_SESSION_POOL_PERCENT", refused.Message, StringComparison.Ordinal);
        Assert.IsType<PoolReplies.Allocated>(Do(s, new PoolCommands.Allocate("p", "session-b-1", 6 << 20)));  // fits exactly
        Assert.Equal(16L << 20, s.SessionBytes);
        Do(s, new PoolCommands.Free("p", "session-a-1"));
        Assert.Equal(6L << 20, s.SessionBytes);
        Assert.IsType<PoolReplies.Allocated>(Do(s, new PoolCommands.Allocate("p", "session-c-1", 8 << 20)));
        // A full pool is not a quota refusal.
        var full = Assert.IsType<PoolReplies.Full>(Do(s, new PoolCommands.Allocate("p", "other@1", 32 << 20)));
        Assert.False(full.Quota);
    }

    [Fact]
    public void A_region_forked_sessions_hold_outlives_its_owner_until_the_last_holder_releases_it_and_replays_the_same()
    {
        var journal = new List<IEvent>();
        var s = new PoolState(64 << 20, 16 << 20);
        IProtocolMessage Step(PoolCommands.IPoolCommand c)
        {
            var (reply, e) = s.Process(c);
            if (e is not null)
            {
                s.Apply(e);
                journal.Add(e);
            }
            return reply;
        }
        Step(new PoolCommands.Allocate("p", "session-a-fork-1", 4 << 20));
        Assert.Equal(new PoolReplies.Held("session-a-fork-1", true), Step(new PoolCommands.Hold("p", "session-a-fork-1", ["b", "c", "d"])));
        Step(new PoolCommands.Free("p", "session-a-fork-1"));                  // the owner lets go: the children still hold it
        Assert.True(s.Owners.ContainsKey("session-a-fork-1"));
        Assert.Equal(4L << 20, s.SessionBytes);
        Step(new PoolCommands.Release("p", "session-a-fork-1", "b"));
        Step(new PoolCommands.Release("p", "session-a-fork-1", "b"));           // twice is once
        Step(new PoolCommands.Release("p", "session-a-fork-1", "c"));
        Assert.Equal(["d"], s.HoldersOf("session-a-fork-1"));

        var replayed = new PoolState(64 << 20, 16 << 20);
        foreach (var e in journal)
            replayed.Apply(e);
        Assert.Equal(["d"], replayed.HoldersOf("session-a-fork-1"));
        Assert.True(replayed.OwnerHasReleased("session-a-fork-1"));

        Assert.Equal(new PoolReplies.Freed("session-a-fork-1", true), Step(new PoolCommands.Release("p", "session-a-fork-1", "d")));
        Assert.False(s.Owners.ContainsKey("session-a-fork-1"));
        Assert.Equal(0L, s.SessionBytes);
        Assert.Equal(new PoolReplies.Held("session-a-fork-1", false), Step(new PoolCommands.Hold("p", "session-a-fork-1", ["e"])));

        // A held region whose holders all release before the owner frees it stays the owner's.
        Step(new PoolCommands.Allocate("p", "session-x-1", 4 << 20));
        Step(new PoolCommands.Hold("p", "session-x-1", ["y"]));
        Step(new PoolCommands.Release("p", "session-x-1", "y"));
        Assert.True(s.Owners.ContainsKey("session-x-1"));
        Assert.Equal(new PoolReplies.Freed("session-x-1", true), Step(new PoolCommands.Free("p", "session-x-1")));
        Assert.False(s.Owners.ContainsKey("session-x-1"));
    }

    [Fact]
    public void The_quota_is_rebuilt_by_replay()
    {
        var journal = new List<IEvent>();
        var s = new PoolState(64 << 20, 16 << 20);
        foreach (var owner in new[] { "session-a-1", "session-a-2", "t@1" })
        {
            var (_, e) = s.Process(new PoolCommands.Allocate("p", owner, 4 << 20));
            s.Apply(e!);
            journal.Add(e!);
        }
        var replayed = new PoolState(64 << 20, 16 << 20);
        foreach (var e in journal)
            replayed.Apply(e);
        Assert.Equal(8L << 20, replayed.SessionBytes);
    }

    private static SessionInfo Info(string id, string state, DateTimeOffset lastActive, DateTimeOffset? pausedAt, long stored)
        => new(id, "f", 1, state, null, lastActive, lastActive, pausedAt, 0, 0, 0, 0, stored, 0, 0, null, null, 0, null);

    [Fact]
    public void Paused_sessions_expire_by_when_they_paused_lost_ones_with_a_pause_by_when_they_were_lost_active_ones_never()
    {
        var now = DateTimeOffset.UnixEpoch.AddDays(10);
        var ttl = TimeSpan.FromHours(1);
        var due = SessionExpiry.Due([
            Info("old-pause", SessionStates.Paused, now.AddHours(-3), now.AddHours(-2), 100),
            Info("new-pause", SessionStates.Paused, now.AddHours(-3), now.AddMinutes(-30), 100),
            Info("lost-old", SessionStates.Lost, now.AddHours(-2), now.AddHours(-3), 100),
            Info("lost-recent", SessionStates.Lost, now.AddMinutes(-5), now.AddHours(-3), 100),
            Info("lost-never-paused", SessionStates.Lost, now.AddHours(-5), null, 0),
            Info("active", SessionStates.Active, now.AddDays(-2), now.AddDays(-2), 100),
        ], now, ttl);
        Assert.Equal(["old-pause", "lost-old"], due);
    }
}
