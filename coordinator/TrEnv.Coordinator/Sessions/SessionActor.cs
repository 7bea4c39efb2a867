using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Event;
using Akka.Hosting;
using Akka.Persistence;
using Akka.Persistence.Journal;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Sessions;

/// <summary>What a session entity reaches on its coordinator: the local catalogs and worker directory, and the registries.</summary>
public sealed record SessionServices(FunctionCatalog Functions, TemplateCatalog Templates, WorkerDirectory Workers, IActorRef FunctionRegistry,
    IActorRef TemplateRegistry, IActorRef Pool);

/// <summary>
/// The sharded, persistent session entity. It runs one operation at a time (start, invoke, pause, resume,
/// delete) and stashes everything else meanwhile, so a session's calls are serialized cluster-wide and it is
/// never held by two instances. Its events are persisted before it answers.
/// </summary>
public sealed partial class SessionActor : ReceivePersistentActor, IWithTimers
{
    private const string CheckpointTimer = "checkpoint";
    private static readonly TimeSpan PauseTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);
    private readonly SessionServices _s;
    private readonly Akka.Cluster.Cluster _cluster;
    private SessionState _state;
    private readonly ILoggingAdapter _log = Context.GetLogger();

    public SessionActor(string id, SessionServices services)
    {
        _s = services;
        _cluster = Akka.Cluster.Cluster.Get(Context.System);
        _state = SessionState.Empty(id);
        PersistenceId = "session-" + id;
        Recover<IEvent>(e => _state = _state.Apply(e));
        Recover<Tagged>(t => { if (t.Payload is IEvent e) _state = _state.Apply(e); });
        Recover<RecoveryCompleted>(_ => _state = _state.Recovered());
        // Passivation and hand-off send this instead of a PoisonPill, so an operation in flight (a long call)
        // finishes and persists first: while busy it is stashed like any other message.
        Command<SessionStop>(_ => Context.Stop(Self));
        Command<SessionCommands.ISessionCommand>(Handle);
    }

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    private string Id => _state.Id;

    // The command the running operation serves, for its span's name and parent.
    private SessionCommands.ISessionCommand? _operation;

    private void Handle(SessionCommands.ISessionCommand command)
    {
        _operation = command;
        if (command is SessionCommands.IdleExpired idle)
        {
            HandleIdle(idle);
            return;
        }
        if (_state.Refusal(command) is { } refusal)
        {
            Sender.Tell(new SessionReplies.Refused(Id, refusal.Kind, refusal.Message, _state.Exists ? _state.ToInfo() : null));
            return;
        }
        var st = _state;
        switch (command)
        {
            case SessionCommands.Get:
                Sender.Tell(new SessionReplies.View(st.ToInfo()));
                break;
            case SessionCommands.Create create:
                Run(() => CreateAsync(create));
                break;
            case SessionCommands.CreateFork createFork:
                Run(() => CreateForkAsync(createFork));
                break;
            case SessionCommands.Fork fork when st.Status == SessionStates.Active:
                Run(() => ForkAsync(st, fork.Owner));
                break;
            case SessionCommands.Fork:
                Sender.Tell(new SessionReplies.ForkPoint(st.ToInfo(), st.Version!, st.Delta!, false, 0)); // paused: its delta is what the children share
                break;
            case SessionCommands.Invoke invoke when st.Status == SessionStates.Paused:
                Run(() => ResumeThenInvokeAsync(st, invoke));
                break;
            case SessionCommands.Invoke invoke when st.Status == SessionStates.Lost:
                Run(() => RecoverThenInvokeAsync(st, invoke, []));
                break;
            case SessionCommands.Invoke invoke:
                Run(() => InvokeAsync(st, invoke, Live));
                break;
            case SessionCommands.Pause pause when st.Status == SessionStates.Active:
                Run(() => StoreAsync(st, pause.Reason, keepActive: false));
                break;
            case SessionCommands.Pause:
                Sender.Tell(new SessionReplies.View(st.ToInfo()));
                break;
            case SessionCommands.Checkpoint { Reason: SessionCheckpoints.Periodic } when st.Status != SessionStates.Active || st.CallsSinceSaved == 0:
                break; // nothing changed since the state was stored
            case SessionCommands.Checkpoint checkpoint when st.Status == SessionStates.Active:
                Run(() => StoreAsync(st, checkpoint.Reason, keepActive: true),
                    checkpoint.Reason == SessionCheckpoints.Periodic ? ActorRefs.Nobody : null);
                break;
            case SessionCommands.Checkpoint:
                Sender.Tell(new SessionReplies.View(st.ToInfo())); // paused: its state is stored already
                break;
            case SessionCommands.Resume resume when st.Status == SessionStates.Paused || (st.Status == SessionStates.Lost && (resume.FromLastPause || st.CanRecover)):
                Run(() => ResumeAsync(st, resume.InvocationId, resume.Node));
                break;
            case SessionCommands.Resume:
                Sender.Tell(new SessionReplies.View(st.ToInfo()));
                break;
            case SessionCommands.Delete:
                Run(() => DeleteAsync(st));
                break;
        }
    }

    // A worker says the session's sandbox is idle past its timeout: pause it there; a sandbox held for a session
    // that is not active on that worker (deleted, lost, resumed elsewhere) is released instead.
    private void HandleIdle(SessionCommands.IdleExpired idle)
    {
        if (_state.Status == SessionStates.Active && _state.Node == idle.Node)
        {
            var st = _state;
            _log.Info("Session {0} idle for {1} s on {2}: pausing it", Id, st.IdleTimeoutSeconds, idle.Node);
            Run(() => StoreAsync(st, "idle", keepActive: false), ActorRefs.Nobody);
            return;
        }
        if (_s.Workers.Workers.FirstOrDefault(w => w.Status.Address == idle.Address || w.Status.Node == idle.Node) is { } orphanHost)
            orphanHost.Invoker.Tell(new WorkerSessionCommands.Release(Id));
    }

    /// <summary>The result of one operation: events to persist, then the reply built from the new state, then side effects.</summary>
    private sealed record Outcome(IReadOnlyList<IEvent> Events, Func<SessionState, object> Reply, Action? After = null, Func<SessionState, SessionState>? Touch = null);

    private sealed record Finished(Outcome Outcome, IActorRef ReplyTo);

    private void Run(Func<Task<Outcome>> operation, IActorRef? replyTo = null)
    {
        var sender = replyTo ?? Sender;
        var id = Id;
        // A span per operation, continuing the caller's trace (the API's request) when the command carried one; the
        // operation's calls to workers carry it on. It ends once the operation's events are persisted.
        var previous = Activity.Current;
        var span = NodeTelemetry.Coordinator.StartActivity("trenv.session." + OperationName(_operation), ActivityKind.Internal,
            NodeTelemetry.ParentOf((_operation as ITraced)?.TraceParent));
        span?.SetTag("trenv.session", id);
        Task<Outcome> running;
        try
        {
            running = operation();
        }
        finally
        {
            Activity.Current = previous;
        }
        running.PipeTo(Self, success: o => new Finished(o, sender),
            failure: e => new Finished(new Outcome([], _ => new SessionReplies.Refused(id, ErrorKinds.Internal, $"The session operation failed: {e.GetBaseException().Message}", null)), sender));
        BecomeStacked(() =>
        {
            Command<Finished>(done =>
            {
                var outcome = done.Outcome;
                void Complete()
                {
                    if (outcome.Touch is not null)
                        _state = outcome.Touch(_state);
                    var reply = outcome.Reply(_state);
                    if (reply is SessionReplies.Refused refused)
                        span?.SetStatus(ActivityStatusCode.Error, refused.Kind);
                    var current = Activity.Current;
                    span?.Dispose(); // stopping it would make its parent current on this thread: keep what was
                    Activity.Current = current;
                    done.ReplyTo.Tell(reply);
                    outcome.After?.Invoke();
                    ScheduleCheckpoint();
                    UnbecomeStacked();
                    Stash.UnstashAll();
                }
                if (outcome.Events.Count == 0)
                {
                    Complete();
                    return;
                }
                var remaining = outcome.Events.Count;
                PersistAll(outcome.Events.Select(e => new Tagged(e, [SessionEvents.Tag])), tagged =>
                {
                    _state = _state.Apply((IEvent)tagged.Payload);
                    if (--remaining == 0)
                        Complete();
                });
            });
            CommandAny(_ => Stash.Stash());
        });
    }

    private static string OperationName(SessionCommands.ISessionCommand? command) => command switch
    {
        SessionCommands.Create => "create",
        SessionCommands.CreateFork => "create_fork",
        SessionCommands.Fork => "fork",
        SessionCommands.Invoke => "invoke",
        SessionCommands.Pause => "pause",
        SessionCommands.Checkpoint => "checkpoint",
        SessionCommands.Resume => "resume",
        SessionCommands.Delete => "delete",
        SessionCommands.IdleExpired => "idle_pause",
        _ => "operation",
    };

    // A session with a checkpoint interval whose calls changed it is checkpointed once the interval allows.
    private void ScheduleCheckpoint()
    {
        if (SessionCheckpoints.Delay(_state, DateTimeOffset.UtcNow) is not { } delay)
            return;
        var message = new SessionCommands.Checkpoint(Id, SessionCheckpoints.Periodic);
        if (delay == TimeSpan.Zero)
        {
            Timers.Cancel(CheckpointTimer);
            Self.Tell(message, ActorRefs.NoSender);
        }
        else if (!Timers.IsTimerActive(CheckpointTimer))
        {
            Timers.StartSingleTimer(CheckpointTimer, message, delay);
        }
    }

    private static Outcome Refuse(string id, string kind, string message, IReadOnlyList<IEvent>? events = null)
        => new(events ?? [], st => new SessionReplies.Refused(id, kind, message, st.Exists ? st.ToInfo() : null));

    // The worker holding an active session: gone from the cluster means the session is lost; not heard from
    // yet (this coordinator just started) means retry.
    private (WorkerEntry? Worker, Outcome? Missing) FindWorker(SessionState st, string? address)
    {
        var id = Id;
        if (_s.Workers.Find(address) is { } worker)
            return (worker, null);
        var member = _cluster.State.Members.FirstOrDefault(m => m.Address.ToString() == address);
        if (member is not null && member.Status is Akka.Cluster.MemberStatus.Up or Akka.Cluster.MemberStatus.WeaklyUp)
            return (null, Refuse(id, ErrorKinds.Unavailable, $"Worker {st.Node} holds the session but has not reported to this coordinator yet; retry shortly."));
        return (null, Refuse(id, ErrorKinds.SessionLost, $"Worker {st.Node}, which held the session, is no longer in the cluster; {SinceSaved(st)} is gone.",
            [new SessionEvents.Lost(id, $"Worker {st.Node} left the cluster while the session was active on it.", DateTimeOffset.UtcNow)]));
    }

    private static string SinceSaved(SessionState st) => st.CanRecover ? $"what it did since its checkpoint of {st.LastSavedAt:O}" : "its state since the last pause";
}

/// <summary>The entity's stop message for passivation and shard hand-off (see the constructor).</summary>
public sealed class SessionStop
{
    public static readonly SessionStop Instance = new();
}

public sealed class SessionRegion;

public static class SessionActorRegistration
{
    /// <summary>Hosts session entities on coordinators.</summary>
    public static AkkaConfigurationBuilder AddSessionRegistry(this AkkaConfigurationBuilder builder, FunctionCatalog functions, TemplateCatalog templates, WorkerDirectory workers)
        => builder.WithShardRegion<SessionRegion>(Sharding.Sessions,
            (system, registry, _) => id => Props.Create(() => new SessionActor(id, new SessionServices(functions, templates, workers,
                registry.Get<FunctionRegion>(), registry.Get<TemplateRegion>(), registry.Get<PoolProxy>()))),
            new Sharding.SessionExtractor(),
            new ShardOptions { Role = Roles.Coordinator, RememberEntities = false, HandOffStopMessage = SessionStop.Instance });
}
