using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TrEnv.Bench.Tracing;

/// <summary>
/// What exporting spans costs (./bench.sh e2e): hello's warm throughput on a fresh cluster in one tracing mode, merged
/// into e2e.json under "tracing" as MODE_rps; once "off" and another mode are there, their ratios to off too. Modes:
/// off (OTEL_SDK_DISABLED, no spans at all), none (no exporter, the default), otlp (every span exported), otlp_sampled
/// (one trace in a hundred exported). The few per cent between off and none is measured by <see cref="TracingPaired"/>:
/// fresh clusters differ by more than that here.
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
        tracing[$"{mode}_rps"] = Math.Round(Stats.Median(runs.Select(r => r!.GetValue<double>()).ToList()), 0);
        tracing["hello_concurrency"] = concurrency;
        if (tracing["off_rps"]?.GetValue<double>() is { } off and > 0)
        {
            foreach (var other in new[] { "none", "otlp", "otlp_sampled" })
                if (tracing[$"{other}_rps"]?.GetValue<double>() is { } value)
                    tracing[$"{other}_over_off"] = Math.Round(value / off, 3);
        }
        await File.WriteAllTextAsync(output, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return 0;
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
