using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TrEnv.Engine;
using TrEnv.MemoryPool;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Bench;

/// <summary>
/// Startup paths measured from "sandbox host process with nothing loaded" to "first response", through
/// the real sandbox protocol: cold (load, init, handle), copy-restore, map-restore and warm. Every
/// sample of a start path uses a fresh host process; modes are interleaved so noise hits them alike.
/// </summary>
internal static class StartupBenchmark
{
    private static readonly string[] Modes = ["cold", "copy", "map"];

    private sealed record Case(string Function, string Mode, List<double> Millis, List<double>? HostLoadMillis = null, List<double>? HostExecMillis = null);

    public static async Task<int> RunAsync(BenchOptions o)
    {
        var host = SandboxHostCommand.Resolve();
        Console.WriteLine($"sandbox host: {host.FileName} ({host.Kind}); samples per case: {o.Samples}; work dir: {o.WorkRoot}");
        Directory.CreateDirectory(o.WorkRoot);
        try
        {
            var modules = Path.Combine(o.WorkRoot, "modules");
            var templates = Directory.CreateDirectory(Path.Combine(o.WorkRoot, "templates")).FullName;
            var poolPath = Path.Combine(o.WorkRoot, "pool");
            using var pool = PoolDevice.OpenOrCreate(poolPath, 1L << 30);
            var allocator = new RegionAllocator(pool.Capacity);
            var sandboxCount = 0;
            SandboxProcess Spawn() => SandboxProcess.Start(host, Path.Combine(o.WorkRoot, "sb", (++sandboxCount).ToString(CultureInfo.InvariantCulture)));

            var cases = new List<Case>();
            var inputs = new Dictionary<string, byte[]>
            {
                ["hello"] = "benchmark"u8.ToArray(),
                ["heavy"] = Encoding.UTF8.GetBytes(string.Join(' ', Enumerable.Range(1, 20).Select(i => i * 7919 * 1013))),
            };
            JsonObject? pss = null;
            foreach (var (function, input) in inputs)
            {
                var hash = ModuleCache.Put(modules, File.ReadAllBytes(Path.Combine(o.Guests, function + ".wasm"))).Hex;
                Load Cold() => new(function, hash, modules, LoadSource.Init, null, null, false, 512L << 20, 30_000, 120_000, []);
                var header = Path.Combine(templates, function + ".tpl");
                Load FromTemplate(LoadSource source) => Cold() with { Source = source, TemplatePath = header, PoolPath = poolPath };

                // Precompile once (the cache a deployment fills) and capture the template.
                await using (var first = Spawn())
                {
                    await first.LoadAsync(Cold());
                    var size = (await first.CaptureAsync(new Capture(poolPath, 0, 0, header, "bench"))).RequiredBytes;
                    var region = allocator.Allocate(size);
                    var captured = await first.CaptureAsync(new Capture(poolPath, region.Offset, region.Length, header, "bench"));
                    Console.WriteLine($"{function}: template of {captured.NonZeroPages:N0} non-zero pages ({captured.NonZeroPages * 4096 / 1048576.0:F1} MiB) of {captured.MemoryBytes / 1048576.0:F1} MiB memory, captured in {captured.CaptureMicros / 1000.0:F1} ms");
                    await first.LoadAsync(FromTemplate(LoadSource.MapTemplate) with { VerifyTemplateData = true });
                }

                var byMode = Modes.ToDictionary(m => m, m => new Case(function, m, [], [], []));
                string? expected = null;
                for (var i = 0; i < o.Samples; i++)
                {
                    foreach (var mode in Modes)
                    {
                        await using var sb = Spawn();
                        await sb.StatsAsync(); // the process is up and idle: nothing loaded
                        var load = mode switch
                        {
                            "cold" => Cold(),
                            "copy" => FromTemplate(LoadSource.CopyTemplate),
                            _ => FromTemplate(LoadSource.MapTemplate),
                        };
                        var watch = Stopwatch.StartNew();
                        var loaded = await sb.LoadAsync(load);
                        var result = await sb.InvokeAsync(input, TimeSpan.FromSeconds(30));
                        byMode[mode].Millis.Add(watch.Elapsed.TotalMilliseconds);
                        byMode[mode].HostLoadMillis!.Add(loaded.LoadMicros / 1000.0);
                        byMode[mode].HostExecMillis!.Add(result.ExecMicros / 1000.0);
                        var text = Encoding.UTF8.GetString(result.Output);
                        expected ??= text;
                        if (text != expected)
                            throw new InvalidOperationException($"{function} {mode} answered \"{text}\" but the first answer was \"{expected}\".");
                    }
                }
                cases.AddRange(byMode.Values);

                await using (var warm = Spawn())
                {
                    await warm.LoadAsync(Cold());
                    await warm.InvokeAsync(input, TimeSpan.FromSeconds(30));
                    var millis = new List<double>();
                    for (var i = 0; i < Math.Max(o.Samples, 200); i++)
                    {
                        var watch = Stopwatch.StartNew();
                        await warm.InvokeAsync(input, TimeSpan.FromSeconds(30));
                        millis.Add(watch.Elapsed.TotalMilliseconds);
                    }
                    cases.Add(new Case(function, "warm", millis));
                }

                if (function == "heavy")
                    pss = await MeasurePssAsync(o, Spawn, Cold, FromTemplate(LoadSource.MapTemplate));
            }

            PrintTable(cases);
            var json = BuildJson(cases, pss!);
            Directory.CreateDirectory(Path.GetDirectoryName(o.Output)!);
            await File.WriteAllTextAsync(o.Output, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            Console.WriteLine($"wrote {o.Output}");
            var ratios = json["ratios"]!;
            Console.WriteLine($"heavy: cold/map p50 = {ratios["cold_over_map_p50"]}x, copy/map p50 = {ratios["copy_over_map_p50"]}x, map PSS / init PSS = {json["pss"]!["map_over_init"]}");
            return 0;
        }
        finally
        {
            try
            {
                Directory.Delete(o.WorkRoot, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    // N live instances each restored from the template (and every page read by "scan"), against N that each ran init.
    private static async Task<JsonObject> MeasurePssAsync(BenchOptions o, Func<SandboxProcess> spawn, Func<Load> cold, Load map)
    {
        var totals = new Dictionary<string, double>();
        foreach (var (label, load) in new[] { ("map", map), ("init", cold()) })
        {
            var live = new List<SandboxProcess>();
            try
            {
                for (var i = 0; i < o.PssInstances; i++)
                {
                    var sb = spawn();
                    live.Add(sb);
                    await sb.LoadAsync(load);
                    await sb.InvokeAsync("scan"u8.ToArray(), TimeSpan.FromSeconds(30));
                }
                long total = 0;
                foreach (var sb in live)
                    total += (await sb.StatsAsync()).PssBytes;
                totals[label] = total / 1048576.0;
                Console.WriteLine($"heavy: {o.PssInstances} live instances ({label}): total PSS {totals[label]:F1} MiB");
            }
            finally
            {
                foreach (var sb in live)
                    await sb.DisposeAsync();
            }
        }
        return new JsonObject
        {
            ["instances"] = o.PssInstances,
            ["map_total_mib"] = Math.Round(totals["map"], 1),
            ["init_total_mib"] = Math.Round(totals["init"], 1),
            ["map_over_init"] = Math.Round(totals["map"] / totals["init"], 3),
        };
    }

    private static JsonObject BuildJson(List<Case> cases, JsonObject pss)
    {
        var list = new JsonArray();
        foreach (var c in cases)
        {
            list.Add(new JsonObject
            {
                ["function"] = c.Function,
                ["mode"] = c.Mode,
                ["n"] = c.Millis.Count,
                ["min_ms"] = Math.Round(c.Millis.Min(), 3),
                ["p50_ms"] = Math.Round(Stats.Percentile(c.Millis, 50), 3),
                ["p99_ms"] = Math.Round(Stats.Percentile(c.Millis, 99), 3),
            });
        }
        double P50(string f, string m) => Stats.Percentile(cases.Single(c => c.Function == f && c.Mode == m).Millis, 50);
        var byFunction = new JsonObject();
        foreach (var f in cases.Select(c => c.Function).Distinct())
        {
            byFunction[f] = new JsonObject
            {
                ["cold_over_map_p50"] = Math.Round(P50(f, "cold") / P50(f, "map"), 1),
                ["copy_over_map_p50"] = Math.Round(P50(f, "copy") / P50(f, "map"), 1),
            };
        }
        return new JsonObject
        {
            ["cases"] = list,
            ["ratios"] = byFunction["heavy"]!.DeepClone(),
            ["ratios_by_function"] = byFunction,
            ["pss"] = pss,
            ["host"] = SandboxHostCommand.Resolve().Kind,
            ["measured_at"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
    }

    private static void PrintTable(List<Case> cases)
    {
        Console.WriteLine();
        Console.WriteLine($"{"function",-8} {"mode",-6} {"n",5} {"min ms",9} {"p50 ms",9} {"p99 ms",9}   in host: {"load p50",9} {"exec p50",9}");
        foreach (var c in cases)
        {
            var inHost = c.HostLoadMillis is { Count: > 0 } l ? $"{Stats.Percentile(l, 50),9:F3} {Stats.Percentile(c.HostExecMillis!, 50),9:F3}" : "";
            Console.WriteLine($"{c.Function,-8} {c.Mode,-6} {c.Millis.Count,5} {c.Millis.Min(),9:F3} {Stats.Percentile(c.Millis, 50),9:F3} {Stats.Percentile(c.Millis, 99),9:F3}             {inHost}");
        }
        Console.WriteLine();
    }
}
