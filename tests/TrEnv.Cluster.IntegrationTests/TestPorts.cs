using System.Net;
using System.Net.Sockets;

namespace TrEnv.Tests;

/// <summary>
/// Ports for node processes the tests start. A node binds its port a moment after the test picks it, so the
/// port must not be one the kernel may hand out meanwhile: ports come from below the ephemeral range
/// (ip_local_port_range starts at 32768), are free when picked, and are never picked twice in this process.
/// </summary>
public static class TestPorts
{
    private const int Low = 12000;
    private const int High = 32000;
    private static readonly HashSet<int> Chosen = [];

    /// <summary>One free port.</summary>
    public static int Next() => Block(1);

    /// <summary>The first of <paramref name="count"/> consecutive free ports.</summary>
    public static int Block(int count)
    {
        for (var attempt = 0; attempt < 10_000; attempt++)
        {
            var first = Random.Shared.Next(Low, High - count);
            lock (Chosen)
            {
                if (Enumerable.Range(first, count).Any(Chosen.Contains) || !Enumerable.Range(first, count).All(Free))
                    continue;
                foreach (var p in Enumerable.Range(first, count))
                    Chosen.Add(p);
                return first;
            }
        }
        throw new InvalidOperationException($"no {count} consecutive free ports between {Low} and {High}");
    }

    private static bool Free(int port)
    {
        try
        {
            using var l = new TcpListener(IPAddress.Loopback, port);
            l.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
