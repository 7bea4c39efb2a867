using System.Collections.Concurrent;

namespace TrEnv.Chaos;

/// <summary>
/// Starts the compose topology as local processes, keeps checked invocations and deploys flowing through every
/// coordinator, applies one fault per round, and checks the invariants: no acknowledged deploy or template lost,
/// no wrong answer, failures only on the faulted node (5xx, never hung), recovery time, true membership.
/// </summary>
public sealed partial class ChaosRunner(ChaosOptions o, Action<string> log)
{
    private readonly List<IChaosNode> _nodes = [];
    private DockerCluster? _docker;
    private readonly ConcurrentQueue<DeployRecord> _deploys = new();
    private readonly Dictionary<string, (string Function, int Version, long Offset)> _templates = new(StringComparer.Ordinal);
    private readonly Random _random = new(o.Seed);
    private ComposeFile _compose = null!;
    private HttpClient _http = null!;
    private Coordinators _coordinators = null!;
    private LoadDriver _load = null!;
    private byte[] _module = [];
    private int _deployed;

    public static string RepoRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "TrEnv.Cluster.sln")))
                    return dir.FullName;
        throw new InvalidOperationException("Cannot find TrEnv.Cluster.sln above the current directory.");
    }

    public async Task<ChaosSummary> RunAsync(CancellationToken ct = default)
    {
        var started = DateTimeOffset.UtcNow;
        var root = RepoRoot();
        var composePath = o.Compose ?? Path.Combine(root, "compose", "docker-compose.yml");
        _compose = ComposeFile.Load(composePath, o.Set);
        var profiles = o.Profile is { } p ? [p] : _compose.DefaultProfiles;
        var runDir = o.RunDirectory ?? "/tmp/trenv-chaos";
        var shm = Path.Combine("/dev/shm", Path.GetFileName(Path.GetFullPath(runDir).TrimEnd('/')));
        foreach (var d in new[] { runDir, shm })
            if (Directory.Exists(d))
                Directory.Delete(d, true);
        var guest = Path.Combine(root, "guests", "build", "chaos.wasm");
        _module = File.Exists(guest) ? await File.ReadAllBytesAsync(guest, ct) : throw new FileNotFoundException($"{guest} is missing: run guests/build.sh (./chaos.sh does).");

        var docker = o.Engine == "docker";
        var netns = !docker && o.NetworkNamespaces && Network.Available;
        if (o.PartitionSeconds > 0 && !netns)
            throw new InvalidOperationException("--partition needs workers in network namespaces: run as root with iproute2, without --no-netns.");
        IReadOnlyList<LocalNode> topology = [];
        if (!docker)
        {
            log($"PostgreSQL: fresh database {o.Database}");
            var pg = await PostgresAsync(root, o.Database);
            topology = LocalTopology.From(_compose, profiles, new LocalTopologyOptions(root, runDir, shm, netns, o.BasePort, pg));
            foreach (var n in topology)
                if (!File.Exists(n.Dll))
                    throw new FileNotFoundException($"{n.Dll} is missing: build first (scripts/build.sh; ./chaos.sh does).");
            log($"topology from {composePath} (profiles {string.Join(',', profiles)}): " + string.Join(", ", topology.Select(n => $"{n.Service}@{n.Address}:{n.AkkaPort}{(n.Namespace is null ? "" : " netns")}")));
        }

        using var network = Network.Create(topology);
        _http = new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(2), MaxConnectionsPerServer = 256, PooledConnectionLifetime = TimeSpan.FromMinutes(1) })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        try
        {
            if (docker)
            {
                _docker = await DockerCluster.StartAsync(root, _compose, profiles, o, log, ct);
                _nodes.AddRange(_docker.Nodes);
                await WaitAllHealthyAsync(ct);
            }
            else
            {
                foreach (var n in topology)
                    _nodes.Add(new NodeProcess(n, Path.Combine(runDir, "logs"), log));
                await StartAllAsync(ct);
            }
            _coordinators = new Coordinators(_nodes.Where(n => n.Node.Kind == NodeKind.Coordinator).Select(n => n.Node.HttpUrl!));
            _load = new LoadDriver(_http, _coordinators, TimeSpan.FromSeconds(o.RequestDeadlineSeconds));
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var probe = _coordinators.ProbeAsync(_http, stop.Token);

            // Three functions before the load starts, each answered right once through every coordinator.
            for (var i = 0; i < 3; i++)
            {
                var d = await DeployAsync(CancellationToken.None);
                if (!d.Acknowledged)
                    throw new InvalidOperationException($"The initial deploy of {d.Name} failed: {d.Status} {d.Error}");
                foreach (var c in _coordinators.All)
                {
                    var r = await _load.InvokeAsync(new ChaosFunction(d.Name, d.Salt), "warm-up", c);
                    if (r.Outcome != "ok")
                        throw new InvalidOperationException($"The first invocation of {d.Name} through {c} failed: {r.Outcome} {r.Status} {r.Detail}");
                }
                _load.Add(new ChaosFunction(d.Name, d.Salt));
            }
            log($"cluster ready; load of {o.Clients} clients through {string.Join(", ", _coordinators.All)}");
            var load = _load.RunAsync(o.Clients, stop.Token);
            var deployer = o.DeployEverySeconds > 0 ? DeployLoopAsync(stop.Token) : Task.CompletedTask;

            var rounds = new List<RoundSummary>();
            for (var r = 1; r <= o.Rounds; r++)
            {
                var round = await RoundAsync(r, network, ct);
                rounds.Add(round);
                log($"round {r}: {round.Fault} {round.Target}: recovered in {round.RecoverySeconds:0.00} s, {round.Failed} failed, {round.Succeeded} ok " +
                    $"(p99 {(round.OkLatencyMs.Length > 1 ? round.OkLatencyMs[1] : 0):0.0} ms, max {(round.OkLatencyMs.Length > 2 ? round.OkLatencyMs[2] : 0):0} ms), " +
                    $"{round.Rerouted} rerouted, membership {(round.MembershipConvergedSeconds is { } m ? $"{m:0.0} s" : "NOT converged")}, " +
                    $"{round.Violations.Count} violation(s){(round.Violations.Count > 0 ? ": " + string.Join(" | ", round.Violations.Take(3)) : "")}");
            }

            await stop.CancelAsync();
            await load;
            await deployer;
            await probe;
            var final = await FinalChecksAsync();
            return Summarise(started, profiles, rounds, final);
        }
        finally
        {
            if (_docker is not null)
            {
                await _docker.SaveLogsAsync(Path.Combine(runDir, "logs"));
                await _docker.DisposeAsync();
            }
            else
            {
                await StopAllAsync();
                TrEnv.Sandbox.Isolation.Cgroups.RemoveStale();
            }
            _http.Dispose();
        }
    }

    private static async Task<string> PostgresAsync(string root, string database)
    {
        var info = new System.Diagnostics.ProcessStartInfo(Path.Combine(root, "scripts", "postgres.sh")) { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(database);
        using var p = System.Diagnostics.Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"scripts/postgres.sh failed: {await stderr}");
        return (await stdout).Trim().Split('\n')[^1];
    }
}
