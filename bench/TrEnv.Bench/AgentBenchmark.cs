using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TrEnv.Sandbox;

namespace TrEnv.Bench;

/// <summary>
/// A synthetic agent trace against sessions, end to end through a coordinator: many sessions, each a few
/// bursts of back-to-back tool calls separated by idle gaps, paused in every gap and resumed before the next
/// burst, wherever placement puts it. Measured per target (the Python analyst tool and the C heavy guest):
/// every call, every pause and every resume (HTTP round trips), bytes stored per paused session against the
/// instance's linear memory and against the pages it dirtied, and the PSS of N live sessions.
/// </summary>
internal static partial class AgentBenchmark
{
    private sealed record Target(string Key, string Function, string Query, Func<HttpContent> Body, Func<Random, int, string> Call);

    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    private sealed record Session(string Id, string State, string? Node, long StoredBytes, long DirtiedBytes, long TemplateBytes, long MemoryBytes, double? LastResumeMs, double? LastPauseMs);

    public static async Task<int> RunAsync(BenchOptions o, string url)
    {
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(3) };
        var sessions = Math.Max(4, o.Samples);
        const int bursts = 4;
        var parallel = int.Parse(Environment.GetEnvironmentVariable("TRENV_BENCH_AGENTS") ?? "2", CultureInfo.InvariantCulture);
        Console.WriteLine($"cluster: {url}; {sessions} sessions per target, {bursts} bursts each, 3-6 calls per burst, {parallel} agents at a time");

        var analyst = await File.ReadAllTextAsync(Path.Combine(Path.GetDirectoryName(o.Guests)!, "python", "analyst.py"));
        var heavyWasm = await File.ReadAllBytesAsync(Path.Combine(o.Guests, "heavy.wasm"));
        HttpContent Wasm()
        {
            var content = new ByteArrayContent(heavyWasm);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
            return content;
        }

        Target[] targets =
        [
            new("python", "agent-analyst", "runtime=python&", () => new StringContent(analyst), (rng, i) => (i % 5) switch
            {
                0 => $"load t{rng.Next(4)} " + string.Join(',', Enumerable.Range(0, 200 + rng.Next(300)).Select(_ => rng.Next(10_000).ToString(CultureInfo.InvariantCulture))),
                1 => $"append t{rng.Next(4)} {rng.Next(1000)}",
                2 => $"let v{rng.Next(50)} ({rng.Next(100)} + 7) * 3 / 2",
                3 => "tables",
                _ => "vars",
            }),
            new("heavy", "agent-heavy", "", Wasm, (rng, _) => string.Join(' ', Enumerable.Range(0, 8).Select(_ => rng.Next(3_000_000).ToString(CultureInfo.InvariantCulture)))),
        ];

