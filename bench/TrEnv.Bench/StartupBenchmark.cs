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
                var spec = new InstanceSpec(function, hash, modules, 512L << 20, 30_000, 120_000, []);
                Load Cold() => new LoadCold(spec);
                var header = Path.Combine(templates, function + ".tpl");
                Load FromTemplate(LoadSource source) => new LoadFromTemplate(spec, new TemplatePages(header, poolPath, source));

                // Precompile once (the cache a deployment fills) and capture the template.
                await using (var first = Spawn())
                {
                    await first.LoadAsync(Cold());
                    var size = (await first.CaptureAsync(new Capture(poolPath, 0, 0, header, "bench"))).RequiredBytes;
                    var region = allocator.Allocate(size);
                    var captured = await first.CaptureAsync(new Capture(poolPath, region.Offset, region.Length, header, "bench"));
                    Console.WriteLine($"{function}: template of {captured.NonZeroPages:N0} non-zero pages ({captured.NonZeroPages * 4096 / 1048576.0:F1} MiB) of {captured.MemoryBytes / 1048576.0:F1} MiB memory, captured in {captured.CaptureMicros / 1000.0:F1} ms");
                    await first.LoadAsync(new LoadFromTemplate(spec, new TemplatePages(header, poolPath, LoadSource.MapTemplate, Verify: true)));
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

            var bySize = o.Sizes.Count > 0 ? await MeasureRestoreBySizeAsync(o, Spawn, modules, templates, poolPath, allocator) : null;

            PrintTable(cases);
            var json = BuildJson(cases, pss!);
            if (bySize is not null)
                json["restore_by_size"] = bySize;
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

    // Live instances restored from the template (each reading every page with "scan") against instances that each
    // ran init: total PSS at 1, 2, 4, ... up to --pss-instances, adding instances one at a time.
    private static async Task<JsonObject> MeasurePssAsync(BenchOptions o, Func<SandboxProcess> spawn, Func<Load> cold, Load map)
    {
        var steps = new List<int>();
        for (var n = 1; n < o.PssInstances; n *= 2)
            steps.Add(n);
        steps.Add(o.PssInstances);
        var sweep = steps.ToDictionary(n => n, _ => new Dictionary<string, double>());
        foreach (var (label, load) in new[] { ("map", map), ("init", cold()) })
        {
            var live = new List<SandboxProcess>();
            try
            {
                for (var i = 1; i <= o.PssInstances; i++)
                {
                    var sb = spawn();
                    live.Add(sb);
                    await sb.LoadAsync(load);
                    await sb.InvokeAsync("scan"u8.ToArray(), TimeSpan.FromSeconds(30));
                    if (!sweep.TryGetValue(i, out var at))
                        continue;
                    long total = 0;
                    foreach (var each in live)
                        total += (await each.StatsAsync()).PssBytes;
                    at[label] = total / 1048576.0;
                    Console.WriteLine($"heavy: {i} live instances ({label}): total PSS {at[label]:F1} MiB");
                }
            }
            finally
            {
                foreach (var sb in live)
                    await sb.DisposeAsync();
            }
        }
        var last = sweep[o.PssInstances];
        return new JsonObject
        {
            ["instances"] = o.PssInstances,
            ["map_total_mib"] = Math.Round(last["map"], 1),
            ["init_total_mib"] = Math.Round(last["init"], 1),
            ["map_over_init"] = Math.Round(last["map"] / last["init"], 3),
            ["sweep"] = new JsonArray(steps.Select(n => (JsonNode?)new JsonObject
            {
                ["instances"] = n,
                ["map_total_mib"] = Math.Round(sweep[n]["map"], 1),
                ["init_total_mib"] = Math.Round(sweep[n]["init"], 1),
            }).ToArray()),
        };
    }

    // Restore (map and copy) plus the first response of the sized guest, at each --sizes template size.
    private static async Task<JsonArray> MeasureRestoreBySizeAsync(BenchOptions o, Func<SandboxProcess> spawn, string modules, string templates,
        string poolPath, RegionAllocator allocator)
    {
        var results = new JsonArray();
        var hash = ModuleCache.Put(modules, File.ReadAllBytes(Path.Combine(o.Guests, "sized.wasm"))).Hex;
        foreach (var mb in o.Sizes)
        {
            var spec = new InstanceSpec("sized", hash, modules, (mb + 64L) << 20, 30_000, 120_000, [new("SIZE_MB", mb.ToString(CultureInfo.InvariantCulture))]);
            Load Cold() => new LoadCold(spec);
            var header = Path.Combine(templates, $"sized-{mb}.tpl");
            long nonZeroPages;
            Region region;
            await using (var first = spawn())
            {
                await first.LoadAsync(Cold());
                var size = (await first.CaptureAsync(new Capture(poolPath, 0, 0, header, "bench"))).RequiredBytes;
                region = allocator.Allocate(size);
                nonZeroPages = (await first.CaptureAsync(new Capture(poolPath, region.Offset, region.Length, header, "bench"))).NonZeroPages;
            }
            var byMode = new Dictionary<string, List<double>> { ["map"] = [], ["copy"] = [] };
            string? expected = null;
            for (var i = 0; i < o.Samples; i++)
            {
                foreach (var (mode, source) in new[] { ("map", LoadSource.MapTemplate), ("copy", LoadSource.CopyTemplate) })
                {
                    await using var sb = spawn();
                    await sb.StatsAsync();
                    var watch = Stopwatch.StartNew();
                    await sb.LoadAsync(new LoadFromTemplate(spec, new TemplatePages(header, poolPath, source)));
                    var output = Encoding.UTF8.GetString((await sb.InvokeAsync([], TimeSpan.FromSeconds(30))).Output);
                    byMode[mode].Add(watch.Elapsed.TotalMilliseconds);
                    expected ??= output;
                    if (output != expected)
                        throw new InvalidOperationException($"sized {mb} MiB {mode} answered \"{output}\" but the first answer was \"{expected}\".");
                }
            }
            allocator.Free(region);
            var templateMib = nonZeroPages * 4096 / 1048576.0;
            Console.WriteLine($"sized {mb} MiB: template {templateMib:F1} MiB; restore + first response p50: map {Stats.Percentile(byMode["map"], 50):F2} ms, copy {Stats.Percentile(byMode["copy"], 50):F2} ms");
            results.Add(new JsonObject
            {
                ["size_mib"] = mb,
                ["template_mib"] = Math.Round(templateMib, 1),
                ["map"] = Stats.Summary(byMode["map"]),
                ["copy"] = Stats.Summary(byMode["copy"]),
            });
        }
        return results;
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
                ["samples_ms"] = Stats.Samples(c.Millis),
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
