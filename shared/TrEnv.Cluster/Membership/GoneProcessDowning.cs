using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Akka.Remote;
using AkkaCluster = Akka.Cluster.Cluster;
using ClusterEvent = Akka.Cluster.ClusterEvent;
using UniqueAddress = Akka.Cluster.UniqueAddress;

namespace TrEnv.Cluster.Membership;

/// <summary>What a probe of a member's remoting address found.</summary>
public enum ProbeVerdict
{
    /// <summary>Something answered, or nothing did yet (a timeout): a paused or cut-off process looks like this.</summary>
    Unknown,
    /// <summary>No process can be there: the port refuses, the host is unreachable on a reachable network, or its name no longer resolves.</summary>
    Gone,
}

/// <summary>
/// Downs a member at once when its process is provably gone, where the split-brain resolver would wait out
/// <c>stable-after</c>. Evidence of a gone process, on every one of three attempts 100 ms apart:
/// <list type="bullet">
/// <item>a refused connection: no process listens at the address (a local process killed);</item>
/// <item>"host unreachable": the address is on a network this node reaches, and nothing answers for it (a
/// container that was removed from its network, or killed, so its address is gone);</item>
/// <item>the name no longer resolves where it did (Docker's DNS drops a stopped container's name).</item>
/// </list>
/// A paused process never produces these: its kernel still accepts connections and its name resolves. A
/// partition does not either: the probe times out, or the network itself is unreachable. A member that
/// stays unreachable is probed again every second, since the first probe can come too early (a container
/// whose address was still being torn down). Downing is done only from the majority side: a node that sees
/// most members unreachable is the one cut off, and leaves the decision to the resolver.
/// </summary>
public sealed class GoneProcessDowning : ReceiveActor, IWithTimers
{
    private readonly AkkaCluster _cluster = AkkaCluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly HashSet<UniqueAddress> _probing = [];

    public ITimerScheduler Timers { get; set; } = null!;

    public GoneProcessDowning()
    {
        Context.System.EventStream.Subscribe(Self, typeof(DisassociatedEvent));
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.UnreachableMember));
        Receive<DisassociatedEvent>(e => Suspect(e.RemoteAddress));
        Receive<ClusterEvent.UnreachableMember>(e => Suspect(e.Member.Address));
        Receive<ProbeResult>(OnProbed);
        Receive<Reprobe>(_ =>
        {
            foreach (var m in _cluster.State.Unreachable)
                Suspect(m.Address);
            if (!_cluster.State.Unreachable.Any())
                Timers.Cancel("reprobe");
        });
        ReceiveAny(_ => { });
    }

    private void Suspect(Address address)
    {
        var member = _cluster.State.Members.FirstOrDefault(m => m.Address.Equals(address));
        if (member is null || member.Address.Equals(_cluster.SelfAddress) || member.Status is Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed)
            return;
        if (!Timers.IsTimerActive("reprobe"))
            Timers.StartPeriodicTimer("reprobe", Reprobe.Instance, TimeSpan.FromSeconds(1));
        if (!_probing.Add(member.UniqueAddress))
            return;
        var target = member.UniqueAddress;
        ProbeAsync(address.Host!, address.Port ?? 0).PipeTo(Self, success: verdict => new ProbeResult(target, verdict));
    }

    private void OnProbed(ProbeResult result)
    {
        _probing.Remove(result.Member);
        if (result.Verdict != ProbeVerdict.Gone)
            return;
        // Down only the incarnation that was probed: a restarted node at the same address is a new member.
        var state = _cluster.State;
        var member = state.Members.FirstOrDefault(m => m.UniqueAddress.Equals(result.Member));
        if (member is null || member.Status is Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed)
            return;
        if (!OnMajoritySide(state.Members.Count(m => !m.UniqueAddress.Equals(result.Member) && m.Status is not (Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed)),
                state.Unreachable.Count(m => !m.UniqueAddress.Equals(result.Member))))
        {
            _log.Warning("Not downing {0} although its process looks gone: this node sees most members unreachable, so it may be the one cut off.", member.Address);
            return;
        }
        _log.Warning("Downing {0}: its process is gone (its address refuses, is unreachable, or no longer resolves).", member.Address);
        _cluster.Down(member.Address);
    }

    /// <summary>True when the members other than the suspect, this node among them, are mostly reachable.</summary>
    public static bool OnMajoritySide(int others, int othersUnreachable) => others - othersUnreachable > others / 2.0;

    /// <summary><see cref="ProbeVerdict.Gone"/> when every attempt (three, 100 ms apart) finds the process gone.</summary>
    public static async Task<ProbeVerdict> ProbeAsync(string host, int port, int attempts = 3, int intervalMs = 100)
    {
        for (var i = 0; i < attempts; i++)
        {
            if (i > 0)
                await Task.Delay(intervalMs).ConfigureAwait(false);
            if (await ProbeOnceAsync(host, port).ConfigureAwait(false) != ProbeVerdict.Gone)
                return ProbeVerdict.Unknown;
        }
        return ProbeVerdict.Gone;
    }

    private static async Task<ProbeVerdict> ProbeOnceAsync(string host, int port)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, timeout.Token).ConfigureAwait(false);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.HostNotFound)
        {
            return ProbeVerdict.Gone;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return ProbeVerdict.Unknown; // the resolver itself did not answer: no evidence either way
        }
        if (addresses.Length == 0)
            return ProbeVerdict.Gone;
        using var socket = new Socket(addresses[0].AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(addresses[0], port, timeout.Token).ConfigureAwait(false);
            return ProbeVerdict.Unknown;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.HostUnreachable ? ProbeVerdict.Gone : ProbeVerdict.Unknown;
        }
        catch (OperationCanceledException)
        {
            return ProbeVerdict.Unknown;
        }
    }

    private sealed record ProbeResult(UniqueAddress Member, ProbeVerdict Verdict);

    private sealed class Reprobe
    {
        public static readonly Reprobe Instance = new();
    }
}

public static class GoneProcessDowningRegistration
{
    public static AkkaConfigurationBuilder AddGoneProcessDowning(this AkkaConfigurationBuilder builder)
        => builder.WithActors((system, _) => system.ActorOf(Props.Create<GoneProcessDowning>(), "gone-process-downing"));
}
