using TrEnv.Contracts;
using TrEnv.MemoryPool.Node;

namespace TrEnv.Tests;

public sealed class PoolStateTests
{
    private static PoolState Replay(IEnumerable<IEvent> events, long capacity)
    {
        var s = new PoolState(capacity);
        foreach (var e in events)
            s.Apply(e);
        return s;
    }

    [Fact]
    public void Allocation_is_idempotent_per_owner_and_survives_replay()
    {
        var journal = new List<IEvent>();
        var s = new PoolState(1 << 20);
        IProtocolMessage Do(PoolCommands.IPoolCommand c)
        {
            var (reply, e) = s.Process(c);
            if (e is not null)
            {
                s.Apply(e);
                journal.Add(e);
            }
            return reply;
        }

        var a = Assert.IsType<PoolReplies.Allocated>(Do(new PoolCommands.Allocate("p", "t1", 10_000)));
        Assert.Equal(a, Do(new PoolCommands.Allocate("p", "t1", 10_000)));
        var b = Assert.IsType<PoolReplies.Allocated>(Do(new PoolCommands.Allocate("p", "t2", 5_000)));
        Assert.True(a.Region.Offset + a.Region.Length <= b.Region.Offset);
        Do(new PoolCommands.Free("p", "t1"));
        Assert.IsType<PoolReplies.Full>(Do(new PoolCommands.Allocate("p", "big", 2 << 20)));

        var replayed = Replay(journal, 1 << 20);
        Assert.Equal(s.Allocator.Allocations, replayed.Allocator.Allocations);
        Assert.Equal(s.Owners.Keys.Order(), replayed.Owners.Keys.Order());
        // The replayed allocator never hands out t2's region again.
        var c = Assert.IsType<PoolReplies.Allocated>(replayed.Process(new PoolCommands.Allocate("p", "t3", 900_000)).Reply);
        Assert.False(c.Region.Offset < b.Region.Offset + b.Region.Length && b.Region.Offset < c.Region.Offset + c.Region.Length);
    }
}
