using System.Text.RegularExpressions;
using TrEnv.Cluster;

namespace TrEnv.Chaos;

public enum NodeKind
{
    Coordinator,
    Worker,
    MemoryPool,
}

/// <summary>One compose service as a local process: its address, its own network namespace or none, and its environment.</summary>
public sealed record LocalNode(string Service, NodeKind Kind, string Address, string? Namespace, int NamespaceIndex,
    IReadOnlyDictionary<string, string> Environment, string Dll, string? PublishedHttpUrl = null)
{
    public int AkkaPort => int.Parse(Environment["TRENV_PORT"], System.Globalization.CultureInfo.InvariantCulture);
    public string AkkaAddress => $"akka.tcp://{NodeSettings.SystemName}@{Address}:{AkkaPort}";
    public string NodeName => Environment.TryGetValue("TRENV_NODE_NAME", out var n) ? n : Service;
    public string DataDirectory => Environment["TRENV_DATA_DIR"];
    /// <summary>Where clients reach its HTTP API: its own address, or the host port a container publishes it on.</summary>
    public string? HttpUrl => Kind != NodeKind.Coordinator ? null : PublishedHttpUrl ?? $"http://{Address}:{Environment["TRENV_HTTP_PORT"]}";
    public string? PoolHealthUrl => Kind == NodeKind.MemoryPool && Environment.TryGetValue("TRENV_POOL_GRPC_PORT", out var p) && p != "0" ? $"http://{Address}:{p}/healthz" : null;
}

/// <summary>Where the local topology puts things.</summary>
public sealed record LocalTopologyOptions(
    string RepoRoot,
    string RunDirectory,
    string ShmDirectory,
    bool NetworkNamespaces,
    int BasePort,
    string PostgresConnection,
    string Configuration = "Release");

/// <summary>
/// Turns compose services into local processes with the same environment keys: service names become addresses,
/// container ports become local ports, named volumes become directories (tmpfs ones under /dev/shm), and the
/// PostgreSQL service becomes the local PostgreSQL. Workers get their own network namespace when asked.
/// </summary>
public static partial class LocalTopology
{
    /// <summary>The address of every node outside a worker namespace when namespaces are used (on lo).</summary>
    public const string HostAddress = "10.215.0.1";

