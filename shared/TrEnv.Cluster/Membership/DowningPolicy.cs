using Akka.Actor;

namespace TrEnv.Cluster.Membership;

/// <summary>
/// Keep-majority, decided from one node's own view: who of the members it cannot reach itself. Pure: the
/// members and that view in, the members to down out.
/// </summary>
public static class DowningPolicy
{
    /// <summary>
    /// With <paramref name="unreachableFromHere"/> the members this node cannot reach (a subset of
    /// <paramref name="members"/>, which holds every member not already down, this node included): the larger
    /// side stays and the other is downed; on a tie the side holding the lowest address stays.
    /// </summary>
    public static IReadOnlyList<Address> Decide(IReadOnlyCollection<Address> members, IReadOnlySet<Address> unreachableFromHere)
    {
        var unreachable = members.Where(unreachableFromHere.Contains).ToList();
        if (unreachable.Count == 0)
            return [];
        var reachable = members.Where(m => !unreachableFromHere.Contains(m)).ToList();
        var keepReachable = reachable.Count > unreachable.Count
            || (reachable.Count == unreachable.Count && Equals(reachable.Min(AddressOrder), members.Min(AddressOrder)));
        return keepReachable ? unreachable : reachable;
    }

    /// <summary>
    /// Whether this node decides for its side: the first coordinator, by address, among the coordinators this
    /// node reaches itself (itself included). Every side of a partition that holds a coordinator has one.
    /// </summary>
    public static bool IsDecider(Address self, IEnumerable<Address> coordinators, IReadOnlySet<Address> unreachableFromHere)
        => coordinators.Where(c => !unreachableFromHere.Contains(c)).Order(AddressOrder).FirstOrDefault() is { } first && first.Equals(self);

    /// <summary>Addresses in one total order on every node.</summary>
    public static readonly IComparer<Address> AddressOrder = Comparer<Address>.Create((a, b) => string.CompareOrdinal(a.ToString(), b.ToString()));
}
