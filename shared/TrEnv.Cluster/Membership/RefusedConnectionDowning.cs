using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Akka.Remote;
using AkkaCluster = Akka.Cluster.Cluster;
using ClusterEvent = Akka.Cluster.ClusterEvent;
using UniqueAddress = Akka.Cluster.UniqueAddress;

namespace TrEnv.Cluster.Membership;

/// <summary>
/// Downs a member at once when its process is provably gone: its association dropped or it became
/// unreachable, and its remoting port now refuses connections. A refused connection means no process
/// listens at that address, which a partition or a pause can never produce (they time out), so this is
/// safe where the split-brain resolver must wait out <c>stable-after</c>. Anything else is left to it.
/// </summary>
public sealed class RefusedConnectionDowning : ReceiveActor
{
    private readonly AkkaCluster _cluster = AkkaCluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly HashSet<UniqueAddress> _probing = [];

    public RefusedConnectionDowning()
    {
        Context.System.EventStream.Subscribe(Self, typeof(DisassociatedEvent));
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.UnreachableMember));
        Receive<DisassociatedEvent>(e => Suspect(e.RemoteAddress));
        Receive<ClusterEvent.UnreachableMember>(e => Suspect(e.Member.Address));
        Receive<ProbeResult>(OnProbed);
        ReceiveAny(_ => { });
    }

    private void Suspect(Address address)
    {
        var member = _cluster.State.Members.FirstOrDefault(m => m.Address.Equals(address));
        if (member is null || member.Address.Equals(_cluster.SelfAddress) || member.Status is Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed)
            return;
        if (!_probing.Add(member.UniqueAddress))
            return;
        var target = member.UniqueAddress;
        ProbeAsync(address.Host!, address.Port ?? 0).PipeTo(Self, success: refused => new ProbeResult(target, refused));
    }

    private void OnProbed(ProbeResult result)
    {
        _probing.Remove(result.Member);
        if (!result.Refused)
            return;
        // Down only the incarnation that was probed: a restarted node at the same address is a new member.
        var member = _cluster.State.Members.FirstOrDefault(m => m.UniqueAddress.Equals(result.Member));
        if (member is null || member.Status is Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed)
            return;
        _log.Warning("Downing {0}: its association dropped and its port refuses connections, so its process is gone.", member.Address);
        _cluster.Down(member.Address);
    }

    /// <summary>True when every attempt (three, 100 ms apart) is actively refused.</summary>
    public static async Task<bool> ProbeAsync(string host, int port, int attempts = 3, int intervalMs = 100)
    {
        for (var i = 0; i < attempts; i++)
        {
            if (i > 0)
                await Task.Delay(intervalMs).ConfigureAwait(false);
            if (!await IsRefusedAsync(host, port).ConfigureAwait(false))
                return false;
        }
        return true;
    }

    private static async Task<bool> IsRefusedAsync(string host, int port)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            await socket.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
            return false;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode == SocketError.ConnectionRefused;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private sealed record ProbeResult(UniqueAddress Member, bool Refused);
}

public static class RefusedConnectionDowningRegistration
{
    public static AkkaConfigurationBuilder AddRefusedConnectionDowning(this AkkaConfigurationBuilder builder)
        => builder.WithActors((system, _) => system.ActorOf(Props.Create<RefusedConnectionDowning>(), "refused-connection-downing"));
}
