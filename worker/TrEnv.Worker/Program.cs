using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Sandbox;
using TrEnv.Worker;

// A worker node: runs sandboxes and serves invocations placed on it by coordinators.
// Socket and pipe completions run on the socket engine's thread instead of a hop to the thread pool each: one
// wake-up then serves every invoke frame and sandbox reply that arrived together. Read before the first socket is
// used; paths that may run long leave that thread (InvocationPipeline, SandboxProcess). "0" in the environment keeps
// the hop.
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
var settings = NodeSettings.FromEnvironment(new Dictionary<string, string?>
{
    ["ROLES"] = Environment.GetEnvironmentVariable("TRENV_ROLES") ?? Roles.Worker,
});
var host = SandboxHostCommand.Resolve(settings.SandboxHost);
var builder = Host.CreateApplicationBuilder(args);
builder.Logging.AddTrEnvLogging(settings);
SandboxManager? manager = null;
builder.Services.AddTrEnvNode(settings, (akka, provider) => akka
    .AddRegistryProxies()
    .AddWorker(settings, Path.Combine(settings.DataDirectory, "healthy"), provider.GetRequiredService<ILoggerFactory>().CreateLogger("TrEnv.Worker"), (registry, _) => manager = new SandboxManager(settings, host,
        new RegistryClient(registry.Get<ModuleProxy>(), registry.Get<TemplateProxy>(), registry.Get<PoolAllocatorProxy>(), registry.Get<SessionProxy>()), provider.GetRequiredService<ILoggerFactory>())));
builder.Services.AddTrEnvTelemetry("trenv-worker", settings.Name, [NodeTelemetry.Worker]);
// The sandbox hosts' own steps, reported over their pipes, go out under their service name.
using var hostSpans = NodeTelemetry.ForeignSpans("trenv-sandbox-host", settings.Name, TrEnv.Sandbox.HostSpans.SourceName);
var app = builder.Build();
var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TrEnv.Worker");
app.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStarted
    .Register(() => log.LogInformation("TrEnv worker {Name}: sandbox host {Host} ({Kind})", settings.Name, host.FileName, host.Kind));
await app.RunAsync();
if (manager is not null)
    await manager.DisposeAsync();
