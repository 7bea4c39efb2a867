using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Akka.Persistence;
using TrEnv.Cluster;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Registry;

/// <summary>
/// One module's bytes, persisted once under their SHA-256. Workers fetch modules from here, so a worker
/// that joins after a deploy can still run the function.
/// </summary>
public sealed class ModuleActor : ReceivePersistentActor
{
    private byte[]? _wasm;

    public ModuleActor(string sha256)
    {
        PersistenceId = "module-" + sha256;
        Recover<ModuleEvents.Added>(e => _wasm = e.Wasm);
        Command<ModuleCommands.Store>(store =>
        {
            if (_wasm is not null)
            {
                Sender.Tell(new ModuleReplies.Stored(store.Sha256, _wasm.Length));
                return;
            }
            if (ModuleHash.Of(store.Wasm).Hex != store.Sha256)
            {
                Sender.Tell(new Status.Failure(new ArgumentException("The module bytes do not match their hash.")));
                return;
            }
            var sender = Sender;
            Persist(new ModuleEvents.Added(store.Sha256, store.Wasm), e =>
            {
                sender.Tell(new ModuleReplies.Stored(e.Sha256, e.Wasm.Length));
                // An upload's bytes are not kept past its request: the journal has them for the first fetch.
                Context.Parent.Tell(new Passivate(PoisonPill.Instance));
                _wasm = e.Wasm;
            });
        });
        Command<ModuleCommands.Fetch>(fetch => Sender.Tell(new ModuleReplies.Content(fetch.Sha256, _wasm)));
        Command<ModuleCommands.Has>(has => Sender.Tell(new ModuleReplies.Holds(has.Sha256, _wasm is not null, _wasm?.LongLength ?? 0)));
        // The bytes (up to a whole layer) stay in memory only while they are being asked for: an idle entity
        // passivates, and the journal has them for the next fetch.
        Context.SetReceiveTimeout(IdleRelease);
        Command<ReceiveTimeout>(_ => Context.Parent.Tell(new Passivate(PoisonPill.Instance)));
    }

    /// <summary>How long a module's bytes stay in memory after the last fetch (several workers fetch a new version at once).</summary>
    public static readonly TimeSpan IdleRelease = TimeSpan.FromSeconds(5);

    public override string PersistenceId { get; }
}

public sealed class ModuleRegion;

public static class ModuleActorRegistration
{
    public static AkkaConfigurationBuilder AddModuleStore(this AkkaConfigurationBuilder builder)
        => builder.WithShardRegion<ModuleRegion>(Sharding.Modules,
            sha => Props.Create(() => new ModuleActor(sha)),
            new Sharding.ModuleExtractor(),
            new ShardOptions { Role = Roles.Coordinator, RememberEntities = false });
}
