using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.MemoryPool;
using TrEnv.MemoryPool.Node;

// The memory-pool node: creates the pool device and owns its allocator.
var settings = NodeSettings.FromEnvironment(new Dictionary<string, string?>
{
    ["ROLES"] = Environment.GetEnvironmentVariable("TRENV_ROLES") ?? Roles.MemoryPool,
});
using var device = PoolDevice.OpenOrCreate(settings.PoolPath, settings.PoolSizeMb * 1024 * 1024);
var builder = Host.CreateApplicationBuilder(args);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Services.AddTrEnvNode(settings, (akka, _) => akka.AddPoolAllocator(device));
var host = builder.Build();
host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStarted
    .Register(() => Console.WriteLine($"TrEnv memory pool {settings.Name}: {settings.PoolPath} ({settings.PoolSizeMb} MiB)"));
await host.RunAsync();
