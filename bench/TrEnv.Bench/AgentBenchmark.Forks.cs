using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TrEnv.Bench;

// Forks, checkpoints, /tmp files across a resume, and the Python interpreter's cells, through HTTP.
internal static partial class AgentBenchmark
{
    private sealed record ForkAnswer(string Parent, string[] Sessions, double ParentBlockedMs, double ForkMs);

    // Rows of the analyst's synthetic dataset that make about 1 MiB and 16 MiB of CSV under /tmp.
    private static readonly (string Key, int Rows)[] FileLayers = [("resume_files_1mib", 70_700), ("resume_files_16mib", 1_131_000)];

    private static async Task<IEnumerable<KeyValuePair<string, JsonNode?>>> ForksAndFilesAsync(HttpClient http, string function, int samples)
    {
        var workers = JsonNode.Parse(await http.GetStringAsync("/v1/cluster"))!["workers"]!.AsArray().Select(w => (string)w!["node"]!).ToList();
        var blocked = new List<double>();
        var same = new List<double>();
        var other = new List<double>();
        var sixteen = new List<double>();
        var checkpoints = new List<double>();
        for (var i = 0; i < samples; i++)
        {
            var rng = new Random(500 + i);
            var parent = await Create(http, function);
            await Call(http, parent.Id, "load t " + string.Join(',', Enumerable.Range(0, 300).Select(_ => rng.Next(10_000))));
            await Call(http, parent.Id, "let x (2 + 3) * 7");
            var (checkpointMs, _) = await Timed(() => Post(http, parent.Id, "checkpoint"));
            checkpoints.Add(checkpointMs);
            await Call(http, parent.Id, "append t 42");
            var home = parent.Node!;
            var away = workers.First(w => w != home);
            foreach (var (node, into) in new[] { (home, same), (away, other) })
            {
                // From the fork's request to the child's first answer, on the parent's worker or another one.
                var started = Stopwatch.GetTimestamp();
                var fork = await ForkOf(http, parent.Id, 1);
                await Post(http, fork.Sessions[0], $"resume?node={node}");
                await Call(http, fork.Sessions[0], "tables");
                into.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                blocked.Add(fork.ParentBlockedMs);
                await Delete(http, fork.Sessions[0]);
            }
            {
                // 16 children, each resumed by its first call wherever placement puts it, all answered.
                var started = Stopwatch.GetTimestamp();
                var fork = await ForkOf(http, parent.Id, 16);
                await Task.WhenAll(fork.Sessions.Select(c => Call(http, c, "vars")));
                sixteen.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                blocked.Add(fork.ParentBlockedMs);
                foreach (var c in fork.Sessions)
                    await Delete(http, c);
            }
            await Delete(http, parent.Id);
        }
        var results = new List<KeyValuePair<string, JsonNode?>>
        {
            new("fork_parent_blocked", Stats.Summary(blocked)),
            new("fork_child_first_same_worker", Stats.Summary(same)),
            new("fork_child_first_other_worker", Stats.Summary(other)),
            new("fork16_all_answered", Stats.Summary(sixteen)),
            new("checkpoint", Stats.Summary(checkpoints)),
        };
        foreach (var (key, rows) in FileLayers)
        {
            // A session with a dataset under /tmp: paused, then resumed on the other worker each time (timed).
            var s = await Create(http, function);
            await Call(http, s.Id, $"synth d {rows}");
            var resumes = new List<double>();
            long filesBytes = 0;
            for (var i = 0; i < samples * 2; i++)
            {
                var at = (await Get(http, s.Id)).Node!;
                var paused = await PostRaw(http, s.Id, "pause");
                filesBytes = paused["storedFilesBytes"]!.GetValue<long>();
                var (ms, _) = await Timed(() => Post(http, s.Id, $"resume?node={workers.First(w => w != at)}"));
                resumes.Add(ms);
            }
            var sizes = JsonNode.Parse(await Call(http, s.Id, "files"))!["d.csv"]!.GetValue<long>();
            await Delete(http, s.Id);
            var summary = Stats.Summary(resumes);
            summary["file_bytes"] = sizes;
            summary["stored_files_bytes"] = filesBytes;
            results.Add(new(key, summary));
        }
        Console.WriteLine($"python  fork: parent blocked p50 {Stats.Percentile(blocked, 50):F2} ms, child's first answer p50 {Stats.Percentile(same, 50):F2} ms (same worker) "
            + $"{Stats.Percentile(other, 50):F2} ms (other), 16 children all answered p50 {Stats.Percentile(sixteen, 50):F1} ms; checkpoint p50 {Stats.Percentile(checkpoints, 50):F2} ms");
        return results;
    }

