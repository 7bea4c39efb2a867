using Akka.Actor;
using Akka.Event;
using TrEnv.Contracts;
using AkkaCluster = Akka.Cluster.Cluster;
using MemberStatus = Akka.Cluster.MemberStatus;

namespace TrEnv.Cluster.Membership;

/// <summary>
/// The downing provider of every TrEnv node (akka.cluster.downing-provider-class): keep-majority as Akka's
/// split-brain resolver does it, except that a member counts as unreachable only when the deciding coordinator
/// cannot reach it itself. Akka's resolver downs every "indirectly connected" member, so workers that only lose
/// each other (and need no one but the coordinators to serve) would all be downed; here they are not.
/// </summary>
public sealed class ControlPlaneDowningProvider : Akka.Cluster.IDowningProvider
{
    private readonly ActorSystem _system;

    public ControlPlaneDowningProvider(ActorSystem system) => _system = system;

    public ControlPlaneDowningProvider(ActorSystem system, AkkaCluster cluster)
        : this(system)
    {
    }

    public TimeSpan DownRemovalMargin => _system.Settings.Config.GetTimeSpan("akka.cluster.down-removal-margin", TimeSpan.Zero);

    public Props DowningActorProps => Props.Create(() => new ControlPlaneDowning(StableAfter(_system)));

    private static TimeSpan StableAfter(ActorSystem system)
        => system.Settings.Config.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after", TimeSpan.FromSeconds(20));
}

/// <summary>
/// Every 500 ms, while the cluster reports unreachable members: asks each of them directly (an Identify over
/// remoting, one second to answer) whether it is alive. A coordinator that is the decider for its side
/// (<see cref="DowningPolicy.IsDecider"/>) downs by <see cref="DowningPolicy.Decide"/> once the set it cannot
/// reach has stayed the same for stable-after. A frozen process does not answer, so a long pause is still downed.
/// </summary>
public sealed class ControlPlaneDowning : ReceiveActor, IWithTimers
{
    private readonly AkkaCluster _cluster = AkkaCluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly TimeSpan _stableAfter;
    private HashSet<Address> _unreachableFromHere = [];
    private DateTimeOffset _stableSince = DateTimeOffset.UtcNow;
    private bool _probing;

    public ITimerScheduler Timers { get; set; } = null!;

    public ControlPlaneDowning(TimeSpan stableAfter)
    {
        _stableAfter = stableAfter;
        Receive<Tick>(_ => OnTick());
        Receive<Probed>(OnProbed);
    }

    protected override void PreStart() => Timers.StartPeriodicTimer("tick", Tick.Instance, TimeSpan.FromMilliseconds(500));

    private void OnTick()
    {
        if (_probing)
            return;
        var suspects = _cluster.State.Unreachable.Where(m => m.Status is not (MemberStatus.Down or MemberStatus.Removed)).Select(m => m.Address).ToList();
        if (suspects.Count == 0)
        {
            Settle([]);
            return;
        }
        _probing = true;
        var self = Self;
        Task.WhenAll(suspects.Select(async a =>
        {
            try
            {
                await Context.System.ActorSelection(new RootActorPath(a) / "user").Ask<ActorIdentity>(new Identify(null), TimeSpan.FromSeconds(1)).ConfigureAwait(false);
                return (Address: a, Alive: true);
            }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException or ActorNotFoundException)
            {
                return (Address: a, Alive: false);
            }
        })).PipeTo(self, success: results => new Probed(results.Where(r => !r.Alive).Select(r => r.Address).ToHashSet()));
    }

    private void OnProbed(Probed probed)
    {
        _probing = false;
        Settle(probed.Unreachable);
        if (_unreachableFromHere.Count == 0 || DateTimeOffset.UtcNow - _stableSince < _stableAfter)
            return;
        var state = _cluster.State;
        var members = state.Members.Where(m => m.Status is not (MemberStatus.Down or MemberStatus.Removed)).ToList();
        var coordinators = members.Where(m => m.HasRole(Roles.Coordinator)).Select(m => m.Address);
        if (!DowningPolicy.IsDecider(_cluster.SelfAddress, coordinators, _unreachableFromHere))
            return;
        var down = DowningPolicy.Decide(members.Select(m => m.Address).ToList(), _unreachableFromHere);
        _log.Warning("Downing {0}: {1} stayed unreachable from this coordinator for {2} s (keep-majority of {3} members).",
            string.Join(", ", down), string.Join(", ", _unreachableFromHere), _stableAfter.TotalSeconds, members.Count);
        foreach (var a in down)
            _cluster.Down(a);
        _unreachableFromHere = [];
    }

    private void Settle(HashSet<Address> unreachable)
    {
        if (!unreachable.SetEquals(_unreachableFromHere))
        {
            _unreachableFromHere = unreachable;
            _stableSince = DateTimeOffset.UtcNow;
        }
    }

    private sealed class Tick
    {
        public static readonly Tick Instance = new();
    }

    private sealed record Probed(HashSet<Address> Unreachable);
}
