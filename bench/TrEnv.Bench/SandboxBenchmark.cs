using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TrEnv.Engine;
using TrEnv.MemoryPool;
using TrEnv.Sandbox;
using TrEnv.Sandbox.Isolation;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Bench;

/// <summary>
/// Repurposable sandboxes, in one run. Locally, with the worker's isolation (namespaces, own root, cgroup):
/// creating a sandbox ready for a function (process, namespaces, root, cgroup, engine warm-up, layer mount)
/// against repurposing one (purge and unmount the old layer, reset the cgroup and the engine, mount the new
/// layer); the memory of idle sandboxes, and how many fit in 4 GiB by the worker's own accounting. Over HTTP
/// against a cluster whose worker has one sandbox slot: heavy started from its template on a repurposed
/// sandbox (SWITCH) against on a newly created one.
/// </summary>
internal static class SandboxBenchmark
{
    private const long Bound = 4L << 30;

    public static async Task<int> RunAsync(BenchOptions o, string url)
    {
        var remote = await OverHttpAsync(o, url);
        var local = Environment.GetEnvironmentVariable("TRENV_BENCH_HTTP_ONLY") == "1" ? null : await LocalAsync(o);
        if (local is null)
            return 0;
        var result = new JsonObject
        {
            ["create"] = local["create"]!.DeepClone(),
            ["repurpose"] = local["repurpose"]!.DeepClone(),
            ["switch_start_heavy"] = remote["switch"]!.DeepClone(),
            ["new_start_heavy"] = remote["new"]!.DeepClone(),
            ["idle_sandbox_pss_mib"] = local["idle_sandbox_pss_mib"]!.DeepClone(),
            ["idle_sandboxes_in_4gib"] = local["idle_sandboxes_in_4gib"]!.DeepClone(),
            ["ratios"] = new JsonObject
            {
                ["create_over_repurpose_p50"] = Ratio(local, "create", "repurpose"),
                ["new_over_switch_start_p50"] = Ratio(remote, "new", "switch"),
            },
            ["details"] = new JsonObject { ["local"] = local, ["http"] = remote },
            ["measured_at"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
        Console.WriteLine();
        Console.WriteLine($"repurpose is {result["ratios"]!["create_over_repurpose_p50"]}x cheaper than create at p50; " +
                          $"a SWITCH start of heavy is {result["ratios"]!["new_over_switch_start_p50"]}x faster than a NEW one at p50 " +
                          $"({remote["switch"]!["p50_ms"]} ms vs {remote["new"]!["p50_ms"]} ms end to end)");
        var output = Path.Combine(Path.GetDirectoryName(o.Output)!, "sandbox.json");
        await File.WriteAllTextAsync(output, result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    private static double Ratio(JsonObject o, string slow, string fast)
        => Math.Round(o[slow]!["p50_ms"]!.GetValue<double>() / o[fast]!["p50_ms"]!.GetValue<double>(), 1);

    private static async Task<JsonObject> LocalAsync(BenchOptions o)
    {
        var host = SandboxHostCommand.Resolve();
        var work = Directory.CreateDirectory(Path.Combine(o.WorkRoot, "sandbox")).FullName;
        var sandboxes = new List<SandboxProcess>();
        using var cgroups = Namespaces.Available ? Cgroups.Detect($"bench-{Environment.ProcessId}") : null;
        try
        {
            var modules = Directory.CreateDirectory(Path.Combine(work, "modules")).FullName;
            var templates = Directory.CreateDirectory(Path.Combine(work, "templates")).FullName;
            var layers = Directory.CreateDirectory(Path.Combine(work, "layers")).FullName;
            var poolPath = Path.Combine(work, "pool");
            using var pool = PoolDevice.OpenOrCreate(poolPath, 512L << 20);
            var (rootBase, why) = Namespaces.Available ? SandboxRootfs.BuildBase(Path.Combine(work, "rootfs-base"), host) : (null, "not root");
            var command = Namespaces.Wrap(host, rootBase is null ? null : new SandboxRootfs(rootBase, [modules, templates, poolPath], [Path.GetDirectoryName(host.FileName)!, layers])) ?? host;
            var isolation = $"{command.Isolation}{(cgroups is null ? "" : "+cgroup-" + cgroups.Version.ToString().ToLowerInvariant())}";
            Console.WriteLine($"sandbox host: {host.FileName} ({host.Kind}); isolation: {isolation}{(why is null ? "" : $" ({why})")}; samples: {o.Samples}");

            // Two functions with a file layer each and different limits, so every repurpose has all of its work to do.
            var escape = ModuleCache.Put(modules, File.ReadAllBytes(Path.Combine(o.Guests, "escape.wasm"))).Hex;
            var functions = new[] { ("alpha", 256, 1000), ("beta", 128, 500) }.Select(f =>
            {
                var layer = Directory.CreateDirectory(Path.Combine(layers, f.Item1)).FullName;
                File.WriteAllText(Path.Combine(layer, "data.txt"), f.Item1);
                Load load = new LoadCold(new InstanceSpec(f.Item1, escape, modules, (long)f.Item2 << 20, 10_000, 60_000, []) { LayerPath = layer });
                return (Load: load, CgroupBytes: 2L * ((long)f.Item2 << 20) + (128L << 20), Cpus: f.Item3 / 1000.0);
            }).ToArray();
            var next = 0;

            async Task<SandboxProcess> CreateAsync()
            {
                var id = sandboxes.Count.ToString(CultureInfo.InvariantCulture);
                var cgroup = cgroups?.Create("sb" + id);
                cgroup?.SetLimits(640L << 20, 0);
                var sb = SandboxProcess.Start(command, Path.Combine(work, "sb", id), cgroup: cgroup);
                sandboxes.Add(sb);
                await sb.StatsAsync(); // up and warmed
                return sb;
            }

            // Create: everything before a function's first load on a new sandbox, plus its layer mount.
            var create = new List<double>();
            for (var i = 0; i < o.Samples; i++)
            {
                var watch = Stopwatch.StartNew();
                var sb = await CreateAsync();
                var elapsed = watch.Elapsed.TotalMilliseconds;
                var f = functions[next++ % 2];
                sb.Cgroup?.SetLimits(f.CgroupBytes, f.Cpus);
                var loaded = await sb.LoadAsync(f.Load);
                create.Add(elapsed + loaded.FilesMicros / 1000.0);
                await sb.ResetAsync(); // back to idle for the memory measurements
            }

            // Repurpose: on one sandbox, alternate the functions; each has dirtied /tmp before it is replaced.
            var repurpose = new List<double>();
            var resetOnly = new List<double>();
            var target = sandboxes[0];
            await target.LoadAsync(functions[0].Load);
            for (var i = 0; i < o.Samples * 3; i++)
            {
                await target.InvokeAsync("write:scratch"u8.ToArray(), TimeSpan.FromSeconds(10));
                var f = functions[(i + 1) % 2];
                var watch = Stopwatch.StartNew();
                await target.ResetAsync();
                target.Cgroup?.SetLimits(f.CgroupBytes, f.Cpus);
                var elapsed = watch.Elapsed.TotalMilliseconds;
                var loaded = await target.LoadAsync(f.Load);
                resetOnly.Add(elapsed);
                repurpose.Add(elapsed + loaded.FilesMicros / 1000.0);
                var seen = Encoding.UTF8.GetString((await target.InvokeAsync("read:scratch"u8.ToArray(), TimeSpan.FromSeconds(10))).Output);
                if (seen != "missing")
                    throw new InvalidOperationException($"A repurposed sandbox still had the previous function's file: {seen}");
            }
            await target.ResetAsync();

            // SWITCH inside one sandbox, without the cluster: hello is warm, heavy repurposes it from its template.
            var heavy = ModuleCache.Put(modules, File.ReadAllBytes(Path.Combine(o.Guests, "heavy.wasm"))).Hex;
            var hello = ModuleCache.Put(modules, File.ReadAllBytes(Path.Combine(o.Guests, "hello.wasm"))).Hex;
            var heavySpec = new InstanceSpec("heavy", heavy, modules, 256L << 20, 10_000, 60_000, []);
            Load heavyLoad = new LoadCold(heavySpec);
            var header = Path.Combine(templates, "heavy.tpl");
            await target.LoadAsync(heavyLoad);
            var size = (await target.CaptureAsync(new Capture(poolPath, 0, 0, header, "bench"))).RequiredBytes;
            await target.CaptureAsync(new Capture(poolPath, 0, size, header, "bench"));
            heavyLoad = new LoadFromTemplate(heavySpec, new TemplatePages(header, poolPath, LoadSource.MapTemplate));
            Load helloLoad = new LoadCold(heavySpec with { Function = "hello", ModuleHash = hello });
            var inSandbox = new List<double>();
            for (var i = 0; i < o.Samples * 3; i++)
            {
                await target.ResetAsync();
                await target.LoadAsync(helloLoad);
                await target.InvokeAsync("x"u8.ToArray(), TimeSpan.FromSeconds(10));
                var watch = Stopwatch.StartNew();
                await target.ResetAsync();
                await target.LoadAsync(heavyLoad);
                await target.InvokeAsync("1 2 3"u8.ToArray(), TimeSpan.FromSeconds(10));
                inSandbox.Add(watch.Elapsed.TotalMilliseconds);
            }
            await target.ResetAsync();

            // Idle sandboxes: PSS (host and its unshare parent) and what the worker's memory bound charges them.
            double pssMib = 0, chargedMib = 0;
            foreach (var sb in sandboxes)
            {
                pssMib += ((await sb.StatsAsync()).PssBytes + (Namespaces.ChildOf(sb.Pid) is not null ? ProcessMemory.PssBytes(sb.Pid) : 0)) / 1048576.0;
                chargedMib += sb.ChargedMemoryBytes() / 1048576.0;
            }
            pssMib /= sandboxes.Count;
            chargedMib /= sandboxes.Count;
            Console.WriteLine($"idle sandbox: PSS {pssMib:F1} MiB, charged {chargedMib:F1} MiB (mean of {sandboxes.Count})");

            // Fill a 4 GiB bound with idle sandboxes, counted as TRENV_WORKER_MEMORY_MB counts them.
            var fillWatch = Stopwatch.StartNew();
            var cap = 1600;
            long total = sandboxes.Sum(s => s.ChargedMemoryBytes());
            while (total < Bound && sandboxes.Count < cap && fillWatch.Elapsed < TimeSpan.FromMinutes(3))
            {
                total += (await CreateAsync()).ChargedMemoryBytes();
                if (sandboxes.Count % 100 == 0)
                {
                    total = sandboxes.Sum(s => s.ChargedMemoryBytes());
                    Console.WriteLine($"  {sandboxes.Count} idle sandboxes hold {total / 1048576.0:F0} MiB");
                }
            }
            // Reached by the running count (each new sandbox's charge as it started, re-summed every 100):
            // the last sandbox started is the one that crossed the bound.
            var reached = total >= Bound;
            total = sandboxes.Sum(s => s.ChargedMemoryBytes());
            var perSandbox = (double)total / sandboxes.Count;
            var fits = reached ? sandboxes.Count - 1 : (int)(Bound / perSandbox);
            var fillPss = sandboxes.Take(50).Select(s => ProcessMemory.PssBytes(Namespaces.ChildOf(s.Pid) ?? s.Pid)).Average() / 1048576.0;
            Console.WriteLine(reached
                ? $"{fits} idle sandboxes fit in 4 GiB (filled until the bound in {fillWatch.Elapsed.TotalSeconds:F0} s: {sandboxes.Count} hold {total / 1048576.0:F0} MiB now)"
                : $"{sandboxes.Count} idle sandboxes hold {total / 1048576.0:F0} MiB ({perSandbox / 1048576.0:F1} MiB each): {fits} fit in 4 GiB at that rate (the run stopped at {cap} sandboxes)");

            Print("create", create);
            Print("repurpose", repurpose);
            Print("reset only", resetOnly);
            Print("switch heavy (in sandbox)", inSandbox);
            return new JsonObject
            {
                ["isolation"] = isolation,
                ["create"] = Stats.Summary(create),
                ["repurpose"] = Stats.Summary(repurpose),
                ["repurpose_without_layer_mount"] = Stats.Summary(resetOnly),
                ["switch_start_heavy_in_sandbox"] = Stats.Summary(inSandbox),
                ["idle_sandbox_pss_mib"] = Math.Round(pssMib, 1),
                ["idle_sandbox_charged_mib"] = Math.Round(chargedMib, 1),
                ["idle_sandbox_pss_mib_when_filled"] = Math.Round(fillPss, 1),
                ["idle_sandboxes_in_4gib"] = fits,
                ["idle_sandboxes_in_4gib_method"] = reached
                    ? "started idle sandboxes until their cgroup charge (what TRENV_WORKER_MEMORY_MB counts) crossed 4 GiB; the count before the one that crossed it"
                    : $"mean cgroup charge of {sandboxes.Count} started idle sandboxes, extrapolated to 4 GiB",
                ["idle_sandboxes_in_4gib_by_pss"] = (int)(Bound / (pssMib * 1048576.0)),
            };
        }
        finally
        {
            await Task.WhenAll(sandboxes.Select(s => s.DisposeAsync().AsTask()));
            Directory.Delete(work, recursive: true);
        }
    }

    private static async Task<JsonObject> OverHttpAsync(BenchOptions o, string url)
    {
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(2) };
        var input = Encoding.UTF8.GetBytes(string.Join(' ', Enumerable.Range(1, 20).Select(i => i * 7919 * 1013)));
        await E2eBenchmark.DeployAsync(http, "heavy", File.ReadAllBytes(Path.Combine(o.Guests, "heavy.wasm")), "");
        await E2eBenchmark.DeployAsync(http, "hello", File.ReadAllBytes(Path.Combine(o.Guests, "hello.wasm")), "");
        Console.WriteLine($"cluster: {url} (one sandbox slot per worker, none pre-started); 30 warm-up rounds first");
        await E2eBenchmark.TimedInvokeAsync(http, "heavy", input, null, null); // cold: captures the template
        await E2eBenchmark.TimedInvokeAsync(http, "hello", input, null, null);

        var switched = new List<double>();
        var created = new List<double>();
        // The first rounds are warm-up, not counted: the nodes' JIT reaches its steady tier on these paths.
        const int warmUp = 30;
        for (var i = 0; i < warmUp + Math.Max(o.Samples, 20); i++)
        {
            if (i == warmUp)
            {
                switched.Clear();
                created.Clear();
            }
            // SWITCH: the only sandbox holds hello, idle; heavy repurposes it and maps its template.
            await E2eBenchmark.TimedInvokeAsync(http, "hello", input, null, null);
            await Settle();
            switched.Add(await E2eBenchmark.TimedInvokeAsync(http, "heavy", input, "template", "repurposed"));
            // NEW: heavy's sandbox is shut down first, so the worker must create one.
            (await http.PostAsync("/v1/functions/heavy/scale-to-zero?destroy=true", null)).EnsureSuccessStatusCode();
            await Settle();
            created.Add(await E2eBenchmark.TimedInvokeAsync(http, "heavy", input, "template", "new"));
        }
        Print("switch start", switched);
        Print("new start", created);
        return new JsonObject { ["switch"] = Stats.Summary(switched), ["new"] = Stats.Summary(created) };
    }

    // The same pause before every timed start of either kind: the previous step's background work (a
    // destroyed sandbox exiting, status broadcasts) is a cost of that step, not of the start measured next.
    private static Task Settle() => Task.Delay(100);

    private static void Print(string name, List<double> v)
        => Console.WriteLine($"{name,-26} n={v.Count,4}  min {v.Min(),8:F3} ms  p50 {Stats.Percentile(v, 50),8:F3} ms  p99 {Stats.Percentile(v, 99),8:F3} ms");
}
