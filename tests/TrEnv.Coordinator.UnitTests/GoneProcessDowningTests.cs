using System.Net;
using System.Net.Sockets;
using TrEnv.Cluster.Membership;

namespace TrEnv.Coordinator.UnitTests;

public sealed class GoneProcessDowningTests
{
    [Fact]
    public async Task A_port_nobody_listens_on_is_gone()
    {
        int port;
        using (var l = new TcpListener(IPAddress.Loopback, 0))
        {
            l.Start();
            port = ((IPEndPoint)l.LocalEndpoint).Port;
        }
        Assert.Equal(ProbeVerdict.Gone, await GoneProcessDowning.ProbeAsync("127.0.0.1", port));
    }

    [Fact]
    public async Task A_listening_port_is_not_gone_even_if_nothing_accepts()
    {
        // A paused process: its kernel completes the handshake although the process never accepts.
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        Assert.Equal(ProbeVerdict.Unknown, await GoneProcessDowning.ProbeAsync("127.0.0.1", ((IPEndPoint)l.LocalEndpoint).Port));
    }

    [Fact]
    public async Task A_name_that_no_longer_resolves_is_gone()
    {
        // RFC 2606 reserves .invalid: no resolver answers it with an address.
        Assert.Equal(ProbeVerdict.Gone, await GoneProcessDowning.ProbeAsync("worker-gone.invalid", 4053, attempts: 1));
    }

    [Theory]
    [InlineData(5, 0, true)]   // a killed worker among six: the other five all see each other
    [InlineData(5, 1, true)]
    [InlineData(5, 2, true)]
    [InlineData(5, 3, false)]  // most of the others unreachable: this node may be the one cut off
    [InlineData(5, 5, false)]
    [InlineData(2, 1, false)]  // half is not a majority
    [InlineData(1, 0, true)]
    public void Downs_only_from_the_majority_side(int others, int unreachable, bool expected)
        => Assert.Equal(expected, GoneProcessDowning.OnMajoritySide(others, unreachable));
}
