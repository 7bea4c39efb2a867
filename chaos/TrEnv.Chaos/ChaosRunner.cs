using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;

namespace TrEnv.Chaos;

/// <summary>A deploy as the client saw it; acknowledged when the coordinator answered 201.</summary>
public sealed record DeployRecord(string Name, ulong Salt, DateTimeOffset Start, DateTimeOffset End, bool Acknowledged, int Status, int Version, string? Sha256, string? Error);

/// <summary>
/// Starts the compose topology as local processes, keeps checked invocations and deploys flowing through every
/// coordinator, applies one fault per round, and checks the invariants: no acknowledged deploy or template lost,
/// no wrong answer, failures only on the faulted node (5xx, never hung), recovery time, true membership.
/// </summary>
public sealed class ChaosRunner(ChaosOptions o, Action<string> log)
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

    private async Task<RoundSummary> RoundAsync(int round, Network network, CancellationToken ct)
    {
        var roundStart = DateTimeOffset.UtcNow;
        var exitsBefore = _nodes.ToDictionary(n => n, n => n.UnplannedExits.Count);
        var deploysBefore = _deploys.Count;
        await Task.Delay(TimeSpan.FromSeconds(o.SettleSeconds), ct);

        var kind = o.RoundFaults[(round - 1) % o.RoundFaults.Count];
        var partition = kind == "partition";
        var split = kind == "split-workers";
        var target = partition ? PickPartitionTarget() : split ? null : PickKillTarget(round, allowLast: kind is "pause" or "restart");
        var fault = kind switch
        {
            "kill" => "kill-" + KindName(target!.Node.Kind),
            "partition" or "split-workers" => kind,
            _ => $"{kind}-{KindName(target!.Node.Kind)}",
        };
        var at = DateTimeOffset.UtcNow;
        log($"round {round}: {fault} {target?.Node.Service ?? "workers"}{kind switch
        {
            "kill" => $" with SIG{(o.Signal == 9 ? "KILL" : "TERM")}",
            "partition" => $" for {o.PartitionSeconds:0.#} s",
            "restart" => "",
            _ => $" for {o.HoldSeconds:0.#} s",
        }}");
        var restarted = false;
        double? back = null;
        if (partition)
        {
            network.SetConnected(target!.Node, false);
            await Task.Delay(TimeSpan.FromSeconds(o.PartitionSeconds), ct);
            network.SetConnected(target.Node, true);
            back = await WaitHealthyAsync(target, at, ct);
        }
        else if (split)
        {
            await _docker!.SplitWorkersAsync(true);
            await Task.Delay(TimeSpan.FromSeconds(o.HoldSeconds), ct);
            await _docker.SplitWorkersAsync(false);
        }
        else if (kind is "pause" or "disconnect")
        {
            var container = (ContainerNode)target!;
            await (kind == "pause" ? container.PauseAsync() : container.DisconnectAsync());
            await Task.Delay(TimeSpan.FromSeconds(o.HoldSeconds), ct);
            await (kind == "pause" ? container.UnpauseAsync() : container.ConnectAsync());
            back = await WaitHealthyAsync(container, at, ct);
        }
        else if (kind == "restart")
        {
            var container = (ContainerNode)target!;
            await container.RestartAsync();
            if (container.Node.Kind == NodeKind.Coordinator)
                _coordinators.MarkDown(container.Node.HttpUrl!);
            restarted = true;
            back = await WaitHealthyAsync(container, at, ct);
        }
        else
        {
            var killed = target!;
            await killed.SignalAsync(o.Signal, TimeSpan.FromSeconds(30));
            if (killed.Node.Kind == NodeKind.Coordinator)
                _coordinators.MarkDown(killed.Node.HttpUrl!);
            if (o.Restart)
            {
                await Task.Delay(TimeSpan.FromSeconds(o.RestartDelaySeconds), ct);
                killed.Start();
                restarted = true;
                back = await WaitHealthyAsync(killed, at, ct);
            }
        }
        var observeUntil = at + TimeSpan.FromSeconds(o.ObserveSeconds);
        if (DateTimeOffset.UtcNow < observeUntil)
            await Task.Delay(observeUntil - DateTimeOffset.UtcNow, ct);

        var violations = new List<string>();
        var (converged, membershipProblem) = await ConvergeAsync(at, TimeSpan.FromSeconds(60), ct);
        if (membershipProblem is not null)
            violations.Add(membershipProblem);
        // The round ends after two quiet seconds, so a slow recovery is measured whole.
        var quietDeadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(30);
        while (DateTimeOffset.UtcNow < quietDeadline && _load.Records.Any(r => r.Outcome != "ok" && r.End > DateTimeOffset.UtcNow - TimeSpan.FromSeconds(2)))
            await Task.Delay(250, ct);

        violations.AddRange(await CheckDeploysAsync(ct));
        violations.AddRange(await CheckTemplatesAsync(ct));
        var roundEnd = DateTimeOffset.UtcNow;

        var records = _load.Records.Where(r => r.End >= roundStart && r.End < roundEnd).ToList();
        var failed = records.Where(r => r.Outcome != "ok").ToList();
        var faultedUrl = target?.Node.HttpUrl;
        var unexpected = 0;
        foreach (var r in failed)
        {
            // Workers cut off from each other are all alive: no request may fail then.
            var onTarget = target is not null && (r.Node == target.Node.NodeName || (faultedUrl is not null && r.Endpoint == faultedUrl));
            var allowed = r.Outcome is "error" or "connection" && (r.Status == 0 || r.Status >= 500) && onTarget && r.End >= at - TimeSpan.FromSeconds(0.5);
            if (r.Outcome == "wrong")
                violations.Add($"wrong answer from {r.Node} via {r.Endpoint}: {r.Detail}");
            else if (r.Outcome == "hung")
                violations.Add($"request to {r.Function} via {r.Endpoint} hung {r.Seconds:0.0} s (deadline {o.RequestDeadlineSeconds} s): {r.Detail}");
            else if (!allowed && unexpected++ < 10)
                violations.Add($"failure not on the faulted node: {r.Function} via {r.Endpoint} on {r.Node ?? "?"} at +{(r.End - at).TotalSeconds:0.00} s: {r.Outcome} {r.Status} {r.Detail}");
        }
        if (unexpected > 10)
            violations.Add($"... and {unexpected - 10} more failures not on the faulted node");
        var ok = records.Where(r => r.Outcome == "ok").Select(r => r.Seconds * 1000).Order().ToList();
        // A service that answers nothing fails no request, so a stalled load is a violation of its own.
        if (ok.Count < 10)
            violations.Add($"the load stalled: {ok.Count} invocations completed in the round");
        var recovery = failed.Where(r => r.End >= at).Select(r => (r.End - at).TotalSeconds).DefaultIfEmpty(0).Max();
        // The last failed request by when it started: every request started later than the bound after the fault must succeed.
        var lastFailedStart = failed.Where(r => r.End >= at).Select(r => (r.Start - at).TotalSeconds).DefaultIfEmpty(0).Max();
        var measured = o.Engine == "docker" ? lastFailedStart : recovery;
        if (measured > o.RecoveryBoundSeconds)
            violations.Add(o.Engine == "docker"
                ? $"a request started {lastFailedStart:0.00} s after the fault failed, over the {o.RecoveryBoundSeconds} s bound"
                : $"recovery took {recovery:0.00} s, over the {o.RecoveryBoundSeconds} s bound");

        var exits = new List<string>();
        foreach (var n in _nodes)
        {
            foreach (var e in n.UnplannedExits.Skip(exitsBefore[n]))
            {
                exits.Add($"{n.Node.Service}: {e}");
                // A partitioned worker that downed itself as the minority and was restarted is the resolver working.
                if (!(kind is "partition" or "disconnect" && n == target))
                    violations.Add($"{n.Node.Service} exited by itself: {e}");
            }
        }
        var deploys = _deploys.Skip(deploysBefore).ToList();
        return new RoundSummary
        {
            Round = round,
            Fault = fault,
            Target = target?.Node.Service ?? "workers",
            Signal = kind == "kill" ? o.Signal == 9 ? "KILL" : "TERM" : null,
            Restarted = restarted,
            At = at,
            RecoverySeconds = Math.Round(recovery, 3),
            LastFailedStartSeconds = Math.Round(lastFailedStart, 3),
            Succeeded = records.Count - failed.Count,
            Failed = failed.Count,
            Rerouted = records.Sum(r => r.Reroutes),
            OkLatencyMs = ok.Count == 0 ? [] : [Math.Round(Percentile(ok, 0.50), 2), Math.Round(Percentile(ok, 0.99), 2), Math.Round(ok[^1], 2)],
            FailedBy = failed.GroupBy(r => r.Status == 0 ? r.Outcome : $"{r.Outcome} {r.Status}").ToDictionary(g => g.Key, g => g.Count()),
            MaxFailedRequestSeconds = Math.Round(failed.Select(r => r.Seconds).DefaultIfEmpty(0).Max(), 3),
            FailureSamples = failed.GroupBy(r => (r.Outcome, r.Status, r.Node, r.Endpoint)).Select(g => g.First())
                .Select(r => $"+{(r.End - at).TotalSeconds:0.000} s {r.Function} via {r.Endpoint} on {r.Node ?? "?"}: {r.Outcome} {r.Status} {r.Detail}").Take(8).ToList(),
            NodeBackSeconds = back is { } b ? Math.Round(b, 2) : null,
            MembershipConvergedSeconds = converged is { } c ? Math.Round(c, 2) : null,
            DeploysAcknowledged = deploys.Count(d => d.Acknowledged),
            DeploysFailed = deploys.Count(d => !d.Acknowledged),
            DeployFailures = deploys.Where(d => !d.Acknowledged).Take(5).Select(d => $"{d.Name} after {(d.End - d.Start).TotalSeconds:0.0} s: {d.Status} {d.Error}").ToList(),
            MaxDeploySeconds = Math.Round(deploys.Select(d => (d.End - d.Start).TotalSeconds).DefaultIfEmpty(0).Max(), 3),
            TemplatesKnown = _templates.Count,
            UnplannedExits = exits,
            Violations = violations,
        };
    }

    private IChaosNode PickKillTarget(int round, bool allowLast = false)
    {
        var kind = o.Kill[(round - 1) % o.Kill.Count];
        var kinds = kind == "random" ? new[] { "worker", "coordinator", "pool" }.OrderBy(_ => _random.Next()).ToArray() : [kind, "worker", "coordinator", "pool"];
        foreach (var k in kinds)
        {
            var wanted = k switch { "worker" => NodeKind.Worker, "coordinator" => NodeKind.Coordinator, _ => NodeKind.MemoryPool };
            var running = _nodes.Where(n => n.Node.Kind == wanted && n.Running).ToList();
            // Without restarts, never take the last coordinator or worker: nothing could answer any more.
            if (running.Count == 0 || (!o.Restart && !allowLast && wanted != NodeKind.MemoryPool && running.Count < 2))
                continue;
            return running[_random.Next(running.Count)];
        }
        throw new InvalidOperationException("No node is left to kill.");
    }

    private IChaosNode PickPartitionTarget()
    {
        var workers = _nodes.Where(n => n.Node.Kind == NodeKind.Worker && n.Running && n.Node.Namespace is not null).ToList();
        return workers.Count > 0 ? workers[_random.Next(workers.Count)] : throw new InvalidOperationException("No worker in a network namespace is running to partition.");
    }

    private static string KindName(NodeKind k) => k switch { NodeKind.Coordinator => "coordinator", NodeKind.Worker => "worker", _ => "pool" };

    private async Task StartAllAsync(CancellationToken ct)
    {
        var services = _compose.Services.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var healthy = new HashSet<string>(_compose.Services.Where(s => _nodes.All(n => n.Node.Service != s.Name)).Select(s => s.Name), StringComparer.Ordinal);
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(240);
        while (healthy.Count < services.Count(s => healthy.Contains(s.Key) || _nodes.Any(n => n.Node.Service == s.Key)))
        {
            foreach (var n in _nodes.Where(n => n.Starts == 0))
            {
                var deps = services[n.Node.Service].DependsOn;
                if (deps.All(d => healthy.Contains(d.Key) || (d.Value != "service_healthy" && _nodes.Any(x => x.Node.Service == d.Key && x.Starts > 0))))
                {
                    log($"starting {n.Node.Service}");
                    n.Start();
                }
            }
            foreach (var n in _nodes.Where(n => n.Starts > 0 && !healthy.Contains(n.Node.Service)))
            {
                if (await HealthyAsync(n))
                {
                    healthy.Add(n.Node.Service);
                    log($"{n.Node.Service} healthy");
                }
            }
            if (DateTimeOffset.UtcNow > deadline)
                throw new TimeoutException("Nodes not healthy within 240 s: " + string.Join(", ", _nodes.Where(n => !healthy.Contains(n.Node.Service)).Select(n => n.Node.Service)) + "; see their logs.");
            await Task.Delay(250, ct);
        }
    }

    /// <summary>Until every container is healthy as the engine and the coordinators' /readyz see it.</summary>
    private async Task WaitAllHealthyAsync(CancellationToken ct)
    {
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(240);
        var healthy = new HashSet<IChaosNode>();
        while (healthy.Count < _nodes.Count)
        {
            foreach (var n in _nodes.Where(n => !healthy.Contains(n)))
                if (await HealthyAsync(n))
                {
                    healthy.Add(n);
                    log($"{n.Node.Service} healthy");
                }
            if (DateTimeOffset.UtcNow > deadline)
                throw new TimeoutException("Containers not healthy within 240 s: " + string.Join(", ", _nodes.Where(n => !healthy.Contains(n)).Select(n => n.Node.Service)) + "; see docker logs.");
            await Task.Delay(250, ct);
        }
    }

    private async Task StopAllAsync()
    {
        foreach (var kind in new[] { NodeKind.Worker, NodeKind.Coordinator, NodeKind.MemoryPool })
            await Task.WhenAll(_nodes.Where(n => n.Node.Kind == kind).Select(n => n.SignalAsync(15, TimeSpan.FromSeconds(20))));
    }

    /// <summary>The compose health checks, run locally: /readyz, the pool's /healthz over HTTP/2, the worker's fresh health file.</summary>
    private async Task<bool> HealthyAsync(IChaosNode n)
    {
        if (!n.Running)
            return false;
        if (n is ContainerNode c && n.Node.Kind != NodeKind.Coordinator)
            return await c.HealthyAsync();
        try
        {
            using var t = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            switch (n.Node.Kind)
            {
                case NodeKind.Coordinator:
                    using (var r = await _http.GetAsync(n.Node.HttpUrl + "/readyz", t.Token))
                        return r.IsSuccessStatusCode;
                case NodeKind.MemoryPool when n.Node.PoolHealthUrl is { } url:
                    using (var request = new HttpRequestMessage(HttpMethod.Get, url) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact })
                    using (var r = await _http.SendAsync(request, t.Token))
                        return r.IsSuccessStatusCode;
                case NodeKind.Worker:
                    var file = new FileInfo(Path.Combine(n.Node.DataDirectory, "healthy"));
                    return file.Exists && file.LastWriteTimeUtc > n.StartedAt.UtcDateTime && DateTime.UtcNow - file.LastWriteTimeUtc < TimeSpan.FromSeconds(5);
                default:
                    using (var s = new Socket(SocketType.Stream, ProtocolType.Tcp))
                    {
                        await s.ConnectAsync(n.Node.Address, n.Node.AkkaPort, t.Token);
                        return true;
                    }
            }
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or SocketException or IOException)
        {
            return false;
        }
    }

    private async Task<double> WaitHealthyAsync(IChaosNode n, DateTimeOffset since, CancellationToken ct)
    {
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(120);
        while (!await HealthyAsync(n))
        {
            if (DateTimeOffset.UtcNow > deadline)
                throw new TimeoutException($"{n.Node.Service} did not become healthy within 120 s; see {n.Node.Service}.log.");
            await Task.Delay(100, ct);
        }
        return (DateTimeOffset.UtcNow - since).TotalSeconds;
    }

    /// <summary>Until every live coordinator's /v1/cluster lists exactly the running nodes, all up, and exactly the running workers.</summary>
    private async Task<(double? Seconds, string? Problem)> ConvergeAsync(DateTimeOffset since, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = DateTimeOffset.UtcNow + timeout;
        string last = "";
        while (true)
        {
            var running = _nodes.Where(n => n.Running).ToList();
            var expected = running.Select(n => n.Node.AkkaAddress).Order(StringComparer.Ordinal).ToList();
            var expectedWorkers = running.Where(n => n.Node.Kind == NodeKind.Worker).Select(n => n.Node.NodeName).Order(StringComparer.Ordinal).ToList();
            var agree = true;
            foreach (var c in running.Where(n => n.Node.Kind == NodeKind.Coordinator))
            {
                try
                {
                    using var t = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    using var doc = JsonDocument.Parse(await _http.GetStringAsync(c.Node.HttpUrl + "/v1/cluster", t.Token));
                    var nodes = doc.RootElement.GetProperty("nodes").EnumerateArray()
                        .Select(e => (Address: e.GetProperty("address").GetString()!, Status: e.GetProperty("status").GetString()!)).ToList();
                    var workers = doc.RootElement.GetProperty("workers").EnumerateArray().Select(e => e.GetProperty("node").GetString()!).Order(StringComparer.Ordinal).ToList();
                    var up = nodes.Where(x => x.Status == "up").Select(x => x.Address).Order(StringComparer.Ordinal).ToList();
                    if (!up.SequenceEqual(expected) || nodes.Count != up.Count || !workers.SequenceEqual(expectedWorkers))
                    {
                        agree = false;
                        last = $"{c.Node.Service} shows nodes [{string.Join(", ", nodes.Select(x => $"{x.Address} {x.Status}"))}] and workers [{string.Join(", ", workers)}]; " +
                               $"running are [{string.Join(", ", expected)}] and workers [{string.Join(", ", expectedWorkers)}]";
                    }
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException or KeyNotFoundException)
                {
                    agree = false;
                    last = $"{c.Node.Service} /v1/cluster: {e.Message}";
                }
            }
            if (agree)
                return ((DateTimeOffset.UtcNow - since).TotalSeconds, null);
            if (DateTimeOffset.UtcNow > deadline)
                return (null, $"membership did not converge within {timeout.TotalSeconds:0} s: {last}");
            await Task.Delay(200, ct);
        }
    }

    private async Task DeployLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(o.DeployEverySeconds), stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var d = await DeployAsync(CancellationToken.None);
            if (d.Acknowledged)
                _load.Add(new ChaosFunction(d.Name, d.Salt));
        }
    }

    /// <summary>Deploys the chaos guest under a new name and salt; a refused connection goes to the other coordinator.</summary>
    private async Task<DeployRecord> DeployAsync(CancellationToken ct)
    {
        var name = $"chaos-{Interlocked.Increment(ref _deployed)}";
        var salt = (ulong)_random.NextInt64(1, long.MaxValue);
        var start = DateTimeOffset.UtcNow;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(o.RequestDeadlineSeconds));
        DeployRecord record;
        while (true)
        {
            var endpoint = _coordinators.Pick();
            if (endpoint is null)
            {
                record = new DeployRecord(name, salt, start, DateTimeOffset.UtcNow, false, 0, 0, null, "no coordinator accepted connections");
                break;
            }
            try
            {
                using var content = new ByteArrayContent(_module);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
                using var r = await _http.PutAsync($"{endpoint}/v1/functions/{name}?timeoutMs=10000&memoryMb=64&env.SALT={salt}", content, timeout.Token);
                var body = await r.Content.ReadAsStringAsync(timeout.Token);
                if (r.StatusCode == HttpStatusCode.Created)
                {
                    using var doc = JsonDocument.Parse(body);
                    record = new DeployRecord(name, salt, start, DateTimeOffset.UtcNow, true, 201, doc.RootElement.GetProperty("version").GetInt32(), doc.RootElement.GetProperty("sha256").GetString(), null);
                }
                else
                {
                    record = new DeployRecord(name, salt, start, DateTimeOffset.UtcNow, false, (int)r.StatusCode, 0, null, body.Length > 300 ? body[..300] : body);
                }
                break;
            }
            catch (HttpRequestException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
            {
                _coordinators.MarkDown(endpoint);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException)
            {
                record = new DeployRecord(name, salt, start, DateTimeOffset.UtcNow, false, 0, 0, null, e.Message);
                break;
            }
        }
        _deploys.Enqueue(record);
        return record;
    }

    /// <summary>Every acknowledged deploy is still there, with its version and bytes, as the function entity (the journal) says.</summary>
    private async Task<List<string>> CheckDeploysAsync(CancellationToken ct)
    {
        var problems = new ConcurrentBag<string>();
        using var gate = new SemaphoreSlim(8);
        await Task.WhenAll(_deploys.Where(d => d.Acknowledged).Select(async d =>
        {
            await gate.WaitAsync(ct);
            try
            {
                var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(20);
                string last = "";
                var notFound = 0;
                while (DateTimeOffset.UtcNow < deadline)
                {
                    var endpoint = _coordinators.Pick();
                    if (endpoint is not null)
                    {
                        try
                        {
                            using var t = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                            using var r = await _http.GetAsync($"{endpoint}/v1/functions/{d.Name}", t.Token);
                            var body = await r.Content.ReadAsStringAsync(t.Token);
                            if (r.StatusCode == HttpStatusCode.OK)
                            {
                                using var doc = JsonDocument.Parse(body);
                                var found = doc.RootElement.GetProperty("versions").EnumerateArray()
                                    .Any(v => v.GetProperty("version").GetInt32() == d.Version && v.GetProperty("sha256").GetString() == d.Sha256);
                                if (!found)
                                    problems.Add($"lost deploy: {d.Name} version {d.Version} ({d.Sha256}) is not among its versions: {body}");
                                return;
                            }
                            last = $"{(int)r.StatusCode} {body}";
                            if (r.StatusCode == HttpStatusCode.NotFound && ++notFound >= 2)
                                break;
                        }
                        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
                        {
                            last = e.Message;
                        }
                    }
                    await Task.Delay(500, ct);
                }
                problems.Add($"lost deploy: {d.Name} (acknowledged at {d.End:HH:mm:ss.fff}) cannot be read: {last}");
            }
            finally
            {
                gate.Release();
            }
        }));
        return problems.ToList();
    }

    /// <summary>Every template any coordinator has listed is still listed by every live coordinator, in the same region.</summary>
    private async Task<List<string>> CheckTemplatesAsync(CancellationToken ct)
    {
        var problems = new List<string>();
        foreach (var c in _nodes.Where(n => n.Node.Kind == NodeKind.Coordinator && n.Running))
        {
            var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(15);
            while (true)
            {
                string? problem = null;
                try
                {
                    using var t = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    using var doc = JsonDocument.Parse(await _http.GetStringAsync(c.Node.HttpUrl + "/v1/templates", t.Token));
                    var listed = doc.RootElement.GetProperty("templates").EnumerateArray().ToDictionary(
                        e => e.GetProperty("id").GetString()!,
                        e => (Function: e.GetProperty("function").GetString()!, Version: e.GetProperty("version").GetInt32(), Offset: e.GetProperty("regions")[0].GetProperty("offset").GetInt64()),
                        StringComparer.Ordinal);
                    var missing = _templates.Where(kv => !listed.ContainsKey(kv.Key)).Select(kv => kv.Key).ToList();
                    var moved = _templates.Where(kv => listed.TryGetValue(kv.Key, out var l) && l.Offset != kv.Value.Offset).Select(kv => kv.Key).ToList();
                    foreach (var (id, t2) in listed)
                        _templates.TryAdd(id, t2);
                    if (moved.Count > 0)
                        problems.Add($"templates changed region on {c.Node.Service}: {string.Join(", ", moved)}");
                    if (missing.Count > 0)
                        problem = $"lost templates on {c.Node.Service}: {string.Join(", ", missing)}";
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException or KeyNotFoundException or IOException)
                {
                    problem = $"{c.Node.Service} /v1/templates: {e.Message}";
                }
                if (problem is null)
                    break;
                if (DateTimeOffset.UtcNow > deadline)
                {
                    problems.Add(problem);
                    break;
                }
                await Task.Delay(500, ct);
            }
        }
        return problems;
    }

    /// <summary>After the load: every acknowledged function answers right through every live coordinator.</summary>
    private async Task<List<string>> FinalChecksAsync()
    {
        var problems = new List<string>();
        foreach (var d in _deploys.Where(d => d.Acknowledged))
        {
            foreach (var c in _coordinators.Up)
            {
                var r = await _load.InvokeAsync(new ChaosFunction(d.Name, d.Salt), $"final-{d.Name}", c);
                if (r.Outcome != "ok")
                    problems.Add($"final check: {d.Name} via {c}: {r.Outcome} {r.Status} {r.Detail}");
            }
        }
        return problems;
    }

    private ChaosSummary Summarise(DateTimeOffset started, IReadOnlyList<string> profiles, List<RoundSummary> rounds, List<string> final)
    {
        var records = _load.Records.ToList();
        var violations = rounds.SelectMany(r => r.Violations.Select(v => $"round {r.Round}: {v}")).Concat(final).ToList();
        return new ChaosSummary
        {
            Started = started,
            Ended = DateTimeOffset.UtcNow,
            Command = o.Command,
            Profile = string.Join(',', profiles),
            Engine = o.Engine,
            NetworkNamespaces = _nodes.Any(n => n.Node.Namespace is not null),
            RecoveryBoundSeconds = o.RecoveryBoundSeconds,
            Nodes = _nodes.Select(n => (object)new { service = n.Node.Service, kind = KindName(n.Node.Kind), address = n.Node.AkkaAddress, http = n.Node.HttpUrl, netns = n.Node.Namespace, container = (n as ContainerNode)?.Container, starts = n.Starts }).ToList(),
            Rounds = rounds,
            Requests = records.Count,
            Succeeded = records.Count(r => r.Outcome == "ok"),
            Failed = records.Count(r => r.Outcome != "ok"),
            WrongAnswers = records.Count(r => r.Outcome == "wrong") + final.Count(f => f.Contains(" wrong ", StringComparison.Ordinal)),
            Hung = records.Count(r => r.Outcome == "hung"),
            DeploysAcknowledged = _deploys.Count(d => d.Acknowledged),
            LostDeploys = violations.Count(v => v.Contains("lost deploy", StringComparison.Ordinal)),
            TemplatesSeen = _templates.Count,
            LostTemplates = violations.Count(v => v.Contains("lost templates", StringComparison.Ordinal)),
            MaxRecoverySeconds = rounds.Select(r => r.RecoverySeconds).DefaultIfEmpty(0).Max(),
            MaxLastFailedStartSeconds = rounds.Select(r => r.LastFailedStartSeconds).DefaultIfEmpty(0).Max(),
            RoundsOverBound = rounds.Count(r => (o.Engine == "docker" ? r.LastFailedStartSeconds : r.RecoverySeconds) > o.RecoveryBoundSeconds),
            Violations = violations,
            Ok = violations.Count == 0,
        };
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

    public static string ToJson(ChaosSummary s)
        => JsonSerializer.Serialize(s, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase, DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull });

    private static double Percentile(List<double> sorted, double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Floor(q * sorted.Count))];

    public static string Seconds(double s) => s.ToString("0.00", CultureInfo.InvariantCulture);
}
