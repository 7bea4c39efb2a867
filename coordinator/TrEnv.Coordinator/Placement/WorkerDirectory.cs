using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Placement;

/// <summary>
/// The coordinator's local view of every worker, fed by the workers' status broadcasts and by cluster
/// membership. Placement reads it with no network hop, and a dead worker leaves it as soon as it is
/// unreachable, without waiting for any shard hand-over.
/// </summary>
public sealed class WorkerDirectory
{
    private readonly ConcurrentDictionary<string, WorkerEntry> _workers = new(StringComparer.Ordinal);

    public IReadOnlyCollection<WorkerEntry> Workers => _workers.Values.ToList();

    public void Update(WorkerStatus status, IActorRef invoker)
    {
        var entry = _workers.GetOrAdd(status.Address, _ => new WorkerEntry(status, invoker));
        if (!entry.Invoker.Equals(invoker))
        {
            // A new incarnation at the same address (restarted before the old one was downed): nothing the
            // old one was running will ever answer.
            var fresh = new WorkerEntry(status, invoker);
            _workers[status.Address] = fresh;
            entry.Gone.Cancel();
            return;
        }
        entry.Status = status;
    }

    /// <summary>Forgets a worker and fails every invocation still waiting on it (answered 503, never left hanging).</summary>
    public void Remove(string address)
    {
        if (_workers.TryRemove(address, out var entry))
            entry.Gone.Cancel();
    }

    /// <summary>Live instances of a function per worker node, as last reported.</summary>
    public Dictionary<string, int> InstancesOf(string function)
        => _workers.Values.ToDictionary(w => w.Status.Node, w => w.Status.Sandboxes.Count(s => s.Function == function), StringComparer.Ordinal)
            .Where(kv => kv.Value > 0).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);

    /// <summary>REUSE first (a worker with a warm idle instance of this version), then the worker with the most free room.</summary>
    public WorkerEntry? Choose(string functionKey)
    {
        WorkerEntry? best = null;
        var bestScore = int.MinValue;
        foreach (var w in _workers.Values)
        {
            var inFlight = Volatile.Read(ref w.InFlight);
            var warm = w.Status.WarmIdle.TryGetValue(functionKey, out var n) ? n : 0;
            var free = w.Status.MaxSandboxes - w.Status.Busy - inFlight;
            if (free <= 0 && warm <= inFlight)
                continue;
            var score = (warm > inFlight ? 1_000_000 : 0) + free * 16 - inFlight;
            if (score > bestScore)
            {
                best = w;
                bestScore = score;
            }
        }
        return best;
    }
}

public sealed class WorkerEntry(WorkerStatus status, IActorRef invoker)
{
    public WorkerStatus Status { get; set; } = status;
    public IActorRef Invoker { get; set; } = invoker;
    public CancellationTokenSource Gone { get; } = new();
    public int InFlight;
}

/// <summary>Subscribes to worker broadcasts and cluster membership to keep the <see cref="WorkerDirectory"/> current.</summary>
public sealed class WorkerDirectoryActor : ReceiveActor
{
    public WorkerDirectoryActor(WorkerDirectory directory)
    {
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(Sharding.WorkersTopic, Self));
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.MemberDowned), typeof(ClusterEvent.MemberRemoved));
        var cluster = Akka.Cluster.Cluster.Get(Context.System);
        Receive<WorkerStatus>(s =>
        {
            // A broadcast that was under way when its worker was downed must not bring it back.
            var state = cluster.State;
            var member = state.Members.FirstOrDefault(m => m.UniqueAddress.Address.Equals(Sender.Path.Address));
            if (member is { Status: MemberStatus.Up } && !state.Unreachable.Contains(member))
                directory.Update(s, Sender);
        });
        Receive<ClusterEvent.UnreachableMember>(m => directory.Remove(m.Member.Address.ToString()));
        Receive<ClusterEvent.MemberDowned>(m => directory.Remove(m.Member.Address.ToString()));
        Receive<ClusterEvent.MemberRemoved>(m => directory.Remove(m.Member.Address.ToString()));
        Receive<SubscribeAck>(_ => { });
        ReceiveAny(_ => { });
    }
}

public static class WorkerDirectoryRegistration
{
    public static AkkaConfigurationBuilder AddWorkerDirectory(this AkkaConfigurationBuilder builder, WorkerDirectory directory)
        => builder.WithActors((system, registry) =>
            registry.Register<WorkerDirectoryActor>(system.ActorOf(Props.Create(() => new WorkerDirectoryActor(directory)), "worker-directory")));
}
