using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TrEnv.Bench.Tracing;

/// <summary>
/// What tracing costs (./bench.sh e2e): hello's warm throughput on a cluster in one tracing mode, merged into e2e.json
/// under "tracing" as MODE_rps; once "off" and another mode are there, their ratios to off too. Modes: off
/// (OTEL_SDK_DISABLED, no spans at all), none (spans propagated, no exporter: the default), otlp (every span exported),
/// otlp_sampled (one trace in a hundred exported).
/// </summary>
internal static class TracingCost
{
    public static async Task<int> RunAsync(BenchOptions o, string url, string mode, string output)
    {
        const int concurrency = 16;
        var seconds = int.Parse(Environment.GetEnvironmentVariable("TRENV_BENCH_SECONDS") ?? "5", CultureInfo.InvariantCulture);
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency * 2 }) { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(2) };
        await E2eBenchmark.DeployAsync(http, "hello", await File.ReadAllBytesAsync(Path.Combine(o.Guests, "hello.wasm")), "");
        var rps = await E2eBenchmark.ThroughputAsync(http, "hello", concurrency, TimeSpan.FromSeconds(seconds));
        Console.WriteLine($"tracing {mode}: hello warm {rps:F0} invocations/s at concurrency {concurrency}");

        // A mode measured more than once (each on a fresh cluster) keeps every run and counts their median: one stalled
        // run (this machine has them) would move a mean by more than the difference measured.
        var root = File.Exists(output) ? JsonNode.Parse(await File.ReadAllTextAsync(output))!.AsObject() : [];
        if (root["tracing"] is not JsonObject tracing || tracing["measured_at"]?.GetValue<string>() != root["measured_at"]?.GetValue<string>())
            root["tracing"] = tracing = new JsonObject { ["measured_at"] = root["measured_at"]?.GetValue<string>() };
        if (tracing[$"{mode}_runs"] is not JsonArray runs)
            tracing[$"{mode}_runs"] = runs = [];
        runs.Add(Math.Round(rps, 0));
        tracing[$"{mode}_rps"] = Math.Round(Median(runs.Select(r => r!.GetValue<double>()).ToList()), 0);
        tracing["hello_concurrency"] = concurrency;
        // Each none run over the off run just before it (the machine's speed drifts between runs more than the cost
        // measured): their median is the cost with the drift taken out.
        if (mode == "none" && tracing["off_runs"] is JsonArray offs && offs.Count == runs.Count)
        {
            var pairs = runs.Zip(offs, (n, f) => n!.GetValue<double>() / f!.GetValue<double>()).ToList();
            tracing["none_over_off_pairs"] = new JsonArray([.. pairs.Select(r => (JsonNode)Math.Round(r, 3))]);
            tracing["none_over_off_paired_median"] = Math.Round(Median(pairs), 3);
        }
        if (tracing["off_rps"]?.GetValue<double>() is { } off and > 0)
        {
            foreach (var other in new[] { "none", "otlp", "otlp_sampled" })
                if (tracing[$"{other}_rps"]?.GetValue<double>() is { } value)
                    tracing[$"{other}_over_off"] = Math.Round(value / off, 3);
        }
        await File.WriteAllTextAsync(output, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return 0;
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        var mid = values.Count / 2;
        return values.Count % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
    }

    /// <summary>trenv-bench sink PORT: an OTLP receiver that keeps running (and counting) until it is sent SIGTERM or SIGINT.</summary>
    public static async Task<int> SinkAsync(int port)
    {
        using var sink = new OtlpSink(port);
        using var stop = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token);
        }
        catch (OperationCanceledException)
        {
        }
        Console.WriteLine($"OTLP receiver on port {port}: {sink.Spans.Count} spans received");
        return 0;
    }
}
