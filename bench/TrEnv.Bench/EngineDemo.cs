using System.Diagnostics;
using System.Text;
using TrEnv.Engine;
using TrEnv.MemoryPool;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Bench;

/// <summary>What ./run.sh shows until the cluster exists: one function's life through the engine.</summary>
internal static class EngineDemo
{
    public static async Task<int> RunAsync(BenchOptions o)
    {
        var host = SandboxHostCommand.Resolve();
        var work = Directory.CreateDirectory(o.WorkRoot).FullName;
        try
        {
            var modules = Path.Combine(work, "modules");
            var poolPath = Path.Combine(work, "pool");
            using var pool = PoolDevice.OpenOrCreate(poolPath, 512L << 20);
            var allocator = new RegionAllocator(pool.Capacity);
            Console.WriteLine($"sandbox host: {host.FileName} ({host.Kind}); pool: {poolPath}");

            foreach (var (function, input) in new[] { ("hello", "world"), ("heavy", "7919 15838 23757") })
            {
                var hash = ModuleCache.Put(modules, File.ReadAllBytes(Path.Combine(o.Guests, function + ".wasm"))).Hex;
                var spec = new InstanceSpec(function, hash, modules, 512L << 20, 10_000, 60_000, []);
                var cold = new LoadCold(spec);
                var header = Path.Combine(work, function + ".tpl");

                await using var a = SandboxProcess.Start(host, Path.Combine(work, function + "-a"));
                var watch = Stopwatch.StartNew();
                await a.LoadAsync(cold);
                var initMs = watch.Elapsed.TotalMilliseconds;

                // The template is the post-init state: capture before the first invocation.
                var size = (await a.CaptureAsync(new Capture(poolPath, 0, 0, header, "demo"))).RequiredBytes;
                var region = allocator.Allocate(size);
                var captured = await a.CaptureAsync(new Capture(poolPath, region.Offset, region.Length, header, "demo"));
                Console.WriteLine($"{function,-6} init     {initMs,8:F2} ms; captured {captured.NonZeroPages:N0} non-zero pages into pool region {region}");
                watch.Restart();
                var output = await a.InvokeAsync(Encoding.UTF8.GetBytes(input), TimeSpan.FromSeconds(10));
                Console.WriteLine($"{function,-6} first    {watch.Elapsed.TotalMilliseconds,8:F2} ms  -> {Encoding.UTF8.GetString(output.Output)}");

                await using var b = SandboxProcess.Start(host, Path.Combine(work, function + "-b"));
                await b.StatsAsync();
                watch.Restart();
                await b.LoadAsync(new LoadFromTemplate(spec, new TemplatePages(header, poolPath, LoadSource.MapTemplate)));
                output = await b.InvokeAsync(Encoding.UTF8.GetBytes(input), TimeSpan.FromSeconds(10));
                Console.WriteLine($"{function,-6} template {watch.Elapsed.TotalMilliseconds,8:F2} ms  -> {Encoding.UTF8.GetString(output.Output)}");

                watch.Restart();
                output = await b.InvokeAsync(Encoding.UTF8.GetBytes(input), TimeSpan.FromSeconds(10));
                Console.WriteLine($"{function,-6} warm     {watch.Elapsed.TotalMilliseconds,8:F2} ms  -> {Encoding.UTF8.GetString(output.Output)}");
            }
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}
