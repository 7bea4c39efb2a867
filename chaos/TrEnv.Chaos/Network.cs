using System.Diagnostics;

namespace TrEnv.Chaos;

/// <summary>
/// The workers' network namespaces: one veth pair each (10.215.N.1 on the host side, 10.215.N.2 inside), the
/// host address 10.215.0.1 on lo for every other node, and forwarding on so workers reach each other (Akka
/// gossips between all members). A partition takes the host side of a worker's veth down. Where a firewall
/// drops forwarded traffic (dockerd sets the FORWARD policy to DROP when it starts), two ACCEPT rules for
/// 10.215.0.0/16 go first in FORWARD for the run.
/// </summary>
public sealed class Network : IDisposable
{
    private readonly List<LocalNode> _namespaced;
    private readonly string? _forwardingBefore;
    private bool _hostAddressAdded;
    private bool _forwardRulesAdded;
    private static readonly string[][] ForwardRules = [["FORWARD", "-s", "10.215.0.0/16", "-j", "ACCEPT"], ["FORWARD", "-d", "10.215.0.0/16", "-j", "ACCEPT"]];

    private Network(List<LocalNode> namespaced, string? forwardingBefore)
    {
        _namespaced = namespaced;
        _forwardingBefore = forwardingBefore;
    }

    /// <summary>True when this process may make namespaces: root with the <c>ip</c> tool.</summary>
    public static bool Available => Tmds.Linux.LibC.geteuid() == 0 && new[] { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" }.Any(File.Exists);

    public static Network Create(IEnumerable<LocalNode> nodes)
    {
        const string forward = "/proc/sys/net/ipv4/ip_forward";
        var net = new Network(nodes.Where(n => n.Namespace is not null).ToList(), File.Exists(forward) ? File.ReadAllText(forward).Trim() : null);
        try
        {
            if (net._namespaced.Count == 0)
                return net;
            if (!Run(true, "ip", "-o", "addr", "show", "dev", "lo").Contains(LocalTopology.HostAddress + "/", StringComparison.Ordinal))
            {
                Run("ip", "addr", "add", LocalTopology.HostAddress + "/32", "dev", "lo");
                net._hostAddressAdded = true;
            }
            File.WriteAllText(forward, "1");
            if (new[] { "/usr/sbin/iptables", "/sbin/iptables" }.Any(File.Exists))
            {
                foreach (var rule in ForwardRules)
                    Run(["iptables", "-I", .. rule]);
                net._forwardRulesAdded = true;
            }
            foreach (var n in net._namespaced)
            {
                var i = n.NamespaceIndex;
                Run(true, "ip", "netns", "del", n.Namespace!); // left over from a run that was killed
                Run(true, "ip", "link", "del", HostSide(i));
                Run("ip", "netns", "add", n.Namespace!);
                Run("ip", "link", "add", HostSide(i), "type", "veth", "peer", "name", $"tcv{i}g");
                Run("ip", "link", "set", $"tcv{i}g", "netns", n.Namespace!);
                Run("ip", "addr", "add", $"10.215.{i}.1/30", "dev", HostSide(i));
                Run("ip", "link", "set", HostSide(i), "up");
                Run("ip", "netns", "exec", n.Namespace!, "ip", "addr", "add", $"10.215.{i}.2/30", "dev", $"tcv{i}g");
                Run("ip", "netns", "exec", n.Namespace!, "ip", "link", "set", $"tcv{i}g", "up");
                Run("ip", "netns", "exec", n.Namespace!, "ip", "link", "set", "lo", "up");
                Run("ip", "netns", "exec", n.Namespace!, "ip", "route", "add", "default", "via", $"10.215.{i}.1");
            }
            return net;
        }
        catch
        {
            net.Dispose();
            throw;
        }
    }

    /// <summary>Cuts a worker off from every other node (its veth goes down), or heals the cut.</summary>
    public void SetConnected(LocalNode worker, bool connected)
    {
        if (worker.Namespace is null)
            throw new InvalidOperationException($"{worker.Service} has no network namespace to partition (run as root).");
        Run("ip", "link", "set", HostSide(worker.NamespaceIndex), connected ? "up" : "down");
        if (connected)
            Run(true, "ip", "netns", "exec", worker.Namespace, "ip", "route", "replace", "default", "via", $"10.215.{worker.NamespaceIndex}.1");
    }

    private static string HostSide(int i) => $"tcv{i}h";

    public void Dispose()
    {
        foreach (var n in _namespaced)
            Run(true, "ip", "netns", "del", n.Namespace!);
        if (_forwardRulesAdded)
            foreach (var rule in ForwardRules)
                Run(true, ["iptables", "-D", .. rule]);
        if (_hostAddressAdded)
            Run(true, "ip", "addr", "del", LocalTopology.HostAddress + "/32", "dev", "lo");
        if (_forwardingBefore is not null && _namespaced.Count > 0)
            File.WriteAllText("/proc/sys/net/ipv4/ip_forward", _forwardingBefore);
    }

    private static string Run(params string[] command) => Run(false, command);

    private static string Run(bool tolerant, params string[] command)
    {
        var info = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in command[1..])
            info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEnd();
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 && !tolerant)
            throw new InvalidOperationException($"{string.Join(' ', command)} failed: {error.Trim()}");
        return output;
    }
}
