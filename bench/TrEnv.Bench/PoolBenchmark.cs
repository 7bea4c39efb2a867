using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpc.Net.Client;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool.Protocol;
using TrEnv.Sandbox;
using TrEnv.Worker;
using static TrEnv.Sandbox.SandboxMessages;
using PoolGrpc = TrEnv.MemoryPool.Protocol.MemoryPool;

namespace TrEnv.Bench;

/// <summary>
/// heavy restored on a node that has never seen it, through the real pool service: mapped from the CXL
/// pool file; over gRPC eagerly, lazily (userfaultfd) and with its working set prefetched; and copied in
/// (everything fetched, then every page copied: the baseline). Each sample is a fresh sandbox host and,
/// for the rdma modes, a fresh node-local mirror; the time is from asking for the template to the first
/// response; network bytes are what the pool service sent.
/// </summary>
internal static class PoolBenchmark
{
    private static readonly string[] Modes = ["cxl_map", "rdma_eager", "rdma_lazy", "rdma_prefetch", "copy"];

    public static async Task<int> RunAsync(BenchOptions o, string url, string poolPath)
    {
        var host = SandboxHostCommand.Resolve();
        var work = Directory.CreateDirectory(Path.Combine(o.WorkRoot, "pool-bench")).FullName;
        using var channel = GrpcChannel.ForAddress(url);
        var client = new PoolGrpc.MemoryPoolClient(channel);
        var capacity = (await client.StatsAsync(new StatsRequest())).Capacity;
        var modules = Directory.CreateDirectory(Path.Combine(work, "modules")).FullName;
        var templates = Directory.CreateDirectory(Path.Combine(work, "templates")).FullName;
        var hash = ModuleCache.Put(modules, File.ReadAllBytes(Path.Combine(o.Guests, "heavy.wasm"))).Hex;
        var input = Encoding.UTF8.GetBytes(string.Join(' ', Enumerable.Range(1, 20).Select(i => i * 7919 * 1013)));
        var owner = $"bench-heavy-{Environment.ProcessId}@1";
        var header = Path.Combine(templates, "heavy.tpl");
        var mirrors = 0;
        PoolCache Mirror(bool lazy) => new(Path.Combine(work, $"mirror-{++mirrors}", "pool"), capacity, url, null, lazy);
        var sandboxes = 0;
        SandboxProcess Spawn() => SandboxProcess.Start(host, Path.Combine(work, "sb", (++sandboxes).ToString(CultureInfo.InvariantCulture)));
        var spec = new InstanceSpec("heavy", hash, modules, 512L << 20, 30_000, 120_000, []);
        Load Cold() => new LoadCold(spec);

        // Capture heavy into the pool through the service, as an rdma worker does.
        string expected;
        TemplateInfo template;
        using (var seed = Mirror(lazy: false))
        await using (var sb = Spawn())
        {
            await sb.LoadAsync(Cold());
            var size = (await sb.CaptureAsync(new Capture(seed.Path, 0, 0, header, "bench"))).RequiredBytes;
            var region = await client.AllocateAsync(new AllocateRequest { Owner = owner, Bytes = size });
            var captured = await sb.CaptureAsync(new Capture(seed.Path, region.Offset, region.Length, header, "bench"));
            await seed.UploadAsync(owner, TemplateHeader.Read(header), CancellationToken.None);
            template = new TemplateInfo(owner, "heavy", 1, hash, new PoolRegion(region.Offset, region.Length), captured.NonZeroPages, captured.MemoryBytes,
                "bench", DateTimeOffset.UtcNow, File.ReadAllBytes(header));
            expected = Encoding.UTF8.GetString((await sb.InvokeAsync(input, TimeSpan.FromSeconds(30))).Output);
        }
        var templateMib = template.NonZeroPages * 4096 / 1048576.0;
        Console.WriteLine($"heavy: template of {templateMib:F1} MiB in the pool at {url}; {o.Samples} samples per mode; host {host.Kind}");

        // One lazy restore records the working set, as the first node to run the template would.
        using (var first = Mirror(lazy: true))
        await using (var sb = Spawn())
        {
            await first.PrepareLazyAsync(template, prefetch: false, CancellationToken.None);
            await sb.LoadAsync(new LoadFromTemplate(spec, new TemplatePages(header, first.Path, LoadSource.LazyTemplate, PageSocket: first.PageSocket)));
            await sb.InvokeAsync(input, TimeSpan.FromSeconds(30));
            await first.PublishWorkingSetAsync(template, CancellationToken.None);
        }

        var millis = Modes.ToDictionary(m => m, _ => new List<double>());
        var net = Modes.ToDictionary(m => m, _ => new List<double>());
        for (var i = 0; i < o.Samples; i++)
        {
            foreach (var mode in Modes)
            {
                using var cache = mode == "cxl_map" ? null : Mirror(lazy: mode is "rdma_lazy" or "rdma_prefetch");
                await using var sb = Spawn();
                await sb.StatsAsync(); // up and warmed: process start is not part of a restore
                Load load;
                var watch = Stopwatch.StartNew();
                switch (mode)
                {
                    case "cxl_map":
                        load = new LoadFromTemplate(spec, new TemplatePages(header, poolPath, LoadSource.MapTemplate));
                        break;
                    case "rdma_eager" or "copy":
                        await cache!.EnsureAsync(template, CancellationToken.None);
                        load = new LoadFromTemplate(spec, new TemplatePages(header, cache.Path, mode == "copy" ? LoadSource.CopyTemplate : LoadSource.MapTemplate));
                        break;
                    default:
                        await cache!.PrepareLazyAsync(template, mode == "rdma_prefetch", CancellationToken.None);
                        load = new LoadFromTemplate(spec, new TemplatePages(header, cache.Path, LoadSource.LazyTemplate, PageSocket: cache.PageSocket));
                        break;
                }
                await sb.LoadAsync(load);
                var output = Encoding.UTF8.GetString((await sb.InvokeAsync(input, TimeSpan.FromSeconds(30))).Output);
                millis[mode].Add(watch.Elapsed.TotalMilliseconds);
                net[mode].Add((cache?.BytesFetched ?? 0) / 1048576.0);
                if (output != expected)
                    throw new InvalidOperationException($"{mode} answered {output}, the cold run {expected}.");
            }
        }
        await client.FreeAsync(new OwnerRequest { Owner = owner });

        var result = new JsonObject
        {
            ["template_mib"] = Math.Round(templateMib, 1),
            ["modes"] = new JsonObject(Modes.Select(m => KeyValuePair.Create(m, (JsonNode?)new JsonObject
            {
                ["n"] = millis[m].Count,
                ["p50_ms"] = Math.Round(Stats.Percentile(millis[m], 50), 3),
                ["p99_ms"] = Math.Round(Stats.Percentile(millis[m], 99), 3),
                ["net_mib"] = Math.Round(net[m].Average(), 2),
            }))),
            ["ratios"] = new JsonObject
            {
                ["copy_over_lazy_p50"] = Ratio(millis, "copy", "rdma_lazy", 50),
                ["copy_over_lazy_p99"] = Ratio(millis, "copy", "rdma_lazy", 99),
                ["copy_over_prefetch_p50"] = Ratio(millis, "copy", "rdma_prefetch", 50),
                ["copy_over_prefetch_p99"] = Ratio(millis, "copy", "rdma_prefetch", 99),
                ["prefetch_net_over_template"] = Math.Round(net["rdma_prefetch"].Average() / templateMib, 3),
            },
            ["host"] = host.Kind,
            ["measured_at"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
        Console.WriteLine();
        Console.WriteLine($"{"mode",-14} {"n",4} {"p50 ms",9} {"p99 ms",9} {"net MiB",9}");
        foreach (var m in Modes)
            Console.WriteLine($"{m,-14} {millis[m].Count,4} {Stats.Percentile(millis[m], 50),9:F3} {Stats.Percentile(millis[m], 99),9:F3} {net[m].Average(),9:F2}");
        Console.WriteLine($"copy/lazy p50 {result["ratios"]!["copy_over_lazy_p50"]}x p99 {result["ratios"]!["copy_over_lazy_p99"]}x; copy/prefetch p50 {result["ratios"]!["copy_over_prefetch_p50"]}x p99 {result["ratios"]!["copy_over_prefetch_p99"]}x; prefetch moved {result["ratios"]!["prefetch_net_over_template"]} of the template");
        var outputPath = Path.Combine(Path.GetDirectoryName(o.Output)!, "pool.json");
        await File.WriteAllTextAsync(outputPath, result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"wrote {outputPath}");
        Directory.Delete(work, recursive: true);
        return 0;
    }

    private static double Ratio(Dictionary<string, List<double>> m, string slow, string fast, double p)
        => Math.Round(Stats.Percentile(m[slow], p) / Stats.Percentile(m[fast], p), 1);
}
