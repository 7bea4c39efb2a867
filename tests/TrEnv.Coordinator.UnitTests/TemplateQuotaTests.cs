using TrEnv.Contracts;
using TrEnv.MemoryPool.Node;

namespace TrEnv.Tests;

public sealed class TemplateQuotaTests
{
    [Fact]
    public void One_template_may_not_take_more_than_its_share_and_sessions_and_regions_already_held_are_not_affected()
    {
        var s = new PoolState(64 << 20, sessionQuota: 32 << 20, templateQuota: 16 << 20);
        var refused = Assert.IsType<PoolReplies.Full>(s.Process(new PoolCommands.Allocate("p", "big@1", (16 << 20) + 1)).Reply);
        Assert.True(refused.Quota);
        Assert.Contains("TRENV_TEMPLATE_POOL_PERCENT", refused.Message, StringComparison.Ordinal);

        var (fits, e) = s.Process(new PoolCommands.Allocate("p", "small@1", 16 << 20));
        Assert.IsType<PoolReplies.Allocated>(fits);
        s.Apply(e!);
        // A session's delta counts against the session quota only.
        Assert.IsType<PoolReplies.Allocated>(s.Process(new PoolCommands.Allocate("p", "session-a-1", 24 << 20)).Reply);

        // A region granted before the quota was lowered is answered as it is (allocation is idempotent per owner).
        var lowered = new PoolState(64 << 20, templateQuota: 4 << 20);
        lowered.Apply(e!);
        Assert.IsType<PoolReplies.Allocated>(lowered.Process(new PoolCommands.Allocate("p", "small@1", 16 << 20)).Reply);
    }
}
