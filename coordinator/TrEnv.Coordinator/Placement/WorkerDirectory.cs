using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Cluster.Invoke;
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

    /// <summary>Where invoke channels log opening and failing; set once the host's logging exists.</summary>
    public ILogger Log { get; set; } = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    public IReadOnlyCollection<WorkerEntry> Workers => _workers.Values.ToList();

    /// <summary>The worker at this cluster address, if it is in the directory (no copy of the directory made).</summary>
    public WorkerEntry? Find(string? address) => address is not null && _workers.TryGetValue(address, out var entry) ? entry : null;

    public void Update(WorkerStatus status, IActorRef invoker)
    {
        var entry = _workers.GetOrAdd(status.Address, _ => new WorkerEntry(status, invoker, Log));
        if (!entry.Invoker.Equals(invoker))
        {
            // A new incarnation at the same address (restarted before the old one was downed): nothing the
            // old one was running will ever answer.
            var fresh = new WorkerEntry(status, invoker, Log);
            _workers[status.Address] = fresh;
            entry.Retire();
            return;
        }
        Volatile.Write(ref entry.LastSeen, Environment.TickCount64);
        entry.Apply(status);
    }

    /// <summary>Forgets a worker and fails every invocation still waiting on it (answered 503, never left hanging).</summary>
    public void Remove(string address)
    {
        if (_workers.TryRemove(address, out var entry))
            entry.Retire();
    }

    /// <summary>A worker that is leaving gets no new invocations; those it is running finish (or fail when it is gone).</summary>
    public void SetLeaving(string address)
    {
        if (_workers.TryGetValue(address, out var entry))
            entry.Leaving = true;
    }

    /// <summary>Live instances of a function per worker node, as last reported.</summary>
    public Dictionary<string, int> InstancesOf(string function)
        => _workers.Values.ToDictionary(w => w.Status.Node, w => w.Status.Sandboxes.Count(s => s.Function == function), StringComparer.Ordinal)
            .Where(kv => kv.Value > 0).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);

    /// <summary>A worker this coordinator has not heard from for this long (ms) gets new invocations only when no other can.</summary>
    public const long StaleMs = 1500;

    /// <summary>
    /// REUSE first (a worker with a warm idle instance of this version), then the worker with the most free room,
    /// among workers whose status broadcast (every 500 ms) reached this coordinator lately. Freshness is this
    /// coordinator's own view of its link to the worker; cluster-wide unreachability is not, because after a
    /// partition heals the cut-off node's stale observations make every member look unreachable for a while.
    /// </summary>
    public WorkerEntry? Choose(string functionKey)
        => Choose(functionKey, freshOnly: true) ?? Choose(functionKey, freshOnly: false);

    private WorkerEntry? Choose(string functionKey, bool freshOnly)
    {
        WorkerEntry? best = null;
        var bestScore = int.MinValue;
        var now = Environment.TickCount64;
        foreach (var w in _workers.Values)
        {
            if (w.Leaving || (freshOnly && now - Volatile.Read(ref w.LastSeen) > StaleMs))
                continue;
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

public sealed class WorkerEntry(WorkerStatus status, IActorRef invoker, ILogger? log = null)
{
    private readonly Lock _gate = new();
    private long _sequence = status.Sequence;
    private InvokeChannel? _channel;

    /// <summary>The latest status, with the busy count of any newer invocation result applied.</summary>
    public WorkerStatus Status { get; private set; } = status;

    /// <summary>Fixed per incarnation: a restarted worker gets a new entry.</summary>
    public IActorRef Invoker { get; } = invoker;

    public CancellationTokenSource Gone { get; } = new();

    /// <summary>
    /// The invoke channel to this incarnation, when it advertises one (opened at the first call); null sends
    /// invocations through remoting.
    /// </summary>
    public InvokeChannel? Channel
    {
        get
        {
            if (_channel is { } open)
                return open;
            if (Status.InvokeEndpoint is not { } endpoint || Gone.IsCancellationRequested)
                return null;
            lock (_gate)
            {
                if (_channel is null && !Gone.IsCancellationRequested)
                    _channel = new InvokeChannel(endpoint, Status.Node, log ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
                return _channel;
            }
        }
    }

    /// <summary>This incarnation is gone: every invocation still waiting on it fails now (answered 503, never left hanging).</summary>
    public void Retire()
    {
        Gone.Cancel();
        lock (_gate)
            _channel?.Dispose();
    }
    public long LastSeen = Environment.TickCount64;
    public volatile bool Leaving;
    public int InFlight;

    /// <summary>Takes a status snapshot unless an invocation result newer than it already corrected the entry.</summary>
    public void Apply(WorkerStatus status)
    {
        lock (_gate)
        {
            if (status.Sequence != 0 && status.Sequence < _sequence)
                return;
            Status = status;
            _sequence = status.Sequence;
        }
    }

    /// <summary>The busy count an invocation result reported, when it is newer than the last snapshot.</summary>
    public void ApplyBusy(int busy, long sequence)
    {
        lock (_gate)
        {
            if (sequence != 0 && sequence < _sequence)
                return;
            Status = Status with { Busy = busy };
            _sequence = sequence;
        }
    }
}

/// <summary>Subscribes to worker broadcasts and cluster membership to keep the <see cref="WorkerDirectory"/> current.</summary>
public sealed class WorkerDirectoryActor : ReceiveActor
{
    public WorkerDirectoryActor(WorkerDirectory directory)
    {
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(Sharding.WorkersTopic, Self));
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.MemberLeft), typeof(ClusterEvent.MemberExited), typeof(ClusterEvent.MemberDowned), typeof(ClusterEvent.MemberRemoved));
        var cluster = Akka.Cluster.Cluster.Get(Context.System);
        Receive<WorkerStatus>(s =>
        {
            // A broadcast that was under way when its worker was downed or began to leave must not bring it back.
            var member = cluster.State.Members.FirstOrDefault(m => m.UniqueAddress.Address.Equals(Sender.Path.Address));
            if (member is { Status: MemberStatus.Up })
                directory.Update(s, Sender);
        });
        Receive<ClusterEvent.MemberLeft>(m => directory.SetLeaving(m.Member.Address.ToString()));
        Receive<ClusterEvent.MemberExited>(m => directory.SetLeaving(m.Member.Address.ToString()));
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
