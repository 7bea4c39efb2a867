using System.Net;
using System.Net.Sockets;

namespace TrEnv.Chaos;

/// <summary>Node lifecycle: starting in dependency order, health checks, waiting for health, stopping.</summary>
public sealed partial class ChaosRunner
{
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
}
