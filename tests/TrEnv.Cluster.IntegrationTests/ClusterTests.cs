using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace TrEnv.Tests;

/// <summary>Real node processes on loopback: the HTTP contract, cross-worker templates, restarts.</summary>
public sealed class ClusterTests
{
    [Fact]
    public async Task The_api_is_described_by_an_openapi_document_and_a_page_to_browse_it_and_its_errors_are_problem_details()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync();
        using var doc = JsonDocument.Parse(await c.Http.GetStringAsync("/openapi/v1.json"));
        Assert.Equal("TrEnv HTTP API", doc.RootElement.GetProperty("info").GetProperty("title").GetString());
        var paths = doc.RootElement.GetProperty("paths");
        var invoke = paths.GetProperty("/v1/functions/{name}/invoke").GetProperty("post");
        Assert.Contains("X-TrEnv-Start", invoke.GetProperty("summary").GetString(), StringComparison.Ordinal);
        Assert.True(paths.GetProperty("/v1/functions/{name}").TryGetProperty("put", out var deploy));
        Assert.True(deploy.GetProperty("requestBody").GetProperty("content").TryGetProperty("application/wasm", out _));
        foreach (var path in new[] { "/v1/functions", "/v1/functions/{name}/logs", "/v1/templates", "/v1/cluster", "/v1/layers", "/metrics", "/readyz" })
            Assert.True(paths.TryGetProperty(path, out _), $"{path} is not in the document");
        var page = await c.Http.GetAsync("/openapi");
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("/openapi/v1.json", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Every error is RFC 9457 problem details that still carries error and message, whether a handler, routing or Kestrel answered it.
        Assert.True(doc.RootElement.GetProperty("components").GetProperty("schemas").TryGetProperty("Problem", out _));
        Assert.True(invoke.GetProperty("responses").GetProperty("default").GetProperty("content").TryGetProperty("application/problem+json", out _));
        foreach (var (method, path, status, kind) in new[]
        {
            ("GET", "/v1/functions/nope", 404, "not_found"),
            ("POST", "/v1/functions/nope/invoke", 404, "not_found"),
            ("GET", "/v1/no-such-thing", 404, "not_found"),
            ("DELETE", "/openapi", 405, "method_not_allowed"),
            ("POST", "/v1/sessions", 400, "bad_request"),
        })
        {
            using var answer = await c.Http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = method == "POST" ? new StringContent("") : null });
            Assert.Equal(status, (int)answer.StatusCode);
            Assert.Equal("application/problem+json", answer.Content.Headers.ContentType?.MediaType);
            using var problem = JsonDocument.Parse(await answer.Content.ReadAsStringAsync());
            var p = problem.RootElement;
            Assert.Equal(("urn:trenv:error:" + kind, status, kind, path), (p.GetProperty("type").GetString(), p.GetProperty("status").GetInt32(), p.GetProperty("error").GetString(), p.GetProperty("instance").GetString()));
            Assert.False(string.IsNullOrEmpty(p.GetProperty("title").GetString()));
            Assert.False(string.IsNullOrEmpty(p.GetProperty("detail").GetString()));
            Assert.Equal(p.GetProperty("detail").GetString(), p.GetProperty("message").GetString());
        }

        // Without an exporter nothing is traced, yet an answer continues the caller's trace (a span id of its own), or starts one.
        using var traced = new HttpRequestMessage(HttpMethod.Get, "/v1/functions");
        traced.Headers.Add("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        var continued = (await c.Http.SendAsync(traced)).Headers.GetValues("traceparent").Single().Split('-');
        Assert.Equal(("00", "0af7651916cd43dd8448eb211c80319c", "01"), (continued[0], continued[1], continued[3]));
        Assert.Matches("^[0-9a-f]{16}$", continued[2]);
        Assert.NotEqual("b7ad6b7169203331", continued[2]);
        var fresh = string.Join(" | ", (await c.Http.GetAsync("/v1/functions")).Headers.GetValues("traceparent"));
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(fresh, "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"), fresh);
    }

    [Fact]
    public async Task A_worker_started_before_its_seed_keeps_asking_and_joins_once_the_seed_is_up()
    {
        await using var c = new LocalCluster();
        c.StartWorker("early");
        // The worker is refused by its seed (nothing listens yet) and must keep asking, not give up or form a cluster of its own.
        var log = Path.Combine(c.Directory, "early.log");
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(log) && File.ReadAllText(log).Contains("unreachable remote address", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60), () => "the early worker to try its absent seed");
        var seedUp = System.Diagnostics.Stopwatch.StartNew();
        c.StartCoordinator();
        c.StartMemoryPool();
        await c.WaitReadyAsync("early");
        Assert.True(seedUp.Elapsed < TimeSpan.FromSeconds(30), $"joined {seedUp.Elapsed.TotalSeconds:0.0} s after its seed started");
        await c.Api.DeployGuestAsync("hello", "hello");
        var early = await c.Api.InvokeAsync("hello", "early");
        Assert.Equal((HttpStatusCode.OK, "hello: early", "early"), (early.Status, early.Body, early.Node));
        var nodes = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/cluster")).RootElement.GetProperty("nodes");
        Assert.Equal(3, nodes.GetArrayLength()); // one cluster: the worker never formed its own
    }

    [Fact]
    public async Task Template_captured_on_one_worker_is_restored_on_a_worker_that_joined_after_the_deploy()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-a");
        await c.Api.DeployGuestAsync("heavy", "heavy");
        const string input = "7919 15838 23757 99";
        var first = await c.Api.InvokeAsync("heavy", input);
        Assert.True(first.Status == HttpStatusCode.OK, first.Body);
        Assert.Equal("cold", first.Start);
        Assert.Equal("worker-a", first.Node);
        var templates = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/templates")).RootElement.GetProperty("templates");
        Assert.Equal("worker-a", templates.EnumerateArray().Single().GetProperty("capturedBy").GetString());

        c.StartWorker("worker-b");
        await c.WaitReadyAsync("worker-a", "worker-b");
        c.Kill("worker-a");
        await Poll.UntilAsync(async () => !(await c.Http.GetStringAsync("/v1/cluster")).Contains("\"worker-a\"", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), () => "worker-a to leave the coordinator's directory");

        var second = await c.Api.InvokeAsync("heavy", input);
        Assert.True(second.Status == HttpStatusCode.OK, second.Body);
        Assert.Equal("worker-b", second.Node);
        Assert.Equal("template", second.Start);
        Assert.Equal(first.Body, second.Body);

        // worker-b's instance maps the template: the registry counts it, and the function shows it.
        await Poll.UntilAsync(async () =>
            JsonDocument.Parse(await c.Http.GetStringAsync("/v1/templates")).RootElement.GetProperty("templates")[0]
                .GetProperty("liveMappings") is { ValueKind: JsonValueKind.Number } m && m.GetInt32() == 1,
            TimeSpan.FromSeconds(15), () => "the template's live mappings to count worker-b's instance");
        var function = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/functions/heavy")).RootElement;
        Assert.Equal("sealed", function.GetProperty("template").GetProperty("status").GetString());
        await Poll.UntilAsync(async () =>
            JsonDocument.Parse(await c.Http.GetStringAsync("/v1/functions/heavy")).RootElement.GetProperty("instances").TryGetProperty("worker-b", out _),
            TimeSpan.FromSeconds(10), () => "worker-b's instance to show in the function's instances");
    }

    [Fact]
    public async Task Bad_inputs_get_the_contract_statuses_and_the_cluster_keeps_serving()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("hello", "hello");
        await c.Api.DeployGuestAsync("trap", "trap");
        await c.Api.DeployGuestAsync("loop", "loop", "?timeoutMs=300");
        await c.Api.DeployGuestAsync("membomb", "membomb", "?memoryMb=64");

        var garbage = await c.Api.DeployAsync("bad", Encoding.UTF8.GetBytes("not wasm"));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, garbage.StatusCode);
        Assert.Contains("invalid_module", await garbage.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        byte[] memoryOnly = [0, 0x61, 0x73, 0x6D, 1, 0, 0, 0, 5, 3, 1, 0, 1, 7, 10, 1, 6, (byte)'m', (byte)'e', (byte)'m', (byte)'o', (byte)'r', (byte)'y', 2, 0];
        var missing = await c.Api.DeployAsync("bad", memoryOnly);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, missing.StatusCode);
        Assert.Contains("trenv_handle", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        // Sections and ABI are fine, but trenv_alloc's body returns an i64 where its type says i32.
        byte[] badBody = [0, 0x61, 0x73, 0x6D, 1, 0, 0, 0,
            1, 12, 2, 0x60, 1, 0x7F, 1, 0x7F, 0x60, 2, 0x7F, 0x7F, 1, 0x7E,
            3, 3, 2, 0, 1,
            5, 3, 1, 0, 1,
            7, 39, 3, 6, .. "memory"u8, 2, 0, 11, .. "trenv_alloc"u8, 0, 0, 12, .. "trenv_handle"u8, 0, 1,
            10, 11, 2, 4, 0, 0x42, 0, 0x0B, 4, 0, 0x42, 0, 0x0B];
        var invalidBody = await c.Api.DeployAsync("bad", badBody);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, invalidBody.StatusCode);
        Assert.Contains("type mismatch", await invalidBody.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var huge = await c.Api.DeployAsync("big", new byte[65 << 20]);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge.StatusCode);
        var bigInput = await c.Api.InvokeAsync("hello", new byte[7 << 20]);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, bigInput.Status);

        Assert.Equal(HttpStatusCode.NotFound, (await c.Api.InvokeAsync("nope", "x")).Status);
        var trap = await c.Api.InvokeAsync("trap", "trap");
        Assert.Equal(HttpStatusCode.InternalServerError, trap.Status);
        Assert.Equal("trap", JsonDocument.Parse(trap.Body).RootElement.GetProperty("error").GetString());
        var timeout = await c.Api.InvokeAsync("loop", "spin");
        Assert.Equal(HttpStatusCode.GatewayTimeout, timeout.Status);
        Assert.Equal("timeout", JsonDocument.Parse(timeout.Body).RootElement.GetProperty("error").GetString());
        var memory = await c.Api.InvokeAsync("membomb", "go");
        Assert.Equal(HttpStatusCode.InsufficientStorage, memory.Status);
        Assert.Equal("memory", JsonDocument.Parse(memory.Body).RootElement.GetProperty("error").GetString());

        // concurrency=1: a second invocation while the first spins is refused with 503 and Retry-After.
        await c.Api.DeployGuestAsync("single", "loop", "?timeoutMs=3000&concurrency=1");
        var spinning = c.Api.InvokeAsync("single", "spin");
        await Poll.UntilAsync(async () => spinning.IsCompleted
                ? throw new InvalidOperationException($"The first invocation of single ended early: {(await spinning).Status} {(await spinning).Body}")
                : new Prometheus(await c.Http.GetStringAsync("/metrics")).Sum("trenv_invocations_in_flight", ("function", "single")) == 1,
            TimeSpan.FromSeconds(15), () => "the first invocation of single to run");
        var throttled = await c.Api.InvokeAsync("single", "spin");
        Assert.True(throttled.Status == HttpStatusCode.ServiceUnavailable,
            $"throttled: {(int)throttled.Status} {throttled.Body}; first done: {spinning.IsCompleted}");
        Assert.NotNull(throttled.Response.Headers.RetryAfter);
        Assert.Contains("concurrency limit", throttled.Body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.GatewayTimeout, (await spinning).Status);

        var ok = await c.Api.InvokeAsync("hello", "still here");
        Assert.Equal(HttpStatusCode.OK, ok.Status);
        Assert.Equal("hello: still here", ok.Body);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Deploys_and_templates_survive_a_restart_of_the_whole_cluster(string journal)
    {
        string? database = null;
        if (journal == "postgres")
        {
            database = Environment.GetEnvironmentVariable("TRENV_TEST_POSTGRES");
            Assert.False(string.IsNullOrEmpty(database), "TRENV_TEST_POSTGRES is not set: run ./test.sh, which starts PostgreSQL (scripts/postgres.sh).");
        }
        await using var c = new LocalCluster(database);
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("heavy", "heavy");
        var again = await c.Api.DeployAsync("heavy", TestGuests.Bytes("heavy"), contentType: "application/wasm");
        Assert.Contains("\"version\":1", await again.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var first = await c.Api.InvokeAsync("heavy", "1 2 3");
        Assert.Equal("cold", first.Start);
        // A template survives a pool restart once its durable copy is complete (the hash file marks it); a kill
        // before that loses the region, and the platform then starts cold rather than map wrong bytes.
        var copy = Path.Combine(c.Directory, "memory-pool", "durable", "heavy@1.xxh64");
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(copy)), TimeSpan.FromSeconds(30), () => $"the durable copy of heavy@1 ({copy})");

        c.KillAll();
        await c.StartAllAsync("worker-1");
        var functions = await c.Http.GetStringAsync("/v1/functions");
        Assert.Contains("\"heavy\"", functions, StringComparison.Ordinal);
        Assert.Contains("heavy@1", await c.Http.GetStringAsync("/v1/templates"), StringComparison.Ordinal);
        var second = await c.Api.InvokeAsync("heavy", "1 2 3");
        Assert.True(second.Status == HttpStatusCode.OK, second.Body);
        Assert.True(second.Start == "template", $"started {second.Start}, not from the template; logs:\n{c.Tail()}");
        Assert.Equal(first.Body, second.Body);
    }

    [Fact]
    public async Task Concurrent_first_invocations_capture_one_template_and_metrics_count_them()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        // Six inits of 115 MiB each at once, beside another test class's cluster, on two cores: what is tested is one
        // capture among them, not how fast they fault their pages in, so init gets more than the default 10 s.
        await c.Api.DeployGuestAsync("heavy", "heavy", "initTimeoutMs=60000");
        var answers = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => c.Api.InvokeAsync("heavy", "5 10 15")));
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.Status));
        // Instances that finished early serve later requests warm (calls=2, ...); the lookups agree everywhere.
        Assert.Single(answers.Select(a => a.Body[..a.Body.IndexOf(" calls=", StringComparison.Ordinal)]).Distinct());

        var templates = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/templates")).RootElement.GetProperty("templates");
        Assert.Equal(1, templates.GetArrayLength());
        var pool = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/cluster")).RootElement.GetProperty("pool");
        Assert.Equal(1, pool.GetProperty("regions").GetInt32());

        var metrics = new Prometheus(await c.Http.GetStringAsync("/metrics"));
        Assert.Equal(6, metrics.Sum("trenv_invocations_total", ("function", "heavy")));
        Assert.Equal(1, metrics.Sum("trenv_template_captures_total", ("function", "heavy")));
        Assert.Equal(6, metrics.Sum("trenv_invocation_startup_seconds_count"));
    }

    [Fact]
    public async Task One_invocation_id_labels_its_json_log_lines_on_the_coordinator_the_worker_and_the_sandbox()
    {
        await using var c = new LocalCluster();
        c.Environment["TRENV_LOG_LEVEL"] = "debug"; // warm calls log at debug; this test follows a warm one too
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("hello", "hello");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/functions/hello/invoke") { Content = new StringContent("x") };
        request.Headers.Add("X-TrEnv-Invocation-Id", "trace-me-42");
        var r = await Invocation.ReadAsync(await c.Http.SendAsync(request));
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("trace-me-42", r.Header("X-TrEnv-Invocation-Id"));
        // Without one the coordinator makes one up and says which.
        var generated = (await c.Api.InvokeAsync("hello", "x")).Header("X-TrEnv-Invocation-Id");
        Assert.Matches("^[0-9a-f]{32}$", generated);

        List<(string Category, JsonElement State)> Lines(string node, string id) => File.ReadAllLines(Path.Combine(c.Directory, node + ".log"))
            .Where(l => l.StartsWith('{') && l.Contains(id, StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("State", out var s) && s.TryGetProperty("InvocationId", out var i) && i.GetString() == id)
            .Select(e => (e.GetProperty("Category").GetString()!, e.GetProperty("State").Clone())).ToList();
        await Poll.UntilAsync(() => Task.FromResult(
                Lines("coordinator-1", "trace-me-42").Any(l => l.Category == "TrEnv.Coordinator.Invoke")
                && Lines("worker-1", "trace-me-42").Any(l => l.Category == "TrEnv.Worker")
                && Lines("worker-1", "trace-me-42").Count(l => l.Category == "TrEnv.Sandbox") >= 2),
            TimeSpan.FromSeconds(10), () => "log lines of trace-me-42 from the coordinator, the worker and its sandbox");
        var coordinator = Lines("coordinator-1", "trace-me-42").Single().State;
        Assert.Equal(("hello", "ok", "cold", "worker-1"), (coordinator.GetProperty("Function").GetString(), coordinator.GetProperty("Outcome").GetString(),
            coordinator.GetProperty("Start").GetString(), coordinator.GetProperty("Worker").GetString()));
        // The sandbox's lines: the load (cold, from init) and the invocation, with the sandbox's pid and node.
        var sandbox = Lines("worker-1", "trace-me-42").Where(l => l.Category == "TrEnv.Sandbox").Select(l => l.State).ToList();
        Assert.Contains(sandbox, s => s.GetProperty("Event").GetString() == "load" && s.GetProperty("Source").GetString() == "init");
        Assert.Contains(sandbox, s => s.GetProperty("Event").GetString() == "invoke" && s.GetProperty("Node").GetString() == "worker-1");
        var worker = Lines("worker-1", "trace-me-42").Single(l => l.Category == "TrEnv.Worker").State;
        Assert.Equal(sandbox[0].GetProperty("Sandbox").GetInt32(), worker.GetProperty("Pid").GetInt32());
        await Poll.UntilAsync(() => Task.FromResult(Lines("worker-1", generated).Count >= 2), TimeSpan.FromSeconds(10), () => "the generated id in the worker's log");
    }

    [Fact]
    public async Task Invocations_take_the_invoke_channel_and_a_worker_without_one_is_reached_through_remoting()
    {
        await using var c = new LocalCluster();
        c.StartCoordinator();
        c.StartMemoryPool();
        c.StartWorker("worker-1");
        c.StartWorker("worker-2", false, ("TRENV_INVOKE_PORT", "-1"));
        await c.WaitReadyAsync(["worker-1", "worker-2"]);
        await c.Api.DeployGuestAsync("hello", "hello");
        // Both workers serve: twelve at once (under the concurrency limit of 16), so placement spreads them over both.
        var answers = await Task.WhenAll(Enumerable.Range(0, 12).Select(n => c.Api.InvokeAsync("hello", $"n{n}")));
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.Status));
        var nodes = answers.Select(a => a.Header("X-TrEnv-Node")).ToHashSet();
        for (var round = 0; round < 10 && nodes.Count < 2; round++)
            foreach (var a in await Task.WhenAll(Enumerable.Range(0, 12).Select(n => c.Api.InvokeAsync("hello", $"r{round}-{n}"))))
            {
                Assert.Equal(HttpStatusCode.OK, a.Status);
                nodes.Add(a.Header("X-TrEnv-Node"));
            }
        Assert.Equal(["worker-1", "worker-2"], nodes.Order().ToArray());
        var log = File.ReadAllText(Path.Combine(c.Directory, "coordinator-1.log"));
        Assert.Contains("Invoke channel to worker worker-1 open", log, StringComparison.Ordinal);
        Assert.DoesNotContain("Invoke channel to worker worker-2", log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Metrics_count_a_scripted_sequence_of_invocations_and_agree_with_the_cluster_view()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("hello", "hello");
        await c.Api.DeployGuestAsync("trap", "trap");
        // hello: cold (and captured), warm, warm; then scaled to zero and restored from its template, warm again.
        var starts = new List<string>();
        for (var i = 0; i < 3; i++)
            starts.Add((await c.Api.InvokeAsync("hello", "x")).Start);
        await c.Api.ScaleToZeroAsync("hello");
        for (var i = 0; i < 2; i++)
            starts.Add((await c.Api.InvokeAsync("hello", "x")).Start);
        Assert.Equal(["cold", "warm", "warm", "template", "warm"], starts);
        // Two traps, then a refusal by the coordinator itself.
        for (var i = 0; i < 2; i++)
            Assert.Equal(HttpStatusCode.InternalServerError, (await c.Api.InvokeAsync("trap", "trap")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await c.Api.InvokeAsync("no-such-function", "")).Status);

        var m = new Prometheus(await c.Http.GetStringAsync("/metrics"));
        Assert.Equal(1, m.Sum("trenv_invocations_total", ("function", "hello"), ("start", "cold"), ("outcome", "ok")));
        Assert.Equal(3, m.Sum("trenv_invocations_total", ("function", "hello"), ("start", "warm"), ("outcome", "ok")));
        Assert.Equal(1, m.Sum("trenv_invocations_total", ("function", "hello"), ("start", "template"), ("outcome", "ok")));
        Assert.Equal(2, m.Sum("trenv_invocations_total", ("function", "trap"), ("outcome", "trap")));
        Assert.Equal(2, m.Sum("trenv_invocation_failures_total", ("kind", "trap"), ("function", "trap")));
        Assert.Equal(1, m.Sum("trenv_invocation_failures_total", ("kind", "not_found")));
        Assert.Equal(3, m.Sum("trenv_invocation_failures_total"));
        Assert.Equal(1, m.Sum("trenv_template_captures_total", ("function", "hello")));
        Assert.Equal(1, m.Sum("trenv_template_restores_total", ("function", "hello")));
        // Histograms: one observation per answered invocation, in the start kind's series; +Inf holds them all.
        Assert.Equal(7, m.Sum("trenv_invocation_startup_seconds_count"));
        Assert.Equal(3, m.Sum("trenv_invocation_exec_seconds_count", ("start", "warm")));
        Assert.Equal(3, m.Sum("trenv_invocation_duration_seconds_bucket", ("start", "warm"), ("le", "+Inf")));
        Assert.True(m.Sum("trenv_invocation_startup_seconds_sum", ("start", "cold")) > m.Sum("trenv_invocation_startup_seconds_sum", ("start", "warm")));

        // Gauges agree with /v1/cluster once both read the same worker report (reports arrive twice a second).
        using var templates = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/templates"));
        Assert.Equal(templates.RootElement.GetProperty("templates").GetArrayLength(), m.Sum("trenv_templates"));
        var helloRegion = templates.RootElement.GetProperty("templates").EnumerateArray().Single(t => t.GetProperty("function").GetString() == "hello")
            .GetProperty("regions")[0].GetProperty("length").GetInt64();
        string last = "";
        await Poll.UntilAsync(async () =>
        {
            var metrics = new Prometheus(await c.Http.GetStringAsync("/metrics"));
            using var cluster = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/cluster"));
            var worker = cluster.RootElement.GetProperty("workers").EnumerateArray().Single();
            var sandboxes = worker.GetProperty("sandboxes").EnumerateArray().ToList();
            var pool = cluster.RootElement.GetProperty("pool");
            last = $"metrics warm={metrics.Sum("trenv_sandboxes", ("state", "warm"))} idle={metrics.Sum("trenv_sandboxes", ("state", "idle"))} "
                + $"mapped={metrics.Sum("trenv_pool_mapped_bytes", ("worker", "worker-1"))} allocated={metrics.Sum("trenv_pool_allocated_bytes")}; "
                + $"cluster {sandboxes.Count} sandboxes, allocated={pool.GetProperty("allocatedBytes").GetInt64()}, hello region {helloRegion}";
            return metrics.Sum("trenv_sandboxes", ("worker", "worker-1")) == sandboxes.Count
                && metrics.Sum("trenv_sandboxes", ("worker", "worker-1"), ("state", "warm")) == sandboxes.Count(s => s.GetProperty("state").GetString() == "warm")
                && metrics.Sum("trenv_sandboxes", ("state", "busy")) == 0
                && metrics.Sum("trenv_pool_allocated_bytes") == pool.GetProperty("allocatedBytes").GetInt64()
                && metrics.Sum("trenv_pool_capacity_bytes") == pool.GetProperty("capacityBytes").GetInt64()
                // hello's one restored instance maps its template's region; trap's instances were initialised or restored too.
                && metrics.Sum("trenv_pool_mapped_bytes", ("worker", "worker-1")) >= helloRegion
                && metrics.Sum("trenv_workers") == 1 && metrics.Sum("trenv_functions") == 2;
        }, TimeSpan.FromSeconds(15), () => "the gauges to agree with /v1/cluster: " + last);

        // The same invocations in OpenTelemetry's FaaS conventions (a template start is a cold start), plus a timeout;
        // and the ASP.NET Core and .NET runtime instrumentation beside them.
        await c.Api.DeployGuestAsync("loop", "loop", "?timeoutMs=300");
        Assert.Equal(HttpStatusCode.GatewayTimeout, (await c.Api.InvokeAsync("loop", "spin")).Status);
        var text = await c.Http.GetStringAsync("/metrics");
        var f = new Prometheus(text);
        Assert.Equal(5, f.Sum("faas_invocations_total", ("faas_name", "hello"), ("faas_trigger", "http")));
        Assert.Equal(2, f.Sum("faas_coldstarts_total", ("faas_name", "hello")));
        Assert.Equal(1, f.Sum("faas_coldstarts_total", ("faas_name", "hello"), ("trenv_start", "template")));
        Assert.Equal(2, f.Sum("faas_init_duration_seconds_count", ("faas_name", "hello")));
        Assert.Equal(5, f.Sum("faas_invoke_duration_seconds_count", ("faas_name", "hello"), ("faas_trigger", "http")));
        Assert.Equal(2, f.Sum("faas_errors_total", ("faas_name", "trap"), ("error_type", "trap")));
        Assert.Equal(1, f.Sum("faas_errors_total", ("error_type", "not_found")));
        Assert.Equal(1, f.Sum("faas_errors_total", ("faas_name", "loop"), ("error_type", "timeout")));
        Assert.Equal(1, f.Sum("faas_timeouts_total", ("faas_name", "loop")));
        Assert.Equal(0, f.Sum("faas_timeouts_total", ("faas_name", "trap")));
        Assert.True(f.Sum("http_server_request_duration_seconds_count", ("http_route", "/v1/functions/{name}/invoke")) >= 9, text);
        Assert.True(f.Sum("http_server_request_duration_seconds_count", ("http_route", "/v1/functions/{name}/invoke"), ("http_response_status_code", "504")) == 1, text);
        Assert.True(f.Has("dotnet_gc_collections_total") || f.Has("dotnet_gc_heap_total_allocated_bytes_total"), "no .NET runtime series in:\n" + text);
    }

    [Fact]
    public async Task Admin_calls_need_the_bearer_token_when_one_is_configured()
    {
        await using var c = new LocalCluster();
        c.Environment["TRENV_ADMIN_TOKEN"] = "s3cret";
        await c.StartAllAsync("worker-1");
        ByteArrayContent Wasm() => new(TestGuests.Bytes("hello")) { Headers = { ContentType = new MediaTypeHeaderValue("application/wasm") } };
        var anonymous = await c.Http.PutAsync("/v1/functions/hello", Wasm());
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        var wrong = new HttpRequestMessage(HttpMethod.Put, "/v1/functions/hello") { Content = Wasm() };
        wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "guess");
        Assert.Equal(HttpStatusCode.Unauthorized, (await c.Http.SendAsync(wrong)).StatusCode);
        var right = new HttpRequestMessage(HttpMethod.Put, "/v1/functions/hello") { Content = Wasm() };
        right.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret");
        Assert.Equal(HttpStatusCode.Created, (await c.Http.SendAsync(right)).StatusCode);
        Assert.Equal("hello: open", (await c.Api.InvokeAsync("hello", "open")).Body);
    }

    [Fact]
    public async Task An_invocation_on_a_killed_worker_is_answered_503_promptly_and_others_keep_serving()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        await c.Api.DeployGuestAsync("loop", "loop", "?timeoutMs=120000");
        await c.Api.DeployGuestAsync("hello", "hello");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var stuck = c.Api.InvokeAsync("loop", "spin");
        string? node = null;
        await Poll.UntilAsync(async () =>
        {
            var cluster = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/cluster")).RootElement;
            node = cluster.GetProperty("workers").EnumerateArray()
                .FirstOrDefault(w => w.GetProperty("busy").GetInt32() > 0) is { ValueKind: JsonValueKind.Object } busy ? busy.GetProperty("node").GetString() : null;
            return node is not null;
        }, TimeSpan.FromSeconds(20), () => "a worker to report the looping invocation as busy");
        c.Kill(node!);
        var answer = await stuck;
        Assert.Equal(HttpStatusCode.ServiceUnavailable, answer.Status);
        // The invoke channel's connection breaks with the process (remoting would wait for the worker to be downed).
        Assert.Matches($"connection to worker {node} broke|{node} left the cluster", answer.Body);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(40), $"the 503 took {watch.Elapsed}");
        Assert.Equal("hello: alive", (await c.Api.InvokeAsync("hello", "alive")).Body);
    }
}
