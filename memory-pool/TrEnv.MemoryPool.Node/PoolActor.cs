using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Persistence;
using TrEnv.Cluster;
using TrEnv.Contracts;

namespace TrEnv.MemoryPool.Node;

/// <summary>The persistent allocator of one pool device; freeing a region also gives its memory back (hole punch).</summary>
public sealed class PoolActor : ReceivePersistentActor
{
    private readonly PoolState _state;
    private readonly PoolDevice _device;

    public PoolActor(string pool, PoolDevice device)
    {
        _device = device;
        _state = new PoolState(device.Capacity);
        PersistenceId = "pool-" + pool;
        Recover<IEvent>(_state.Apply);
        Command<PoolCommands.IPoolCommand>(command =>
        {
            var (reply, e) = _state.Process(command);
            if (e is null)
            {
                Sender.Tell(reply);
                return;
            }
            var sender = Sender;
            Persist(e, evt =>
            {
                _state.Apply(evt);
                if (evt is PoolEvents.Freed f)
                    _device.Release(PoolState.FromWire(f.Region));
                sender.Tell(reply);
            });
        });
    }

    public override string PersistenceId { get; }
}

public sealed class PoolRegionKey;

public static class PoolActorRegistration
{
    public static AkkaConfigurationBuilder AddPoolAllocator(this AkkaConfigurationBuilder builder, PoolDevice device)
        => builder.WithShardRegion<PoolRegionKey>(Sharding.Pool,
            pool => Props.Create(() => new PoolActor(pool, device)),
            new Sharding.PoolExtractor(),
            new ShardOptions { Role = Roles.MemoryPool, RememberEntities = false });
}
