namespace TrEnv.Chaos;

/// <summary>One fault round: picking the target, applying the fault, and judging the requests and exits it caused.</summary>
public sealed partial class ChaosRunner
{
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

    private static double Percentile(List<double> sorted, double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Floor(q * sorted.Count))];
}