        var result = new JsonObject();
        var pss = new JsonObject();
        foreach (var target in targets)
        {
            // The baseline, in this run: a session of a version never started anywhere runs the function's init
            // (interpreter start-up and imports, or heavy's tables), which is what a platform without templates pays.
            // Unmeasured first: every worker compiles the function's module once (the Python interpreter takes seconds),
            // a cost of the node, not of any start: a session started on one worker and resumed on each other.
            await Deploy(http, $"/v1/functions/{target.Function}-cold?{target.Query}env.SAMPLE=warmup", target.Body());
            var compile = await Create(http, target.Function + "-cold");
            foreach (var node in JsonNode.Parse(await http.GetStringAsync("/v1/cluster"))!["workers"]!.AsArray().Select(w => (string)w!["node"]!))
            {
                await Post(http, compile.Id, "pause");
                await Post(http, compile.Id, $"resume?node={node}");
            }
            await Delete(http, compile.Id);
            var cold = new List<double>();
            for (var i = 0; i < 5; i++)
            {
                await Deploy(http, $"/v1/functions/{target.Function}-cold?{target.Query}env.SAMPLE={i}", target.Body());
                var (ms, s) = await Timed(() => Create(http, target.Function + "-cold"));
                cold.Add(ms);
                await Delete(http, s.Id);
            }
            await Deploy(http, $"/v1/functions/{target.Function}?{target.Query.TrimEnd('&')}", target.Body());
            // Unmeasured: the first session of the function starts cold and captures its template.
            var warmup = await Create(http, target.Function);
            await Call(http, warmup.Id, target.Call(new Random(0), 0));
            await Post(http, warmup.Id, "pause");
            await Post(http, warmup.Id, "resume");
            await Delete(http, warmup.Id);

            var calls = new List<double>();
            var pauses = new List<double>();
            var resumes = new List<double>();
            var resumesOnWorker = new List<double>();
            var stored = new List<double>();
            var dirtied = new List<double>();
            var memory = new List<double>();
            long templateBytes = 0;
            var gate = new SemaphoreSlim(parallel);
            var agents = Enumerable.Range(0, sessions).Select(async n =>
            {
                await gate.WaitAsync();
                try
                {
                    var rng = new Random(1000 + n);
                    var s = await Create(http, target.Function);
                    for (var b = 0; b < bursts; b++)
                    {
                        if (b > 0)
                        {
                            var (resumeMs, resumed) = await Timed(() => Post(http, s.Id, "resume"));
                            lock (resumes)
                            {
                                resumes.Add(resumeMs);
                                resumesOnWorker.Add(resumed.LastResumeMs ?? double.NaN);
                            }
                        }
                        var k = 3 + rng.Next(4);
                        for (var i = 0; i < k; i++)
                        {
                            var (ms, _) = await Timed(() => Call(http, s.Id, target.Call(rng, b * 7 + i)));
                            lock (calls)
                                calls.Add(ms);
                        }
                        // The agent thinks (an LLM turn): the session idles and is paused, as its idle timeout would.
                        await Task.Delay(50 + rng.Next(250));
                        var (pauseMs, paused) = await Timed(() => Post(http, s.Id, "pause"));
                        lock (pauses)
                        {
                            pauses.Add(pauseMs);
                            stored.Add(paused.StoredBytes);
                            dirtied.Add(paused.DirtiedBytes);
                            memory.Add(paused.MemoryBytes);
                            templateBytes = paused.TemplateBytes;
                        }
                    }
                    await Delete(http, s.Id);
                }
                finally
                {
                    gate.Release();
                }
            });
            await Task.WhenAll(agents);

            var storedMean = stored.Average();
            result[target.Key] = new JsonObject
            {
                ["function"] = target.Function,
                ["sessions"] = sessions,
                ["agents_at_a_time"] = parallel,
                ["call"] = Stats.Summary(calls),
                ["pause"] = Stats.Summary(pauses),
                ["resume"] = Stats.Summary(resumes),
                ["resume_on_worker"] = Stats.Summary(resumesOnWorker.Where(double.IsFinite).ToList()),
                ["cold_session_start"] = Stats.Summary(cold),
                ["cold_start_over_resume_p50"] = Math.Round(Stats.Percentile(cold, 50) / Stats.Percentile(resumes, 50), 1),
                ["stored_bytes_mean"] = Math.Round(storedMean),
                ["memory_bytes_mean"] = Math.Round(memory.Average()),
                ["template_bytes"] = templateBytes,
                ["stored_over_full"] = Math.Round(storedMean / memory.Average(), 4),
                ["stored_over_dirtied"] = Math.Round(stored.Sum() / dirtied.Sum(), 4),
                ["stored_over_dirtied_max"] = Math.Round(stored.Zip(dirtied, (a, d) => d == 0 ? 0 : a / d).Max(), 4),
            };
            if (target.Key == "python")
            {
                foreach (var (key, value) in await ForksAndFilesAsync(http, target.Function, Math.Max(5, sessions / 2)))
                    result[target.Key]![key] = value;
            }
            pss[target.Key] = await LivePssAsync(http, target, sessions);
            Console.WriteLine($"{target.Key,-7} call p50 {Stats.Percentile(calls, 50),7:F2} ms p99 {Stats.Percentile(calls, 99),7:F2}  pause p50 {Stats.Percentile(pauses, 50),6:F2} ms  "
                + $"resume p50 {Stats.Percentile(resumes, 50),6:F2} ms p99 {Stats.Percentile(resumes, 99),6:F2} (cold start {Stats.Percentile(cold, 50):F1} ms)  stored {storedMean / 1024:F0} KiB of {memory.Average() / 1048576:F1} MiB "
                + $"({result[target.Key]!["stored_over_full"]}; {result[target.Key]!["stored_over_dirtied"]} of dirtied)  PSS/live session {pss[target.Key]!["pss_mib_per_session"]} MiB");
        }
        result["interpreter"] = await InterpreterAsync(http, Math.Max(20, sessions * 2));
        result["pss_mib_per_live_session"] = new JsonObject
        {
            ["python"] = pss["python"]!["pss_mib_per_session"]!.GetValue<double>(),
            ["heavy"] = pss["heavy"]!["pss_mib_per_session"]!.GetValue<double>(),
        };
        result["live_pss"] = pss;
        result["host"] = SandboxHostCommand.Resolve().Kind;
        result["measured_at"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);
        var output = Path.Combine(Path.GetDirectoryName(o.Output)!, "agent.json");
        await File.WriteAllTextAsync(output, result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    // N sessions live at once, each after a few calls; PSS of their sandbox process trees, read from /proc.
    private static async Task<JsonObject> LivePssAsync(HttpClient http, Target target, int n)
    {
        var live = new List<Session>();
        try
        {
            var rng = new Random(7);
            for (var i = 0; i < n; i++)
            {
                var s = await Create(http, target.Function);
                live.Add(s);
                for (var c = 0; c < 4; c++)
                    await Call(http, s.Id, target.Call(rng, c));
            }
            var cluster = JsonNode.Parse(await http.GetStringAsync("/v1/cluster"))!;
            var pids = cluster["workers"]!.AsArray().SelectMany(w => w!["sandboxes"]!.AsArray())
                .Where(s => (string?)s!["state"] == "session" && (string?)s["function"] == target.Function).Select(s => (int)s!["pid"]!).ToList();
            if (pids.Count != n)
                throw new InvalidOperationException($"{pids.Count} session sandboxes of {target.Function} reported, {n} expected.");
            var total = pids.Sum(TreePss);
            var memory = live.Count == 0 ? 0 : (await Get(http, live[0].Id)).MemoryBytes;
            return new JsonObject
            {
                ["sessions"] = n,
                ["pss_total_mib"] = Math.Round(total / 1048576.0, 1),
                ["pss_mib_per_session"] = Math.Round(total / 1048576.0 / n, 2),
                ["linear_memory_mib_per_session"] = Math.Round(memory / 1048576.0, 1),
            };
        }
        finally
        {
            foreach (var s in live)
                await Delete(http, s.Id);
        }
    }

    // The sandbox's process and every descendant (the wrapper, the host as PID 1 of its namespace).
    private static long TreePss(int root)
    {
        var children = new Dictionary<int, List<int>>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
                continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var ppid = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture);
                if (!children.TryGetValue(ppid, out var list))
                    children[ppid] = list = [];
                list.Add(pid);
            }
            catch (IOException)
            {
            }
        }
        long total = 0;
        var stack = new Stack<int>([root]);
        while (stack.TryPop(out var pid))
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{pid}/smaps_rollup"))
                {
                    if (line.StartsWith("Pss:", StringComparison.Ordinal))
                        total += long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
                }
            }
            catch (IOException)
            {
            }
            foreach (var child in children.GetValueOrDefault(pid) ?? [])
                stack.Push(child);
        }
        return total;
    }

    private static async Task<(double Ms, T Value)> Timed<T>(Func<Task<T>> call)
    {
        var started = Stopwatch.GetTimestamp();
        var value = await call();
        return (Stopwatch.GetElapsedTime(started).TotalMilliseconds, value);
    }

    private static async Task Deploy(HttpClient http, string path, HttpContent content)
    {
        var r = await http.PutAsync(path, content);
        if (!r.IsSuccessStatusCode)
            throw new InvalidOperationException($"Deploying {path} failed: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
    }

    private static async Task<Session> Create(HttpClient http, string function)
    {
        var r = await http.PostAsJsonAsync("/v1/sessions", new { function, idleTimeoutS = 0 });
        return await Read(r, "create");
    }

    private static async Task<Session> Get(HttpClient http, string id) => await Read(await http.GetAsync($"/v1/sessions/{id}"), "get");

    private static async Task<Session> Post(HttpClient http, string id, string action) => await Read(await http.PostAsync($"/v1/sessions/{id}/{action}", null), action);

    private static async Task<string> Call(HttpClient http, string id, string input)
    {
        using var r = await http.PostAsync($"/v1/sessions/{id}/invoke", new ByteArrayContent(Encoding.UTF8.GetBytes(input)));
        var body = await r.Content.ReadAsStringAsync();
        if (!r.IsSuccessStatusCode)
            throw new InvalidOperationException($"Session {id} answered {(int)r.StatusCode} to \"{input[..Math.Min(40, input.Length)]}\": {body}");
        return body;
    }

    private static async Task Delete(HttpClient http, string id)
    {
        var r = await http.DeleteAsync($"/v1/sessions/{id}");
        if (!r.IsSuccessStatusCode)
            throw new InvalidOperationException($"Deleting session {id} answered {(int)r.StatusCode}");
    }

    private static async Task<Session> Read(HttpResponseMessage r, string what)
    {
        var body = await r.Content.ReadAsStringAsync();
        if (!r.IsSuccessStatusCode)
            throw new InvalidOperationException($"Session {what} answered {(int)r.StatusCode}: {body}");
        return JsonSerializer.Deserialize<Session>(body, Web)!;
    }
}
