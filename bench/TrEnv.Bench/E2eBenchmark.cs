using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TrEnv.Bench;

/// <summary>
/// End to end over HTTP against a running cluster: heavy's cold, template and warm starts through the
/// coordinator, and hello's warm throughput at a fixed concurrency.
/// </summary>
internal static class E2eBenchmark
{
    private const int WarmUpCalls = 100;

    public static async Task<int> RunAsync(BenchOptions o, string url, int concurrency, TimeSpan duration)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency * 2 }) { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(2) };
        var heavyWasm = File.ReadAllBytes(Path.Combine(o.Guests, "heavy.wasm"));
        var helloWasm = File.ReadAllBytes(Path.Combine(o.Guests, "hello.wasm"));
        var input = Encoding.UTF8.GetBytes(string.Join(' ', Enumerable.Range(1, 20).Select(i => i * 7919 * 1013)));
        await DeployAsync(http, "hello", helloWasm, "");
        Console.WriteLine($"cluster: {url}; samples: {o.Samples}; hello throughput at concurrency {concurrency} for {duration.TotalSeconds:0} s; heavy's template and warm samples follow {WarmUpCalls} unmeasured of each");

        // One unmeasured cold start first: the cluster's one-time costs (shard regions registering, the
        // worker's first module fetch and JIT) belong to no user's cold start in a running cluster.
        await DeployAsync(http, "heavy-cold", heavyWasm, "?env.SAMPLE=warmup");
        await TimedInvokeAsync(http, "heavy-cold", input, "cold");

        // Cold: every sample is a new version (same bytes, another env), so no template exists yet.
        var cold = new List<double>();
        for (var i = 0; i < Math.Max(5, o.Samples / 3); i++)
        {
            await DeployAsync(http, "heavy-cold", heavyWasm, $"?env.SAMPLE={i}");
            cold.Add(await TimedInvokeAsync(http, "heavy-cold", input, "cold"));
        }

        // Template: scale to zero before each sample; the next start repurposes a sandbox and maps the template.
        await DeployAsync(http, "heavy", heavyWasm, "");
        await TimedInvokeAsync(http, "heavy", input, "cold");
        // Unmeasured first, like the cold start above: every node's first few dozen template starts and warm calls
        // run while the JIT recompiles those paths at its optimizing tier, a cost of a fresh node (which
        // coordinator_restart measures), not of a start in a running cluster.
        for (var i = 0; i < WarmUpCalls; i++)
        {
            (await http.PostAsync("/v1/functions/heavy/scale-to-zero", null)).EnsureSuccessStatusCode();
            await TimedInvokeAsync(http, "heavy", input, "template");
            await TimedInvokeAsync(http, "heavy", input, "warm");
        }
        var template = new List<double>();
        for (var i = 0; i < o.Samples; i++)
        {
            (await http.PostAsync("/v1/functions/heavy/scale-to-zero", null)).EnsureSuccessStatusCode();
            template.Add(await TimedInvokeAsync(http, "heavy", input, "template"));
        }

        var warm = new List<double>();
        await TimedInvokeAsync(http, "heavy", input, null);
        for (var i = 0; i < Math.Max(200, o.Samples); i++)
            warm.Add(await TimedInvokeAsync(http, "heavy", input, "warm"));

        var rps = await ThroughputAsync(http, "hello", concurrency, duration);
        var restart = await RestartUnderLoad.MeasureAsync(http, "hello", concurrency);

        var result = new JsonObject
        {
            ["heavy"] = new JsonObject { ["warm"] = Stats.Summary(warm), ["template"] = Stats.Summary(template), ["cold"] = Stats.Summary(cold) },
            ["ratios"] = new JsonObject { ["cold_over_template_p50"] = Math.Round(Stats.Percentile(cold, 50) / Stats.Percentile(template, 50), 1) },
            ["hello_warm_rps"] = Math.Round(rps, 0),
            ["hello_concurrency"] = concurrency,
            ["coordinator_restart"] = restart,
            ["measured_at"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
        Console.WriteLine();
        Console.WriteLine($"{"heavy",-10} {"n",5} {"min ms",9} {"p50 ms",9} {"p99 ms",9}");
        foreach (var (name, values) in new[] { ("warm", warm), ("template", template), ("cold", cold) })
            Console.WriteLine($"{name,-10} {values.Count,5} {values.Min(),9:F3} {Stats.Percentile(values, 50),9:F3} {Stats.Percentile(values, 99),9:F3}");
        Console.WriteLine();
        Console.WriteLine($"heavy cold/template p50 = {result["ratios"]!["cold_over_template_p50"]}x; hello warm = {rps:F0} invocations/s at concurrency {concurrency}");
        var output = Path.Combine(Path.GetDirectoryName(o.Output)!, "e2e.json");
        await File.WriteAllTextAsync(output, result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    internal static async Task DeployAsync(HttpClient http, string name, byte[] wasm, string query)
    {
        var content = new ByteArrayContent(wasm);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
        var response = await http.PutAsync($"/v1/functions/{name}{query}", content);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"Deploying {name} failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }

    /// <summary>One invocation timed from the client; fails the run if it is not the start (and sandbox) kind the sample measures.</summary>
    internal static async Task<double> TimedInvokeAsync(HttpClient http, string name, byte[] input, string? expectedStart, string? expectedSandbox = null)
    {
        var (elapsed, start, sandbox) = await TimedAsync(http, name, input);
        if ((expectedStart is not null && start != expectedStart) || (expectedSandbox is not null && sandbox != expectedSandbox))
            throw new InvalidOperationException($"{name} started {start} on a {sandbox} sandbox; this sample measures {expectedStart} on {expectedSandbox ?? "any"}.");
        return elapsed;
    }

    /// <summary>One invocation timed from the client, with the start and sandbox kinds it reported; an error answer fails the run.</summary>
    internal static async Task<(double Millis, string Start, string Sandbox)> TimedAsync(HttpClient http, string name, byte[] input)
    {
        var watch = Stopwatch.StartNew();
        using var response = await http.PostAsync($"/v1/functions/{name}/invoke", new ByteArrayContent(input));
        var body = await response.Content.ReadAsByteArrayAsync();
        var elapsed = watch.Elapsed.TotalMilliseconds;
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"{name} answered {(int)response.StatusCode}: {Encoding.UTF8.GetString(body)}");
        string Header(string h) => response.Headers.TryGetValues(h, out var v) ? v.Single() : "?";
        return (elapsed, Header("X-TrEnv-Start"), Header("X-TrEnv-Sandbox"));
    }

    internal static async Task<double> ThroughputAsync(HttpClient http, string name, int concurrency, TimeSpan duration)
    {
        if (Wrk.Find() is { } wrk)
        {
            // wrk (C, epoll) leaves the two cores to the cluster; the in-process client would compete with it.
            Console.WriteLine($"throughput load generator: {wrk}");
            // The warm-up also scales the worker to the concurrency (new sandboxes), so its slow answers are not errors.
            await Wrk.RunAsync(wrk, http.BaseAddress!, name, concurrency, TimeSpan.FromSeconds(10), warmUp: true);
            return await Wrk.RunAsync(wrk, http.BaseAddress!, name, concurrency, duration, warmUp: false);
        }
        Console.WriteLine("throughput load generator: in-process HttpClient (install wrk for a lighter one)");
        var input = "benchmark"u8.ToArray();
        // Warm-up at full load first (10 s with wrk): every process's JIT reaches its steady tier before we count.
        await LoadAsync(http, name, input, concurrency, TimeSpan.FromSeconds(3));
        return await LoadAsync(http, name, input, concurrency, duration);
    }

    private static async Task<double> LoadAsync(HttpClient http, string name, byte[] input, int concurrency, TimeSpan duration)
    {
        long completed = 0;
        var stop = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, concurrency).Select(async _ =>
        {
            while (stop.Elapsed < duration)
            {
                using var response = await http.PostAsync($"/v1/functions/{name}/invoke", new ByteArrayContent(input));
                var body = await response.Content.ReadAsByteArrayAsync();
                if (!response.IsSuccessStatusCode || body.Length != 16)
                    throw new InvalidOperationException($"{name} answered {(int)response.StatusCode} during the throughput run.");
                Interlocked.Increment(ref completed);
            }
        }).ToArray();
        await Task.WhenAll(workers);
        return completed / stop.Elapsed.TotalSeconds;
    }
}

/// <summary>Drives a POST load with wrk and reads its requests per second; any non-2xx answer fails the run.</summary>
internal static class Wrk
{
    public static string? Find()
        => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "wrk")).FirstOrDefault(File.Exists);

    public static async Task<double> RunAsync(string wrk, Uri baseAddress, string function, int concurrency, TimeSpan duration, bool warmUp)
    {
        var script = Path.Combine(Path.GetTempPath(), $"trenv-wrk-{Environment.ProcessId}.lua");
        await File.WriteAllTextAsync(script, "wrk.method = \"POST\"\nwrk.body = \"benchmark\"\n");
        var psi = new ProcessStartInfo(wrk, ["-t2", $"-c{concurrency}", $"-d{(int)duration.TotalSeconds}s", "--timeout", "10s", "-s", script, new Uri(baseAddress, $"/v1/functions/{function}/invoke").ToString()])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(psi)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        File.Delete(script);
        if (!warmUp && (output.Contains("Non-2xx", StringComparison.Ordinal) || output.Contains("Socket errors", StringComparison.Ordinal)))
            throw new InvalidOperationException($"The throughput run had failed requests:\n{output}");
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("Requests/sec:", StringComparison.Ordinal))
                   ?? throw new InvalidOperationException($"wrk printed no rate:\n{output}");
        return double.Parse(line["Requests/sec:".Length..].Trim(), CultureInfo.InvariantCulture);
    }
}
