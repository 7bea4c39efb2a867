using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TrEnv.Cluster.Runtimes;
using TrEnv.Engine;
using TrEnv.MemoryPool;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Bench;

/// <summary>
/// The Python and Ruby sample tools end to end through a coordinator (cold, template on a repurposed sandbox, warm), and
/// the PSS of 16 live instances restored from one template against 16 that each ran the script's top level,
/// through the sandbox protocol as the startup benchmark measures heavy.
/// </summary>
internal static class RuntimesBenchmark
{
    private sealed record Tool(string Key, ScriptRuntime Runtime, string File, string Input);

    private static readonly Tool[] Tools =
    [
        new("python_imports", ScriptRuntimes.Python, "text_report.py", "compare: the quick fox\nThe quick brown fox jumps over the lazy dog"),
        new("python_json", ScriptRuntimes.Python, "json_transform.py", """{"records":[{"a":2,"b":"x"},{"a":1,"b":"y"}],"sort":"a","select":["b"]}"""),
        new("python_regex", ScriptRuntimes.Python, "regex_extract.py", "mail bob@example.com at https://x.org/a on 2026-11-27 for $12.50"),
        new("python_calc", ScriptRuntimes.Python, "calc.py", "(19.99 * 3) / 7"),
        new("ruby", ScriptRuntimes.Ruby, "word_count.rb", "top: 2\nThe cat and the hat; the cat sat."),
    ];

    public static async Task<int> RunAsync(BenchOptions o, string url, string runtimesDirectory)
    {
        foreach (var runtime in Tools.Select(t => t.Runtime).Distinct())
        {
            if (!File.Exists(Path.Combine(runtimesDirectory, runtime.ModuleFile)))
            {
                Console.Error.WriteLine($"{Path.Combine(runtimesDirectory, runtime.ModuleFile)} is missing: scripts/build-python.sh and scripts/fetch-ruby.sh install the runtimes.");
                return 1;
            }
        }
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(2) };
        Console.WriteLine($"cluster: {url}; samples: {o.Samples}; runtimes in {runtimesDirectory}");
        var result = new JsonObject();

        // One unmeasured cold start per runtime: the worker's first compile of the interpreter module (20-30 MB)
        // is a one-time cost of the node (its module cache keeps the compiled code), not of any script's cold start.
        await DeployAsync(http, "warmup-python", ScriptRuntimes.Python, "def handle(r):\n    return r\n", "env.SAMPLE=warmup");
        await E2eBenchmark.TimedInvokeAsync(http, "warmup-python", [], "cold");
        await DeployAsync(http, "warmup-ruby", ScriptRuntimes.Ruby, "def handle(r) = r\n", "env.SAMPLE=warmup");
        await E2eBenchmark.TimedInvokeAsync(http, "warmup-ruby", [], "cold");

