using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Persistence;
using Akka.Persistence.Journal;
using TrEnv.Cluster;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Registry;

/// <summary>The sharded, persistent function entity: persists what <see cref="FunctionState"/> decides, then replies.</summary>
public sealed class FunctionActor : ReceivePersistentActor
{
    private FunctionState _state;

    public FunctionActor(string name)
    {
        _state = FunctionState.Empty(name);
        PersistenceId = "function-" + name;
        Recover<IEvent>(e => _state = _state.Apply(e));
        // Journals that keep the Tagged wrapper (the in-memory one) hand it back on recovery.
        Recover<Tagged>(t => { if (t.Payload is IEvent e) _state = _state.Apply(e); });
        Command<FunctionCommands.IFunctionCommand>(Handle);
    }

    public override string PersistenceId { get; }

    private void Handle(FunctionCommands.IFunctionCommand command)
    {
        var (reply, e) = _state.Process(command, DateTimeOffset.UtcNow);
        if (e is null)
        {
            Sender.Tell(reply);
            return;
        }
        var sender = Sender;
        Persist(new Tagged(e, [FunctionEvents.Tag]), _ =>
        {
            _state = _state.Apply(e);
            sender.Tell(reply);
            Context.System.EventStream.Publish(e);
        });
    }
}

public sealed class FunctionRegion;

public static class FunctionActorRegistration
{
    /// <summary>Hosts the function entities on coordinator nodes.</summary>
    public static AkkaConfigurationBuilder AddFunctionRegistry(this AkkaConfigurationBuilder builder)
        => builder.WithShardRegion<FunctionRegion>(Sharding.Functions,
            name => Props.Create(() => new FunctionActor(name)),
            new Sharding.FunctionExtractor(),
            new ShardOptions { Role = Roles.Coordinator, RememberEntities = false });
}
