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

    public PoolActor(string pool, PoolDevice device, PoolDurability durability, int sessionPercent = 100, int templatePercent = 100)
    {
        _device = device;
        _state = new PoolState(device.Capacity, device.Capacity / 100 * sessionPercent, device.Capacity / 100 * templatePercent);
        PersistenceId = "pool-" + pool;
        Recover<IEvent>(_state.Apply);
        Recover<RecoveryCompleted>(_ =>
        {
            // The pool may be new (lost, recreated empty) or stale: check every sealed region against its copy.
            var owners = _state.Owners.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
            durability.Suspect(owners.Keys);
            durability.Enqueue(() => durability.Rebuild(owners));
        });
        Command<PoolCommands.Sealed>(s =>
        {
            if (_state.Owners.TryGetValue(s.Owner, out var region))
                durability.Enqueue(() => durability.Save(s.Owner, region));
        });
        Command<PoolCommands.SaveDurable>(s =>
        {
            if (!_state.Owners.TryGetValue(s.Owner, out var region))
            {
                Sender.Tell(new PoolReplies.Durable(s.Owner, false, $"The pool holds no region for {s.Owner}."));
                return;
            }
            var sender = Sender;
            durability.Enqueue(() => durability.Save(s.Owner, region)).ContinueWith(_ => sender.Tell(durability.HasCopy(s.Owner)
                ? new PoolReplies.Durable(s.Owner, true, null)
                : new PoolReplies.Durable(s.Owner, false, $"The durable copy of {s.Owner} could not be written (see the memory pool's log).")), TaskScheduler.Default);
        });
        Command<PoolCommands.Find>(f => Sender.Tell(new PoolReplies.Found(f.Owner,
            _state.Owners.TryGetValue(f.Owner, out var region) ? PoolState.ToWire(region) : null, durability.IsReadable(f.Owner))));
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
                {
                    _device.Release(PoolState.FromWire(f.Region));
                    durability.Enqueue(() => durability.Delete(f.Owner));
                }
                sender.Tell(reply);
            });
        });
    }

    public override string PersistenceId { get; }
}

public sealed class PoolRegionKey;

public static class PoolActorRegistration
{
    public static AkkaConfigurationBuilder AddPoolAllocator(this AkkaConfigurationBuilder builder, PoolDevice device, PoolDurability durability, int sessionPercent, int templatePercent)
        => builder.WithShardRegion<PoolRegionKey>(Sharding.Pool,
            pool => Props.Create(() => new PoolActor(pool, device, durability, sessionPercent, templatePercent)),
            new Sharding.PoolExtractor(),
            new ShardOptions { Role = Roles.MemoryPool, RememberEntities = false });
}
