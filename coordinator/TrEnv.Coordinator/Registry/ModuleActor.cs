using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Event;
using Akka.Hosting;
using Akka.Persistence;
using TrEnv.Cluster;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Registry;

/// <summary>
/// One module's (or layer's) bytes, persisted once under their SHA-256. Workers fetch them from here, so a worker
/// that joins after a deploy can still run the function. Every store, and every deploy that names the bytes,
/// records when it referenced them; a <see cref="ModuleCommands.Remove"/> after a function's delete removes the
/// bytes from the journal unless something referenced them since the time it names.
/// </summary>
public sealed class ModuleActor : ReceivePersistentActor
{
    private byte[]? _wasm;
    private DateTimeOffset _referenced;

    public ModuleActor(string sha256)
    {
        PersistenceId = "module-" + sha256;
        Recover<ModuleEvents.Added>(e => _wasm = e.Wasm);
        Recover<ModuleEvents.Referenced>(e => _referenced = e.At);
        Recover<ModuleEvents.Dropped>(_ => _wasm = null);
        Command<ModuleCommands.Store>(store =>
        {
            var sender = Sender;
            if (_wasm is not null)
            {
                var size = _wasm.Length;
                Reference(() => sender.Tell(new ModuleReplies.Stored(store.Sha256, size)));
                return;
            }
            if (ModuleHash.Of(store.Wasm).Hex != store.Sha256)
            {
                Sender.Tell(new Status.Failure(new ArgumentException("The module bytes do not match their hash.")));
                return;
            }
            Persist(new ModuleEvents.Added(store.Sha256, store.Wasm), e =>
            {
                _wasm = e.Wasm;
                Reference(() =>
                {
                    sender.Tell(new ModuleReplies.Stored(e.Sha256, e.Wasm.Length));
                    // An upload's bytes are not kept past its request: the journal has them for the first fetch.
                    Context.Parent.Tell(new Passivate(PoisonPill.Instance));
                });
            });
        });
        Command<ModuleCommands.Fetch>(fetch => Sender.Tell(new ModuleReplies.Content(fetch.Sha256, _wasm)));
        Command<ModuleCommands.Has>(has =>
        {
            var sender = Sender;
            if (_wasm is null)
                sender.Tell(new ModuleReplies.Holds(has.Sha256, false, 0));
            else
            {
                var size = _wasm.LongLength;
                Reference(() => sender.Tell(new ModuleReplies.Holds(has.Sha256, true, size))); // a deploy is about to name them
            }
        });
        Command<ModuleCommands.Remove>(remove =>
        {
            var sender = Sender;
            if (_wasm is null)
            {
                sender.Tell(new ModuleReplies.Removed(remove.Sha256, false, "nothing is stored"));
                return;
            }
            if (_referenced >= remove.UnreferencedSince)
            {
                sender.Tell(new ModuleReplies.Removed(remove.Sha256, false, $"referenced at {_referenced:O}"));
                return;
            }
            // The journal keeps the highest event of a deleted range (marked deleted): a small marker goes last, so
            // the event that holds the bytes is deleted outright.
            Persist(new ModuleEvents.Dropped(remove.Sha256, DateTimeOffset.UtcNow), _ =>
            {
                _wasm = null;
                DeleteMessages(LastSequenceNr);
                sender.Tell(new ModuleReplies.Removed(remove.Sha256, true, "removed"));
            });
        });
        Command<DeleteMessagesSuccess>(_ => Context.Parent.Tell(new Passivate(PoisonPill.Instance)));
        Command<DeleteMessagesFailure>(f => Context.GetLogger().Warning("Module {0}: removing its bytes from the journal failed: {1}", PersistenceId, f.Cause.Message));
        // The bytes (up to a whole layer) stay in memory only while they are being asked for: an idle entity
        // passivates, and the journal has them for the next fetch.
        Context.SetReceiveTimeout(IdleRelease);
        Command<ReceiveTimeout>(_ => Context.Parent.Tell(new Passivate(PoisonPill.Instance)));
    }

    /// <summary>How long a module's bytes stay in memory after the last fetch (several workers fetch a new version at once).</summary>
    public static readonly TimeSpan IdleRelease = TimeSpan.FromSeconds(5);

    public override string PersistenceId { get; }

    private void Reference(Action then)
        => Persist(new ModuleEvents.Referenced(PersistenceId["module-".Length..], DateTimeOffset.UtcNow), e =>
        {
            _referenced = e.At;
            then();
        });
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