    // The Python interpreter session: a cell's round trip, and a resume (on the other worker) after a pause.
    private static async Task<JsonObject> InterpreterAsync(HttpClient http, int samples)
    {
        var workers = JsonNode.Parse(await http.GetStringAsync("/v1/cluster"))!["workers"]!.AsArray().Select(w => (string)w!["node"]!).ToList();
        // Unmeasured: the first interpreter session deploys the platform's interpreter and captures its template.
        var warm = await Read(await http.PostAsJsonAsync("/v1/sessions", new { runtime = "python", idleTimeoutS = 0 }), "create");
        await Call(http, warm.Id, "1");
        await Delete(http, warm.Id);
        var s = await Read(await http.PostAsJsonAsync("/v1/sessions", new { runtime = "python", idleTimeoutS = 0 }), "create");
        await Call(http, s.Id, "import statistics\nrows = []\ndef add(v):\n    rows.append(v)\n    return statistics.fmean(rows)");
        var cells = new List<double>();
        var resumes = new List<double>();
        for (var i = 0; i < samples; i++)
        {
            var (ms, answer) = await Timed(() => Call(http, s.Id, $"add({i})"));
            if (JsonNode.Parse(answer)!["error"] is JsonObject error)
                throw new InvalidOperationException($"The interpreter cell failed: {error.ToJsonString()}");
            cells.Add(ms);
        }
        for (var i = 0; i < samples; i++)
        {
            var at = (await Get(http, s.Id)).Node!;
            await Post(http, s.Id, "pause");
            var (ms, _) = await Timed(() => Post(http, s.Id, $"resume?node={workers.First(w => w != at)}"));
            resumes.Add(ms);
            await Call(http, s.Id, $"add({i})");
        }
        await Delete(http, s.Id);
        Console.WriteLine($"interpreter cell p50 {Stats.Percentile(cells, 50):F2} ms p99 {Stats.Percentile(cells, 99):F2}; resume p50 {Stats.Percentile(resumes, 50):F2} ms p99 {Stats.Percentile(resumes, 99):F2}");
        return new JsonObject { ["cell"] = Stats.Summary(cells), ["resume"] = Stats.Summary(resumes) };
    }

    private static async Task<ForkAnswer> ForkOf(HttpClient http, string id, int count)
    {
        var r = await http.PostAsJsonAsync($"/v1/sessions/{id}/fork", new { count });
        var body = await r.Content.ReadAsStringAsync();
        if (!r.IsSuccessStatusCode)
            throw new InvalidOperationException($"Forking session {id} answered {(int)r.StatusCode}: {body}");
        return JsonSerializer.Deserialize<ForkAnswer>(body, Web)!;
    }

    private static async Task<JsonNode> PostRaw(HttpClient http, string id, string action)
    {
        var r = await http.PostAsync($"/v1/sessions/{id}/{action}", null);
        var body = await r.Content.ReadAsStringAsync();
        if (!r.IsSuccessStatusCode)
            throw new InvalidOperationException($"Session {action} answered {(int)r.StatusCode}: {body}");
        return JsonNode.Parse(body)!;
    }
}
