using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;

namespace TrEnv.Worker;

/// <summary>Reaches the coordinator-hosted module store and template registry through shard region proxies.</summary>
public sealed class RegistryClient(IActorRef modules, IActorRef templates, IActorRef pool, IActorRef sessions) : IRegistryClient
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    // A capture sits on the path of the invocation that triggered it, which is served cold anyway if the
    // registry (a shard mid hand-over, the pool service down) cannot answer quickly: the next cold start retries.
    private static readonly TimeSpan CaptureTimeout = TimeSpan.FromSeconds(5);

    public async Task<byte[]?> FetchModuleAsync(string sha256, CancellationToken ct)
        => (await modules.Ask<ModuleReplies.Content>(new ModuleCommands.Fetch(sha256), Timeout, ct)).Wasm;

    public Task<IProtocolMessage> BeginCaptureAsync(TemplateCommands.BeginCapture begin, CancellationToken ct)
        => templates.Ask<IProtocolMessage>(begin, CaptureTimeout, ct);

    public Task<IProtocolMessage> SealAsync(TemplateCommands.Seal seal, CancellationToken ct)
        => templates.Ask<IProtocolMessage>(seal, CaptureTimeout, ct);

    public void AbortCapture(TemplateCommands.AbortCapture abort) => templates.Tell(abort);

    public void ReportMappings(TemplateCommands.Mappings mappings) => templates.Tell(mappings);

    // A pause waits for these: the session's state is only safe once its delta is durable.
    private static readonly TimeSpan PoolTimeout = TimeSpan.FromSeconds(20);

    public Task<IProtocolMessage> AllocateAsync(string owner, long bytes, CancellationToken ct)
        => pool.Ask<IProtocolMessage>(new PoolCommands.Allocate(PoolCommands.DefaultPool, owner, bytes), PoolTimeout, ct);

    public Task<PoolReplies.Durable> SaveDurableAsync(string owner, CancellationToken ct)
        => pool.Ask<PoolReplies.Durable>(new PoolCommands.SaveDurable(PoolCommands.DefaultPool, owner), PoolTimeout, ct);

    public void FreeRegion(string owner) => pool.Tell(new PoolCommands.Free(PoolCommands.DefaultPool, owner));

    public void SessionIdle(SessionCommands.IdleExpired idle) => sessions.Tell(idle);
}

public sealed class ModuleProxy;
public sealed class TemplateProxy;
public sealed class PoolAllocatorProxy;
public sealed class SessionProxy;

public static class RegistryProxies
{
    public static AkkaConfigurationBuilder AddRegistryProxies(this AkkaConfigurationBuilder builder)
        => builder
            .WithShardRegionProxy<ModuleProxy>(Sharding.Modules, Roles.Coordinator, new Sharding.ModuleExtractor())
            .WithShardRegionProxy<TemplateProxy>(Sharding.Templates, Roles.Coordinator, new Sharding.TemplateExtractor())
            .WithShardRegionProxy<PoolAllocatorProxy>(Sharding.Pool, Roles.MemoryPool, new Sharding.PoolExtractor())
            .WithShardRegionProxy<SessionProxy>(Sharding.Sessions, Roles.Coordinator, new Sharding.SessionExtractor());
}
