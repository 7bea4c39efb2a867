using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using TrEnv.Chaos;
using Xunit.Abstractions;

namespace TrEnv.Tests;

/// <summary>
/// The cluster as its users start it: <c>./trenv up --compose</c> on a Docker engine (images built, PostgreSQL, the
/// pool, two coordinators, three cxl workers), then what they rely on through both coordinators, a worker
/// container killed under load, and <c>./trenv down --compose</c> leaving nothing behind. ./test.sh installs and
/// starts the engine (scripts/docker-engine.sh) before the tests run.
/// </summary>
public sealed class ComposeClusterTests(ITestOutputHelper output)
{
    private const string One = "http://127.0.0.1:8080";
    private const string Two = "http://127.0.0.1:8081";
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(60) };

    [Fact]
    public async Task Up_serves_templates_runtimes_and_sessions_across_containers_survives_a_killed_worker_and_down_leaves_nothing()
    {
        var root = ChaosRunner.RepoRoot();
        try
        {
            var (code, log) = await Run(root, "./trenv", "up", "--compose");
            Assert.True(code == 0, $"trenv up --compose exited {code}:\n{log}");
            Assert.Contains("TrEnv ready: http://127.0.0.1:8080", log);

            await Isolation_inside_the_containers_is_what_it_is_outside();
            await A_template_captured_in_one_worker_container_starts_another();
            await Python_and_Ruby_samples_answer_through_both_coordinators();
            await A_session_paused_in_one_worker_container_resumes_in_another();
            await A_worker_container_killed_under_load_fails_only_its_own_requests_and_recovers_within_5_s(root);
        }
        finally
        {
            var (down, log) = await Run(root, "./trenv", "down", "--compose");
            Assert.True(down == 0, $"trenv down --compose exited {down}:\n{log}");
        }
        foreach (var kind in new[] { "ps -a", "network ls", "volume ls" })
        {
            var (_, left) = await Run(root, "docker", [.. kind.Split(' '), "-q", "--filter", "label=com.docker.compose.project=trenv"]);
            Assert.True(left.Trim().Length == 0, $"docker {kind} still lists the project's: {left}");
        }
    }

    private async Task Isolation_inside_the_containers_is_what_it_is_outside()
    {
        using var doc = JsonDocument.Parse(await _http.GetStringAsync(One + "/v1/cluster"));
        var workers = doc.RootElement.GetProperty("workers").EnumerateArray().ToList();
        Assert.Equal(3, workers.Count);
        foreach (var w in workers)
        {
            Assert.Equal("namespaces+rootfs+cgroup-v1", w.GetProperty("isolation").GetString());
            Assert.Empty(w.GetProperty("isolationMissing").EnumerateArray());
        }
        Log("every worker container: namespaces+rootfs+cgroup-v1, nothing missing");
    }

    private async Task A_template_captured_in_one_worker_container_starts_another()
    {
        // A fresh function: the first call runs init (cold) and captures the template on that worker.
        await Deploy("tpl", await Guest("heavy"));
        var first = await Invoke(One, "tpl", "7919 15838");
        Assert.Equal("cold", first.Start);
        // Both coordinators' catalogs know the template (one may learn it by polling the journal), so any call
        // they place on another worker carries it; before that, such a call starts cold there instead. A capture
        // that does not finish in time (115 MiB into the pool, on two cores running eight containers) leaves the
        // call cold and the version without a template: the next cold start tries again, so this does too, twice.
        for (var attempt = 1; ; attempt++)
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            var missing = new List<string>();
            foreach (var coordinator in new[] { One, Two })
            {
                string listed;
                while (!(listed = await _http.GetStringAsync($"{coordinator}/v1/templates")).Contains("\"id\":\"tpl@1\"", StringComparison.Ordinal)
                       && DateTime.UtcNow < deadline)
                    await Task.Delay(200);
                if (!listed.Contains("\"id\":\"tpl@1\"", StringComparison.Ordinal))
                    missing.Add($"{coordinator} lists {listed}");
            }
            if (missing.Count == 0)
                break;
            Assert.True(attempt < 3, $"no template of tpl 30 s after each of {attempt} cold starts (the last on {first.Node}): {string.Join("; ", missing)}");
            Log($"no template of tpl 30 s after a cold start on {first.Node} ({string.Join("; ", missing)}); scaling to zero for another capture");
            using (var scaled = await _http.PostAsync($"{One}/v1/functions/tpl/scale-to-zero", null))
                Assert.Equal(HttpStatusCode.OK, scaled.StatusCode);
            first = await Invoke(One, "tpl", "7919 15838");
        }
        // Concurrent calls spread over the workers; one that lands elsewhere maps the template from the pool.
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var answers = await Task.WhenAll(Enumerable.Range(0, 12).Select(i => Invoke(i % 2 == 0 ? One : Two, "tpl", "7919 15838")));
            // The same table answers everywhere; "calls=N" counts the calls of each instance.
            Assert.All(answers, a => Assert.Equal(first.Body[..first.Body.IndexOf(" calls=", StringComparison.Ordinal)], a.Body[..a.Body.IndexOf(" calls=", StringComparison.Ordinal)]));
            if (answers.FirstOrDefault(a => a.Start == "template" && a.Node != first.Node) is { } elsewhere)
            {
                Log($"template captured on {first.Node}, restored on {elsewhere.Node} ({elsewhere.Sandbox})");
                return;
            }
        }
        Assert.Fail($"no call of tpl started from its template on a worker other than {first.Node}");
    }

    private async Task Python_and_Ruby_samples_answer_through_both_coordinators()
    {
        foreach (var coordinator in new[] { One, Two })
        {
            var calc = await Invoke(coordinator, "calc", "(19.99 * 3) / 7");
            Assert.Equal(HttpStatusCode.OK, calc.Status);
            Assert.StartsWith("8.567142857142857142857142857", calc.Body);
            var words = await Invoke(coordinator, "word-count", "the cat and the hat");
            Assert.Equal(HttpStatusCode.OK, words.Status);
            Assert.Contains("\"words\":5", words.Body);
        }
        Log("calc (Python) and word-count (Ruby) answer through both coordinators");
    }

    private async Task A_session_paused_in_one_worker_container_resumes_in_another()
    {
        using var created = await _http.PostAsync(One + "/v1/sessions", new StringContent("{\"function\":\"notebook\"}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using var session = JsonDocument.Parse(await created.Content.ReadAsStringAsync());
        var id = session.RootElement.GetProperty("id").GetString()!;
        var set = await InvokeSession(One, id, "set city lisbon");
        Assert.Equal("ok 1", set.Body);
        using var paused = await _http.PostAsync($"{Two}/v1/sessions/{id}/pause", null);
        Assert.Equal(HttpStatusCode.OK, paused.StatusCode);
        using var cluster = JsonDocument.Parse(await _http.GetStringAsync(One + "/v1/cluster"));
        var other = cluster.RootElement.GetProperty("workers").EnumerateArray().Select(w => w.GetProperty("node").GetString()!).First(n => n != set.Node);
        using var resumed = await _http.PostAsync($"{Two}/v1/sessions/{id}/resume?node={other}", null);
        Assert.True(resumed.IsSuccessStatusCode, $"resume on {other}: {(int)resumed.StatusCode} {await resumed.Content.ReadAsStringAsync()}");
        var get = await InvokeSession(One, id, "get city");
        Assert.Equal("lisbon", get.Body);
        Assert.Equal(other, get.Node);
        Assert.NotEqual(set.Node, get.Node);
        Log($"session set on {set.Node}, paused, resumed on {get.Node}: state intact");
    }

    private async Task A_worker_container_killed_under_load_fails_only_its_own_requests_and_recovers_within_5_s(string root)
    {
        var records = new ConcurrentQueue<(DateTimeOffset Start, DateTimeOffset End, int Status, string? Node, string Outcome)>();
        using var stop = new CancellationTokenSource();
        var load = Task.WhenAll(Enumerable.Range(0, 4).Select(c => Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var input = $"client{c}-{i}";
                var start = DateTimeOffset.UtcNow;
                try
                {
                    var a = await Invoke(c % 2 == 0 ? One : Two, "hello", input, deadline: TimeSpan.FromSeconds(30));
                    var outcome = a.Status != HttpStatusCode.OK ? "error" : a.Body == "hello: " + input ? "ok" : "wrong";
                    records.Enqueue((start, DateTimeOffset.UtcNow, (int)a.Status, a.Node, outcome));
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    records.Enqueue((start, DateTimeOffset.UtcNow, 0, null, e is TaskCanceledException ? "hung" : "connection"));
                }
            }
        })));
        await Task.Delay(TimeSpan.FromSeconds(3));
        var victim = records.Where(r => r.Outcome == "ok").GroupBy(r => r.Node).OrderByDescending(g => g.Count()).First().Key!;
        var (_, id) = await Run(root, "scripts/compose.sh", "ps", "-q", victim);
        var at = DateTimeOffset.UtcNow;
        var (killed, why) = await Run(root, "docker", "kill", "--signal", "KILL", id.Trim());
        Assert.True(killed == 0, why);
        Log($"killed {victim} ({id.Trim()[..12]}) under load");
        await Task.Delay(TimeSpan.FromSeconds(12));
        await stop.CancelAsync();
        await load;

        var all = records.ToList();
        var failed = all.Where(r => r.Outcome != "ok").ToList();
        Log($"{all.Count} requests, {failed.Count} failed: " + string.Join(", ", failed.GroupBy(f => $"{f.Outcome} {f.Status} on {f.Node ?? "?"}").Select(g => $"{g.Count()}x {g.Key}")));
        Assert.DoesNotContain(all, r => r.Outcome is "wrong" or "hung");
        Assert.All(failed, f =>
        {
            Assert.True(f.End >= at, "a request failed before the kill");
            Assert.True(f.Node is null || f.Node == victim, $"a request failed on {f.Node}, not on the killed {victim}");
            Assert.True(f.Status is 0 or >= 500, $"a failure answered {f.Status}");
            Assert.True(f.Start <= at + TimeSpan.FromSeconds(5), $"a request started {(f.Start - at).TotalSeconds:0.00} s after the kill failed");
        });
        Assert.True(all.Count(r => r.Start > at + TimeSpan.FromSeconds(5) && r.Outcome == "ok") > 20, "the load did not go on after the kill");

        // docker kill counts as a manual stop, which the restart policy leaves alone: start it, as an operator
        // would, and it rejoins as a worker.
        var (started, startError) = await Run(root, "docker", "start", id.Trim());
        Assert.True(started == 0, startError);
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            using var doc = JsonDocument.Parse(await _http.GetStringAsync(One + "/v1/cluster"));
            if (doc.RootElement.GetProperty("workers").GetArrayLength() == 3 && doc.RootElement.GetProperty("nodes").EnumerateArray().All(n => n.GetProperty("status").GetString() == "up"))
                break;
            Assert.True(DateTimeOffset.UtcNow < deadline, $"{victim} did not rejoin within 90 s: {doc.RootElement}");
            await Task.Delay(500);
        }
        Log($"{victim} started again and rejoined");
    }

    private sealed record Answer(HttpStatusCode Status, string Body, string? Start, string? Sandbox, string? Node);

    private Task<Answer> Invoke(string coordinator, string function, string input, TimeSpan? deadline = null)
        => Call($"{coordinator}/v1/functions/{function}/invoke", input, deadline);

    private Task<Answer> InvokeSession(string coordinator, string id, string input) => Call($"{coordinator}/v1/sessions/{id}/invoke", input, null);

    private async Task<Answer> Call(string url, string input, TimeSpan? deadline)
    {
        using var t = new CancellationTokenSource(deadline ?? TimeSpan.FromSeconds(60));
        using var r = await _http.PostAsync(url, new StringContent(input, Encoding.UTF8), t.Token);
        string? H(string name) => r.Headers.TryGetValues(name, out var v) ? v.FirstOrDefault() : null;
        return new Answer(r.StatusCode, await r.Content.ReadAsStringAsync(t.Token), H("X-TrEnv-Start"), H("X-TrEnv-Sandbox"), H("X-TrEnv-Node"));
    }

    private async Task Deploy(string name, byte[] module)
    {
        using var content = new ByteArrayContent(module);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/wasm");
        using var r = await _http.PutAsync($"{One}/v1/functions/{name}", content);
        Assert.True(r.StatusCode == HttpStatusCode.Created, $"deploy {name}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
    }

    private static Task<byte[]> Guest(string name) => File.ReadAllBytesAsync(Path.Combine(ChaosRunner.RepoRoot(), "guests", "build", name + ".wasm"));

    private void Log(string line) => output.WriteLine($"[{_clock.Elapsed.TotalSeconds,6:0.0}s] {line}");

    private async Task<(int Code, string Output)> Run(string root, string file, params string[] args)
    {
        // A relative path names a file of the checkout; ProcessStartInfo resolves it against this process's directory.
        var info = new ProcessStartInfo(file.Contains('/') ? Path.Combine(root, file) : file, args) { WorkingDirectory = root, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(info)!;
        var text = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        using var t = new CancellationTokenSource(TimeSpan.FromMinutes(20));
        await p.WaitForExitAsync(t.Token);
        var result = text.ToString();
        Log($"{file} {string.Join(' ', args)}: exit {p.ExitCode}");
        return (p.ExitCode, result);
    }
}
