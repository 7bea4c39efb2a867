using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;

namespace TrEnv.Chaos;

/// <summary>Invariant checks against the coordinators: true membership, no lost deploy or template, right answers after the load.</summary>
public sealed partial class ChaosRunner
{
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
}
