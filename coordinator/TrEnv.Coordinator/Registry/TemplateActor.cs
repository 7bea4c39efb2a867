using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Event;
using Akka.Hosting;
using Akka.Persistence;
using Akka.Persistence.Journal;
using TrEnv.Cluster;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Registry;

/// <summary>
/// The sharded, persistent template entity. Region allocation is delegated to the pool allocator on the
/// memory-pool node; while that answer is pending, other commands wait in the stash.
/// </summary>
public sealed class TemplateActor : ReceivePersistentActor
{
    // Under the worker's 5 s wait for a capture lease, so a pool that is down is answered as a refusal, not a timeout.
    private static readonly TimeSpan PoolTimeout = TimeSpan.FromSeconds(3);
    private readonly IActorRef _pool;
    private TemplateState _state;

    public TemplateActor(string key, IActorRef pool)
    {
        _pool = pool;
        _state = TemplateState.Empty(key);
        PersistenceId = "template-" + key;
        Recover<IEvent>(e => _state = _state.Apply(e));
        // Journals that keep the Tagged wrapper (the in-memory one) hand it back on recovery.
        Recover<Tagged>(t => { if (t.Payload is IEvent e) _state = _state.Apply(e); });
        Ready();
    }

    public override string PersistenceId { get; }

    private void Ready()
    {
        Command<TemplateCommands.BeginCapture>(Begin);
        Command<TemplateCommands.Mappings>(m =>
        {
            _state = _state.WithMappings(m.Worker, m.Count);
            Sender.Tell(new TemplateReplies.Ack(m.Key));
            FreeIfUnused();
        });
        Command<TemplateCommands.ITemplateCommand>(command =>
        {
            var (reply, e) = _state.Process(command, DateTimeOffset.UtcNow);
            if (e is null)
            {
                Sender.Tell(reply);
                return;
            }
            var sender = Sender;
            PersistTagged(e, () =>
            {
                sender.Tell(reply);
                if (e is TemplateEvents.CaptureAborted)
                    _pool.Tell(new PoolCommands.Free(PoolCommands.DefaultPool, _state.Key));
                // Templates are a cache of a durable copy the pool keeps, never the only copy.
                if (e is TemplateEvents.Sealed)
                    _pool.Tell(new PoolCommands.Sealed(PoolCommands.DefaultPool, _state.Key));
                FreeIfUnused();
            });
        });
    }

    private void Begin(TemplateCommands.BeginCapture begin)
    {
        if (_state.Decide(begin, DateTimeOffset.UtcNow) is { } answer)
        {
            Sender.Tell(answer);
            return;
        }
        // New lease: get a region first (idempotent per key), then persist the lease.
        var sender = Sender;
        AllocateAsync(begin.Bytes).PipeTo(Self, success: r => new Allocated(begin, sender, r), failure: ex => new Allocated(begin, sender, ex));
        BecomeStacked(() =>
        {
            Command<Allocated>(done =>
            {
                UnbecomeStacked();
                Stash.UnstashAll();
                if (done.Result is PoolRegion region)
                {
                    PersistTagged(new TemplateEvents.CaptureStarted(_state.Key, begin.Function, begin.Version, begin.Sha256, begin.Worker, region, DateTimeOffset.UtcNow),
                        () => done.ReplyTo.Tell(new TemplateReplies.CaptureGranted(_state.Key, region)));
                }
                else
                {
                    var reason = done.Result is Exception ex ? ex.Message : done.Result?.ToString() ?? "no answer";
                    Context.GetLogger().Warning("Template {0}: no pool region: {1}", _state.Key, reason);
                    done.ReplyTo.Tell(new TemplateReplies.CaptureRefused(_state.Key, "no pool region: " + reason, null));
                }
            });
            CommandAny(_ => Stash.Stash());
        });
    }

    private async Task<object> AllocateAsync(long bytes)
    {
        var reply = await _pool.Ask<IProtocolMessage>(new PoolCommands.Allocate(PoolCommands.DefaultPool, _state.Key, bytes), PoolTimeout).ConfigureAwait(false);
        if (reply is PoolReplies.Allocated a && a.Region.Length < bytes)
        {
            // A region left by an expired lease is too small for this capture: replace it.
            await _pool.Ask<PoolReplies.Freed>(new PoolCommands.Free(PoolCommands.DefaultPool, _state.Key), PoolTimeout).ConfigureAwait(false);
            reply = await _pool.Ask<IProtocolMessage>(new PoolCommands.Allocate(PoolCommands.DefaultPool, _state.Key, bytes), PoolTimeout).ConfigureAwait(false);
        }
        return reply switch
        {
            PoolReplies.Allocated ok => ok.Region,
            PoolReplies.Full full => full.Message,
            _ => $"unexpected pool answer {reply.GetType().Name}",
        };
    }

    private void FreeIfUnused()
    {
        if (!_state.ShouldFree)
            return;
        var region = _state.Region!;
        PersistTagged(new TemplateEvents.Freed(_state.Key, region), () => _pool.Tell(new PoolCommands.Free(PoolCommands.DefaultPool, _state.Key)));
    }

    private void PersistTagged(IEvent e, Action after)
        => Persist(new Tagged(e, [TemplateEvents.Tag]), _ =>
        {
            _state = _state.Apply(e);
            Context.System.EventStream.Publish(e);
            after();
        });

    private sealed record Allocated(TemplateCommands.BeginCapture Begin, IActorRef ReplyTo, object? Result);
}

public sealed class TemplateRegion;

public static class TemplateActorRegistration
{
    /// <summary>Hosts template entities on coordinators, and a proxy to the pool allocator on the memory-pool node.</summary>
    public static AkkaConfigurationBuilder AddTemplateRegistry(this AkkaConfigurationBuilder builder)
        => builder
            .WithShardRegionProxy<PoolProxy>(Sharding.Pool, Roles.MemoryPool, new Sharding.PoolExtractor())
            .WithShardRegion<TemplateRegion>(Sharding.Templates,
                (system, registry, _) => key => Props.Create(() => new TemplateActor(key, registry.Get<PoolProxy>())),
                new Sharding.TemplateExtractor(),
                new ShardOptions { Role = Roles.Coordinator, RememberEntities = false });
}

public sealed class PoolProxy;
