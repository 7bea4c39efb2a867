using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.MemoryPool;
using TrEnv.MemoryPool.Node;

// The memory-pool node: creates the pool device, owns its allocator and the templates' durable copies,
// and serves the pool over gRPC (HTTP/2 without TLS) for workers that do not map it.
var settings = NodeSettings.FromEnvironment(new Dictionary<string, string?>
{
    ["ROLES"] = Environment.GetEnvironmentVariable("TRENV_ROLES") ?? Roles.MemoryPool,
});
using var device = PoolDevice.OpenOrCreate(settings.PoolPath, settings.PoolSizeMb * 1024 * 1024);
var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.AddTrEnvLogging(settings);
builder.WebHost.ConfigureKestrel(k =>
{
    if (settings.PoolGrpcPort > 0)
    {
        var host = settings.PoolGrpcHost ?? settings.Hostname;
        k.Listen(System.Net.IPAddress.Parse(host == "localhost" ? "127.0.0.1" : host), settings.PoolGrpcPort, l => l.Protocols = HttpProtocols.Http2);
    }
    k.Limits.MaxRequestBodySize = null; // capture streams are bounded by the region, checked per chunk
});
builder.Services.AddSingleton(device);
builder.Services.AddSingleton(s => new PoolDurability(device, Path.Combine(settings.DataDirectory, "durable"), s.GetRequiredService<ILogger<PoolDurability>>()));
builder.Services.AddSingleton(new SharedSecretInterceptor(settings.PoolSecret));
builder.Services.AddGrpc(o =>
{
    o.Interceptors.Add<SharedSecretInterceptor>();
    o.MaxReceiveMessageSize = 8 << 20;
    o.MaxSendMessageSize = 8 << 20;
});
// grpc.health.v1 (service "") and /healthz answer from the same checks: serving once this node is an Up member.
builder.Services.AddGrpcHealthChecks().AddCheck<ClusterMemberCheck>("cluster-member");
// The pool's gRPC server calls (rdma workers' page fetches and uploads) join the worker's trace when it exports one.
builder.Services.AddTrEnvTelemetry("trenv-memory-pool", settings.Name, [],
    tracing: t => t.AddAspNetCoreInstrumentation(o => o.Filter = c => !c.Request.Path.StartsWithSegments("/grpc.health.v1") && !c.Request.Path.StartsWithSegments("/healthz")),
    metrics: m => m.AddAspNetCoreInstrumentation());
builder.Services.AddTrEnvNode(settings, (akka, services) => akka.AddPoolAllocator(device, services.GetRequiredService<PoolDurability>(), settings.SessionPoolPercent, settings.TemplatePoolPercent));
var app = builder.Build();
// Resolved now, not when the node first asks for it: the durable directory is created before the node starts.
var durability = app.Services.GetRequiredService<PoolDurability>();
// A TrEnv category: the node's logging filter shows only those at information level.
var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TrEnv.MemoryPool.Node");
app.MapGrpcService<PoolService>();
app.MapGrpcHealthChecksService();
// For the compose health check (HTTP/2 without TLS, as the port serves gRPC).
app.MapHealthChecks("/healthz");
app.Lifetime.ApplicationStarted.Register(() =>
{
    // Start the allocator entity now, so a lost pool is rebuilt from the durable copies before anyone asks.
    app.Services.GetRequiredService<ActorRegistry>().Get<PoolRegionKey>().Tell(new PoolCommands.Stats(PoolCommands.DefaultPool), Akka.Actor.ActorRefs.NoSender);
    var grpc = settings.PoolGrpcPort > 0 ? $"gRPC on {settings.PoolGrpcHost ?? settings.Hostname}:{settings.PoolGrpcPort}{(settings.PoolSecret is null ? "" : " (shared secret)")}" : "no gRPC";
    log.LogInformation("TrEnv memory pool {Name}: {PoolPath} ({PoolSizeMb} MiB); durable copies in {DurableDirectory}; {Grpc}", settings.Name, settings.PoolPath, settings.PoolSizeMb, durability.Directory, grpc);
});
await app.RunAsync();
