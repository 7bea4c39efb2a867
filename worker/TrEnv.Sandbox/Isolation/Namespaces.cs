namespace TrEnv.Sandbox.Isolation;

/// <summary>
/// Starts sandbox hosts in their own mount, PID, IPC, UTS and network namespaces through util-linux
/// <c>unshare</c>: the host is PID 1 of a fresh PID namespace with its own /proc, sees only a loopback
/// network that is down, and dies with its parent (<c>--kill-child</c>). Needs root; otherwise null.
/// </summary>
public static class Namespaces
{
    public const string Unshare = "/usr/bin/unshare";

    public static bool Available => Environment.UserName == "root" && File.Exists(Unshare);

    /// <summary>
    /// The host started in new namespaces, or null when that needs privileges this process lacks. With a
    /// <paramref name="root"/> it also pivots into its own root filesystem; <paramref name="network"/> keeps
    /// the node's network namespace for functions that ask for the network.
    /// </summary>
    public static SandboxHostCommand? Wrap(SandboxHostCommand host, SandboxRootfs? root = null, bool network = false)
    {
        if (!Available)
            return null;
        string[] flags = ["--mount", "--uts", "--ipc", .. network ? Array.Empty<string>() : ["--net"], "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private", "--"];
        return host with
        {
            FileName = Unshare,
            Arguments = [.. flags, host.FileName, .. host.Arguments, "--own-mount-namespace", .. root?.Arguments() ?? []],
            Isolation = root is null ? "namespaces" : "namespaces+rootfs",
        };
    }

    /// <summary>The namespace identities (mnt, pid, net, ipc, uts) of a process, for checks and tests.</summary>
    public static IReadOnlyDictionary<string, string> Of(int pid)
        => new[] { "mnt", "pid", "net", "ipc", "uts" }.ToDictionary(ns => ns, ns =>
        {
            try
            {
                return new FileInfo($"/proc/{pid}/ns/{ns}").LinkTarget ?? "";
            }
            catch (IOException)
            {
                return "";
            }
        });

    /// <summary>The first child of a process (the sandbox host under its unshare parent), or null.</summary>
    public static int? ChildOf(int pid)
    {
        try
        {
            var children = File.ReadAllText($"/proc/{pid}/task/{pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return children.Length > 0 ? int.Parse(children[0], System.Globalization.CultureInfo.InvariantCulture) : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