        foreach (var tool in Tools)
        {
            var source = await File.ReadAllTextAsync(Path.Combine(Path.GetDirectoryName(o.Guests)!, tool.Runtime.Name, tool.File));
            var module = Path.Combine(runtimesDirectory, tool.Runtime.ModuleFile);
            var input = Encoding.UTF8.GetBytes(tool.Input);
            var name = tool.Key.Replace('_', '-');

            // Cold: each sample a new version (another env), so the script's top level runs and a template is captured.
            var cold = new List<double>();
            for (var i = 0; i < Math.Max(5, o.Samples / 3); i++)
            {
                await DeployAsync(http, name + "-cold", tool.Runtime, source, $"env.SAMPLE={i}");
                cold.Add(await E2eBenchmark.TimedInvokeAsync(http, name + "-cold", input, "cold"));
            }
            // Template: scale to zero before each sample, so a sandbox is repurposed and the template mapped.
            await DeployAsync(http, name, tool.Runtime, source, "");
            await E2eBenchmark.TimedInvokeAsync(http, name, input, "cold");
            // A start the worker put on a new sandbox instead (its idle ones were busy being reset) is not this
            // measurement: it is retried, at most twice the samples over.
            var template = new List<double>();
            for (var attempt = 0; template.Count < o.Samples && attempt < 3 * o.Samples; attempt++)
            {
                (await http.PostAsync($"/v1/functions/{name}/scale-to-zero", null)).EnsureSuccessStatusCode();
                var (ms, start, sandbox) = await E2eBenchmark.TimedAsync(http, name, input);
                if (start != "template")
                    throw new InvalidOperationException($"{name} started {start} after scale-to-zero; this sample measures template starts.");
                if (sandbox == "repurposed")
                    template.Add(ms);
            }
            if (template.Count < o.Samples)
                throw new InvalidOperationException($"{name}: only {template.Count} of {o.Samples} template starts landed on a repurposed sandbox.");
            var warm = new List<double>();
            for (var i = 0; i < Math.Max(100, o.Samples); i++)
                warm.Add(await E2eBenchmark.TimedInvokeAsync(http, name, input, "warm"));

            var pss = await MeasurePssAsync(o, tool.Runtime, module, runtimesDirectory, source, input);
            result[tool.Key] = new JsonObject
            {
                ["script"] = $"guests/{tool.Runtime.Name}/{tool.File}",
                ["cold"] = Stats.Summary(cold),
                ["template"] = Stats.Summary(template),
                ["warm"] = Stats.Summary(warm),
                ["cold_over_template_p50"] = Math.Round(Stats.Percentile(cold, 50) / Stats.Percentile(template, 50), 1),
                ["pss"] = pss,
            };
            Console.WriteLine($"{tool.Key,-15} p50 cold {Stats.Percentile(cold, 50),8:F2} ms  template {Stats.Percentile(template, 50),6:F2} ms  warm {Stats.Percentile(warm, 50),6:F2} ms  "
                + $"cold/template {result[tool.Key]!["cold_over_template_p50"]}x  PSS of 16: {pss["template_total_mib"]} vs {pss["init_total_mib"]} MiB");
        }
        result["host"] = SandboxHostCommand.Resolve().Kind;
        result["measured_at"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);
        var output = Path.Combine(Path.GetDirectoryName(o.Output)!, "runtimes.json");
        await File.WriteAllTextAsync(output, result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    private static async Task DeployAsync(HttpClient http, string name, ScriptRuntime runtime, string source, string query)
    {
        var response = await http.PutAsync($"/v1/functions/{name}?runtime={runtime.Name}{(query.Length > 0 ? "&" + query : "")}", new StringContent(source));
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"Deploying {name} failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }

    // 16 sandbox hosts each restored from one template of the script, against 16 that each ran its top level;
    // every instance answers one request first. PSS counts the shared template pages once across them.
    private static async Task<JsonObject> MeasurePssAsync(BenchOptions o, ScriptRuntime runtime, string module, string runtimesDirectory, string source, byte[] input)
    {
        const int Instances = 16;
        var work = Path.Combine(o.WorkRoot, "runtimes-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(work);
        try
        {
            var host = SandboxHostCommand.Resolve();
            var modules = Path.Combine(work, "modules");
            var hash = ModuleCache.Put(modules, await File.ReadAllBytesAsync(module)).Hex;
            var layer = Directory.CreateDirectory(Path.Combine(work, "layer")).FullName;
            await File.WriteAllTextAsync(Path.Combine(layer, runtime.ScriptFile), source);
            var poolPath = Path.Combine(work, "pool");
            using var pool = PoolDevice.OpenOrCreate(poolPath, 512L << 20);
            var allocator = new RegionAllocator(pool.Capacity);
            var header = Path.Combine(work, "script.tpl");
            var readOnly = runtime.ReadOnly.Select(kv => new KeyValuePair<string, string>(Path.Combine(runtimesDirectory, kv.Key), kv.Value)).ToList();
            var spec = new InstanceSpec("script", hash, modules, 256L << 20, 30_000, 120_000, []) { LayerPath = layer, ReadOnlyDirectories = readOnly };
            Load cold = new LoadCold(spec);
            var count = 0;
            SandboxProcess Spawn() => SandboxProcess.Start(host, Path.Combine(work, "sb", (++count).ToString(CultureInfo.InvariantCulture)));

            await using (var first = Spawn())
            {
                await first.LoadAsync(cold);
                var size = (await first.CaptureAsync(new Capture(poolPath, 0, 0, header, "bench"))).RequiredBytes;
                var region = allocator.Allocate(size);
                await first.CaptureAsync(new Capture(poolPath, region.Offset, region.Length, header, "bench"));
            }
            var totals = new Dictionary<string, double>();
            foreach (var (label, load) in new[] { ("template", (Load)new LoadFromTemplate(spec, new TemplatePages(header, poolPath, LoadSource.MapTemplate))), ("init", cold) })
            {
                var live = new List<SandboxProcess>();
                try
                {
                    for (var i = 0; i < Instances; i++)
                    {
                        var sb = Spawn();
                        live.Add(sb);
                        await sb.LoadAsync(load);
                        await sb.InvokeAsync(input, TimeSpan.FromSeconds(30));
                    }
                    long total = 0;
                    foreach (var sb in live)
                        total += (await sb.StatsAsync()).PssBytes;
                    totals[label] = total / 1048576.0;
                }
                finally
                {
                    foreach (var sb in live)
                        await sb.DisposeAsync();
                }
            }
            return new JsonObject
            {
                ["instances"] = Instances,
                ["template_total_mib"] = Math.Round(totals["template"], 1),
                ["init_total_mib"] = Math.Round(totals["init"], 1),
                ["template_over_init"] = Math.Round(totals["template"] / totals["init"], 3),
            };
        }
        finally
        {
            try
            {
                Directory.Delete(work, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
