using Akka.Actor;
using TrEnv.Cluster.Membership;

namespace TrEnv.Coordinator.UnitTests;

public sealed class DowningPolicyTests
{
    private static Address A(string host) => new("akka.tcp", "trenv", host, 4053);

    private static readonly Address C1 = A("coordinator-1"), C2 = A("coordinator-2"), Pool = A("memory-pool"), W1 = A("worker-1"), W2 = A("worker-2"), W3 = A("worker-3");
    private static readonly Address[] All = [C1, C2, Pool, W1, W2, W3];

    [Fact]
    public void Nothing_is_downed_while_the_decider_reaches_everyone()
        => Assert.Empty(DowningPolicy.Decide(All, new HashSet<Address>()));

    [Fact]
    public void A_worker_the_decider_cannot_reach_is_downed()
        => Assert.Equal([W2], DowningPolicy.Decide(All, new HashSet<Address> { W2 }));

    [Fact]
    public void The_minority_side_downs_itself()
        => Assert.Equal([C1, W1], DowningPolicy.Decide(All, new HashSet<Address> { C2, Pool, W2, W3 }).Order(DowningPolicy.AddressOrder));

    [Fact]
    public void On_a_tie_the_side_with_the_lowest_address_stays()
    {
        Assert.Equal([W1, W2, W3], DowningPolicy.Decide(All, new HashSet<Address> { W1, W2, W3 }).Order(DowningPolicy.AddressOrder));
        // Seen from a worker's side: the coordinators' side holds the lowest address, so this side goes.
        Assert.Equal([W1, W2, W3], DowningPolicy.Decide(All, new HashSet<Address> { C1, C2, Pool }).Order(DowningPolicy.AddressOrder));
    }

    [Fact]
    public void The_first_coordinator_this_node_reaches_decides()
    {
        Assert.True(DowningPolicy.IsDecider(C1, [C1, C2], new HashSet<Address>()));
        Assert.False(DowningPolicy.IsDecider(C2, [C1, C2], new HashSet<Address>()));
        Assert.True(DowningPolicy.IsDecider(C2, [C1, C2], new HashSet<Address> { C1 }));
        Assert.False(DowningPolicy.IsDecider(W1, [C1, C2], new HashSet<Address>()));
    }
}
