using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TrEnv.Bench.Tracing;

/// <summary>
/// What telemetry costs with no exporter, measured so the machine's drift cancels (./bench.sh e2e). One coordinator per
/// mode joins one cluster and they share its worker: <c>none</c> (the default: no exporter, metrics on, answers carry a
/// traceparent), <c>no_tracing</c> (OTEL_PROPAGATORS=none: no tracing code runs at all, metrics on) and <c>off</c>
/// (OTEL_SDK_DISABLED=true: no tracing and no metrics). Each round loads every coordinator with one short wrk burst,
/// the order cycling through every permutation, so a round's ratios compare bursts seconds apart; fresh clusters
/// differ here by up to a quarter, far more than the costs asked about. ./bench.sh runs it twice with the modes moved
/// to other processes (a process's own luck cancels too) and merges every round into e2e.json under tracing.paired:
/// for none/no_tracing (what tracing costs) and none/off (what all of the telemetry costs), the median ratio and a
/// bootstrap 95% interval of that median.
/// </summary>
internal static class TracingPaired
{
    private const int Concurrency = 16;

    public static readonly string[] Modes = ["none", "no_tracing", "off"];

    /// <summary>The ratios reported: name, numerator mode, denominator mode.</summary>
    private static readonly (string Name, string Of, string Over)[] Ratios = [("tracing", "none", "no_tracing"), ("telemetry", "none", "off")];

    public static async Task<int> RunAsync(BenchOptions o, IReadOnlyDictionary<string, Uri> urls, int phase, string output)
    {
        var rounds = Setting("TRENV_TRACING_ROUNDS", 30);
        var burst = TimeSpan.FromSeconds(Setting("TRENV_TRACING_BURST_SECONDS", 3));
        var wrk = Wrk.Find() ?? throw new InvalidOperationException("The paired tracing measurement needs wrk (Debian package wrk): an in-process client would share the cores it measures.");
        if (Modes.FirstOrDefault(m => !urls.ContainsKey(m)) is { } missing)
            throw new ArgumentException($"No coordinator for mode {missing}.");
        using (var http = new HttpClient { BaseAddress = urls["none"], Timeout = TimeSpan.FromMinutes(2) })
            await E2eBenchmark.DeployAsync(http, "hello", await File.ReadAllBytesAsync(Path.Combine(o.Guests, "hello.wasm")), "");
        // Each coordinator's JIT reaches its steady tier, and the worker scales to the concurrency, before anything
        // counts; alternating, so none has sat idle longer when the rounds begin.
        for (var i = 0; i < 3; i++)
            foreach (var mode in Modes)
                await Wrk.RunAsync(wrk, urls[mode], "hello", Concurrency, TimeSpan.FromSeconds(5), warmUp: true);

        var orders = Permutations(Modes).ToList();
        var rps = Modes.ToDictionary(m => m, _ => new List<double>());
        for (var round = 0; round < rounds; round++)
        {
            // Every order in turn: no mode always runs first or right after another (a burst can find the cores warmer or busier).
            foreach (var mode in orders[round % orders.Count])
                rps[mode].Add(await Wrk.RunAsync(wrk, urls[mode], "hello", Concurrency, burst, warmUp: false));
            Console.WriteLine($"tracing paired round {round + 1}/{rounds}: " + string.Join(", ", Modes.Select(m => $"{m} {rps[m][round]:F0}/s ({urls[m].Port})"))
                + "; " + string.Join(", ", Ratios.Select(r => $"{r.Of}/{r.Over} {rps[r.Of][round] / rps[r.Over][round]:F3}")));
        }

        var root = File.Exists(output) ? JsonNode.Parse(await File.ReadAllTextAsync(output))!.AsObject() : [];
        if (root["tracing"] is not JsonObject tracing || tracing["measured_at"]?.GetValue<string>() != root["measured_at"]?.GetValue<string>())
            root["tracing"] = tracing = new JsonObject { ["measured_at"] = root["measured_at"]?.GetValue<string>() };
        // Phase 1 starts the measurement afresh; later phases add their rounds to it.
        if (phase == 1 || tracing["paired"] is not JsonObject paired)
            tracing["paired"] = paired = new JsonObject { ["hello_concurrency"] = Concurrency, ["burst_seconds"] = burst.TotalSeconds, ["phases"] = new JsonArray() };
        var phases = paired["phases"]!.AsArray();
        phases.Add(new JsonObject
        {
            ["phase"] = phase,
            ["ports"] = new JsonObject(Modes.Select(m => KeyValuePair.Create(m, (JsonNode?)urls[m].Port))),
            ["rps"] = new JsonObject(Modes.Select(m => KeyValuePair.Create(m, (JsonNode?)new JsonArray([.. rps[m].Select(v => (JsonNode)Math.Round(v, 0))])))),
        });

        List<double> All(string mode) => [.. phases.SelectMany(p => p!["rps"]![mode]!.AsArray().Select(v => v!.GetValue<double>()))];
        paired["rounds"] = All("none").Count;
        foreach (var mode in Modes)
            paired[$"{mode}_rps_median"] = Math.Round(Stats.Median(All(mode)), 0);
        foreach (var (name, of, over) in Ratios)
        {
            var ratios = All(of).Zip(All(over), (a, b) => a / b).ToList();
            var (low, high) = Stats.MedianInterval(ratios, 0.95);
            paired[name] = new JsonObject
            {
                ["ratio"] = $"{of}/{over}",
                ["median"] = Math.Round(Stats.Median(ratios), 3),
                ["ci95"] = new JsonArray(Math.Round(low, 3), Math.Round(high, 3)),
                // The most the cost can be at 95% confidence: one minus the interval's low end, in per cent (0 if negative).
                ["cost_percent_upper"] = Math.Round(Math.Max(0, (1 - low) * 100), 1),
            };
            Console.WriteLine($"tracing paired: {ratios.Count} rounds, {of}/{over} median {Stats.Median(ratios):F3}, 95% interval [{low:F3}, {high:F3}]");
        }
        await File.WriteAllTextAsync(output, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return 0;
    }

    private static IEnumerable<string[]> Permutations(string[] items)
        => items.Length <= 1 ? [items] : items.SelectMany((first, i) => Permutations([.. items.Where((_, j) => j != i)]).Select(rest => (string[])[first, .. rest]));

    private static int Setting(string name, int fallback)
        => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v
            ? int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new InvalidOperationException($"{name} \"{v}\" is not a positive whole number.")
            : fallback;
}