    public static IReadOnlyList<LocalNode> From(ComposeFile compose, IEnumerable<string> profiles, LocalTopologyOptions o)
    {
        var active = compose.Active(profiles);
        var kinds = new Dictionary<string, NodeKind>(StringComparer.Ordinal);
        string? postgres = null;
        foreach (var s in active)
        {
            if (s.BuildTarget is "coordinator")
                kinds[s.Name] = NodeKind.Coordinator;
            else if (s.BuildTarget is "worker")
                kinds[s.Name] = NodeKind.Worker;
            else if (s.BuildTarget is "memory-pool")
                kinds[s.Name] = NodeKind.MemoryPool;
            else if (s.Name == "postgres" || s.Image?.StartsWith("postgres", StringComparison.Ordinal) == true)
                postgres = s.Name;
            else
                throw new InvalidOperationException($"Service {s.Name}: the local topology runs build targets coordinator, worker and memory-pool and a postgres image, not {s.BuildTarget ?? s.Image}.");
        }

        // Addresses: a worker in its own namespace is 10.215.N.2; everything else shares one host address.
        var hostAddress = o.NetworkNamespaces ? HostAddress : "127.0.0.1";
        var addresses = new Dictionary<string, (string Address, string? Ns, int Index)>(StringComparer.Ordinal);
        var nsIndex = 0;
        foreach (var s in active.Where(s => kinds.ContainsKey(s.Name)))
        {
            if (o.NetworkNamespaces && kinds[s.Name] == NodeKind.Worker)
            {
                nsIndex++;
                addresses[s.Name] = ($"10.215.{nsIndex}.2", $"trenv-chaos-{nsIndex}", nsIndex);
            }
            else
            {
                addresses[s.Name] = (hostAddress, null, 0);
            }
        }

        // Ports: services sharing the host address each get their own; a namespace keeps the compose port.
        var ports = new Dictionary<(string, string), string>();
        var next = o.BasePort;
        foreach (var s in active.Where(s => kinds.ContainsKey(s.Name)))
        {
            foreach (var key in PortKeys)
            {
                if (!s.Environment.TryGetValue(key, out var p) || p == "0")
                    continue;
                ports[(s.Name, p)] = addresses[s.Name].Ns is null ? (next++).ToString(System.Globalization.CultureInfo.InvariantCulture) : p;
            }
        }

        var volumes = compose.Volumes.ToDictionary(v => v.Name, v => v.Tmpfs ? Path.Combine(o.ShmDirectory, v.Name) : Path.Combine(o.RunDirectory, "volumes", v.Name), StringComparer.Ordinal);
        var nodes = new List<LocalNode>();
        foreach (var s in active.Where(s => kinds.ContainsKey(s.Name)))
        {
            var (address, ns, index) = addresses[s.Name];
            foreach (var required in new[] { "TRENV_HOSTNAME", "TRENV_PORT", "TRENV_DATA_DIR" })
                if (!s.Environment.ContainsKey(required))
                    throw new InvalidOperationException($"Service {s.Name} does not set {required}; every node service must, so that each runs alike in compose and locally.");
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (key, value) in s.Environment)
            {
                env[key] = key switch
                {
                    "TRENV_HOSTNAME" or "TRENV_HTTP_HOST" or "TRENV_POOL_GRPC_HOST" when value == "0.0.0.0" => address,
                    "TRENV_PUBLIC_HOSTNAME" => addresses.TryGetValue(value, out var a) ? a.Address : value,
                    "TRENV_PORT" or "TRENV_HTTP_PORT" or "TRENV_POOL_GRPC_PORT" => ports.GetValueOrDefault((s.Name, value), value),
                    "TRENV_DATA_DIR" or "TRENV_POOL_PATH" or "TRENV_COMPILE_CACHE_DIR" => LocalPath(s, value, volumes, o),
                    "TRENV_SANDBOX_HOST" => Path.Combine(o.RepoRoot, "artifacts", "sandbox-host"),
                    "TRENV_DB" => o.PostgresConnection,
                    _ => References().Replace(value, m =>
                    {
                        var target = m.Groups["svc"].Value;
                        var port = m.Groups["port"].Value;
                        if (target == postgres)
                            return m.Value;
                        return addresses.TryGetValue(target, out var a) ? $"{a.Address}:{ports.GetValueOrDefault((target, port), port)}" : m.Value;
                    }),
                };
            }
            var dll = kinds[s.Name] switch
            {
                NodeKind.Coordinator => "coordinator/TrEnv.Coordinator/bin/{0}/net10.0/trenv-coordinator.dll",
                NodeKind.Worker => "worker/TrEnv.Worker/bin/{0}/net10.0/trenv-worker.dll",
                _ => "memory-pool/TrEnv.MemoryPool.Node/bin/{0}/net10.0/trenv-memory-pool.dll",
            };
            nodes.Add(new LocalNode(s.Name, kinds[s.Name], address, ns, index, env,
                Path.Combine(o.RepoRoot, string.Format(System.Globalization.CultureInfo.InvariantCulture, dll, o.Configuration))));
        }
        return nodes;
    }

    /// <summary>The environment keys that hold a port the node listens on.</summary>
    public static readonly string[] PortKeys = ["TRENV_PORT", "TRENV_HTTP_PORT", "TRENV_POOL_GRPC_PORT"];

    /// <summary>Keys whose values the local topology rewrites; every other key passes through unchanged.</summary>
    public static readonly string[] RewrittenKeys =
        ["TRENV_HOSTNAME", "TRENV_HTTP_HOST", "TRENV_POOL_GRPC_HOST", "TRENV_PUBLIC_HOSTNAME", "TRENV_PORT", "TRENV_HTTP_PORT",
         "TRENV_POOL_GRPC_PORT", "TRENV_DATA_DIR", "TRENV_POOL_PATH", "TRENV_COMPILE_CACHE_DIR", "TRENV_SANDBOX_HOST", "TRENV_DB", "TRENV_SEEDS", "TRENV_POOL_URL"];

    private static string LocalPath(ComposeService s, string containerPath, Dictionary<string, string> volumes, LocalTopologyOptions o)
    {
        foreach (var (volume, target) in s.NamedMounts.OrderByDescending(m => m.Target.Length))
        {
            if (containerPath == target || containerPath.StartsWith(target.TrimEnd('/') + "/", StringComparison.Ordinal))
                return volumes.TryGetValue(volume, out var dir)
                    ? dir + containerPath[target.TrimEnd('/').Length..]
                    : throw new InvalidOperationException($"Service {s.Name} mounts volume {volume}, which the file does not declare.");
        }
        // The container's own filesystem: kept across restarts, as docker keeps a restarted container's.
        return Path.Combine(o.RunDirectory, "nodes", s.Name, "fs") + containerPath;
    }

    [GeneratedRegex("(?<svc>[A-Za-z0-9][A-Za-z0-9_.-]*):(?<port>[0-9]{1,5})")]
    private static partial Regex References();
}
