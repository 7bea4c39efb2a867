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
public sealed class SessionActor : ReceivePersistentActor
{
    private static readonly TimeSpan PauseTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);
    private readonly SessionServices _s;
    private readonly Akka.Cluster.Cluster _cluster;
    private SessionState _state;

    public SessionActor(string id, SessionServices services)
    {
        _s = services;
        _cluster = Akka.Cluster.Cluster.Get(Context.System);
        _state = SessionState.Empty(id);
        PersistenceId = "session-" + id;
        Recover<IEvent>(e => _state = _state.Apply(e));
        Recover<Tagged>(t => { if (t.Payload is IEvent e) _state = _state.Apply(e); });
        // Passivation and hand-off send this instead of a PoisonPill, so an operation in flight (a long call)
        // finishes and persists first: while busy it is stashed like any other message.
        Command<SessionStop>(_ => Context.Stop(Self));
        Command<SessionCommands.ISessionCommand>(Handle);
    }

    public override string PersistenceId { get; }

    private string Id => _state.Id;

    private void Handle(SessionCommands.ISessionCommand command)
    {
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
            case SessionCommands.Invoke invoke when st.Status == SessionStates.Paused:
                Run(() => ResumeThenInvokeAsync(st, invoke));
                break;
            case SessionCommands.Invoke invoke:
                Run(() => InvokeAsync(st, invoke, null));
                break;
            case SessionCommands.Pause pause when st.Status == SessionStates.Active:
                Run(() => PauseAsync(st, pause.Reason));
                break;
            case SessionCommands.Pause:
                Sender.Tell(new SessionReplies.View(st.ToInfo()));
                break;
            case SessionCommands.Resume resume when st.Status == SessionStates.Paused || (st.Status == SessionStates.Lost && resume.FromLastPause):
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
            Context.GetLogger().Info("Session {0} idle for {1} s on {2}: pausing it", Id, st.IdleTimeoutSeconds, idle.Node);
            Run(() => PauseAsync(st, "idle"), ActorRefs.Nobody);
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
        operation().PipeTo(Self, success: o => new Finished(o, sender),
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
                    done.ReplyTo.Tell(outcome.Reply(_state));
                    outcome.After?.Invoke();
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

    private static Outcome Refuse(string id, string kind, string message, IReadOnlyList<IEvent>? events = null)
        => new(events ?? [], st => new SessionReplies.Refused(id, kind, message, st.Exists ? st.ToInfo() : null));

    private async Task<Outcome> CreateAsync(SessionCommands.Create create)
    {
        var id = Id;
        FunctionVersion? version = _s.Functions.TryGet(create.Function, out var known) ? known : null;
        if (version is null)
        {
            var view = await _s.FunctionRegistry.Ask<FunctionReplies.View>(new FunctionCommands.Get(create.Function), AskTimeout);
            _s.Functions.Set(view);
            version = view.Current;
        }
        if (version is null)
            return Refuse(id, "not_found", $"There is no function named \"{create.Function}\".");
        var key = TemplateCommands.KeyOf(create.Function, version.Version);
        var template = _s.Templates.Find(key);
        if (_s.Workers.Choose("") is not { } worker)
            return Refuse(id, "unavailable", "No worker has room for a new session right now.");
        var start = new WorkerSessionCommands.Start(id, create.InvocationId, create.Function, version, template, null, create.IdleTimeoutSeconds);
        var started = await StartOnAsync(worker, start, version);
        if (!started.Ok)
            return Refuse(id, started.ErrorKind ?? ErrorKinds.Internal, started.ErrorMessage ?? "The session could not start.");
        if (started.CapturedTemplate is { } captured)
            _s.Templates.Add(captured);
        // The template the session's deltas apply over must outlive any redeploy while the session exists.
        if (started.Base is { } baseTemplate && !await HoldAsync(baseTemplate.Key, id))
            Console.Error.WriteLine($"session {id}: the template {baseTemplate.Key} could not be held; a redeploy may free it under the session");
        var now = DateTimeOffset.UtcNow;
        return new Outcome(
            [new SessionEvents.Created(id, create.Function, version, create.IdleTimeoutSeconds, now),
             new SessionEvents.Activated(id, started.Node, worker.Status.Address, started.Base, started.MemoryBytes, started.StartupMicros / 1000.0, now)],
            st => new SessionReplies.View(st.ToInfo()));
    }

    private async Task<Outcome> InvokeAsync(SessionState st, SessionCommands.Invoke invoke, (IEvent Activated, long StartupMicros)? resumed)
    {
        var id = Id;
        var events = resumed is { } r ? new List<IEvent> { r.Activated } : [];
        var address = resumed?.Activated is SessionEvents.Activated a ? a.Address : st.Address;
        var (worker, missing) = FindWorker(st, address);
        if (worker is null)
            return missing! with { Events = [.. events, .. missing.Events] };
        WorkerSessionReplies.Invoked reply;
        Interlocked.Increment(ref worker.InFlight);
        try
        {
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(worker.Gone.Token);
            reply = await worker.Invoker.Ask<WorkerSessionReplies.Invoked>(new WorkerSessionCommands.Invoke(id, invoke.InvocationId, invoke.Input),
                TimeSpan.FromMilliseconds(st.Version!.Limits.TimeoutMs) + TimeSpan.FromSeconds(30), gone.Token);
        }
        catch (OperationCanceledException) when (worker.Gone.IsCancellationRequested)
        {
            events.Add(new SessionEvents.Lost(id, $"Worker {worker.Status.Node} left the cluster while running a call of the session; its state since the last pause is gone.", DateTimeOffset.UtcNow));
            return Refuse(id, ErrorKinds.SessionLost, $"Worker {worker.Status.Node} left the cluster while running this call; the session is lost.", events);
        }
        catch (AskTimeoutException)
        {
            return Refuse(id, "unavailable", $"Worker {worker.Status.Node} did not answer in time; the call may have run. The session stays on it.", events);
        }
        finally
        {
            Interlocked.Decrement(ref worker.InFlight);
        }
        if (reply.Result.BusyAfter >= 0)
            worker.ApplyBusy(reply.Result.BusyAfter, reply.Result.Sequence);
        if (reply.InstanceLost)
            events.Add(new SessionEvents.Lost(id, $"Its instance failed ({reply.Result.ErrorKind}: {reply.Result.ErrorMessage}); its state since the last pause is gone.", DateTimeOffset.UtcNow));
        var result = resumed is { } rs ? reply.Result with { StartupMicros = rs.StartupMicros } : reply.Result;
        return new Outcome(events, s => new SessionReplies.Invoked(s.ToInfo(), result, resumed is not null),
            Touch: reply.InstanceLost ? null : s => s with { Invocations = s.Invocations + 1, LastActiveAt = DateTimeOffset.UtcNow });
    }

    private async Task<Outcome> ResumeThenInvokeAsync(SessionState st, SessionCommands.Invoke invoke)
    {
        var (activated, refused) = await ResumeCoreAsync(st, invoke.InvocationId, null);
        if (activated is null)
            return refused!;
        return await InvokeAsync(st.Apply(activated), invoke, (activated, (long)(activated.StartMs * 1000)));
    }

    private async Task<Outcome> ResumeAsync(SessionState st, string invocationId, string? node)
    {
        var (activated, refused) = await ResumeCoreAsync(st, invocationId, node);
        return activated is null ? refused! : new Outcome([activated], s => new SessionReplies.View(s.ToInfo()));
    }

    private async Task<(SessionEvents.Activated? Activated, Outcome? Refused)> ResumeCoreAsync(SessionState st, string invocationId, string? node)
    {
        var id = Id;
        WorkerEntry? worker;
        if (node is not null)
        {
            worker = _s.Workers.Workers.FirstOrDefault(w => w.Status.Node == node && !w.Leaving);
            if (worker is null)
                return (null, Refuse(id, "unavailable", $"There is no worker named \"{node}\" in the cluster now; the session stays paused."));
        }
        else if ((worker = _s.Workers.Choose("")) is null)
        {
            return (null, Refuse(id, "unavailable", "No worker has room to resume the session right now; it stays paused."));
        }
        // The base template rides once, inside the delta; the event need not repeat what the state holds.
        var start = new WorkerSessionCommands.Start(id, invocationId, st.Function!, st.Version!, null, st.Delta!, st.IdleTimeoutSeconds);
        var started = await StartOnAsync(worker, start, st.Version!);
        if (!started.Ok)
        {
            // Pages not readable yet (a pool rebuilding from its durable copies) or no room: the session is intact, retry.
            var kind = started.ErrorKind is ErrorKinds.TemplateInvalid or ErrorKinds.SandboxCrashed ? "unavailable" : started.ErrorKind ?? ErrorKinds.Internal;
            return (null, Refuse(id, kind, $"The session could not be resumed on {worker.Status.Node}: {started.ErrorMessage} It stays paused."));
        }
        return (new SessionEvents.Activated(id, started.Node, worker.Status.Address, null, started.MemoryBytes, started.StartupMicros / 1000.0, DateTimeOffset.UtcNow), null);
    }

    private async Task<Outcome> PauseAsync(SessionState st, string reason)
    {
        var id = Id;
        var (worker, missing) = FindWorker(st, st.Address);
        if (worker is null)
            return missing!;
        WorkerSessionReplies.Paused reply;
        try
        {
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(worker.Gone.Token);
            reply = await worker.Invoker.Ask<WorkerSessionReplies.Paused>(new WorkerSessionCommands.Pause(id, st.NextDeltaOwner, st.Base), PauseTimeout, gone.Token);
        }
        catch (OperationCanceledException) when (worker.Gone.IsCancellationRequested)
        {
            return Refuse(id, ErrorKinds.SessionLost, $"Worker {worker.Status.Node} left the cluster while pausing the session; it is lost.",
                [new SessionEvents.Lost(id, $"Worker {worker.Status.Node} left the cluster while pausing the session.", DateTimeOffset.UtcNow)]);
        }
        catch (AskTimeoutException)
        {
            return Refuse(id, "unavailable", $"Worker {worker.Status.Node} did not finish the pause in time; the session stays active there.");
        }
        if (reply.InstanceLost)
            return Refuse(id, ErrorKinds.SessionLost, reply.ErrorMessage ?? "The session's instance is gone.",
                [new SessionEvents.Lost(id, reply.ErrorMessage ?? "Its instance is gone.", DateTimeOffset.UtcNow)]);
        if (!reply.Ok || reply.Delta is null)
            return Refuse(id, reply.ErrorKind ?? ErrorKinds.Internal, reply.ErrorMessage ?? "The pause failed; the session stays active.");
        var previous = st.Delta?.Owner;
        var pool = _s.Pool;
        return new Outcome([new SessionEvents.Paused(id, reply.Delta, reason, reply.PauseMicros / 1000.0)], s => new SessionReplies.View(s.ToInfo()),
            After: () =>
            {
                // Only once the new delta is durable and recorded does the previous one go.
                if (previous is not null && previous != reply.Delta.Owner)
                    pool.Tell(new PoolCommands.Free(PoolCommands.DefaultPool, previous));
            });
    }

    private async Task<Outcome> DeleteAsync(SessionState st)
    {
        var id = Id;
        if (st.Status == SessionStates.Active && _s.Workers.Find(st.Address) is { } worker)
        {
            try
            {
                await worker.Invoker.Ask<WorkerSessionReplies.Released>(new WorkerSessionCommands.Release(id), TimeSpan.FromSeconds(10));
            }
            catch (AskTimeoutException)
            {
                // The worker reports the sandbox as idle later, and this entity (deleted) releases it then.
            }
        }
        var pool = _s.Pool;
        var templates = _s.TemplateRegistry;
        return new Outcome([new SessionEvents.Deleted(id, DateTimeOffset.UtcNow)], s => new SessionReplies.View(s.ToInfo()), After: () =>
        {
            if (st.Delta is not null)
                pool.Tell(new PoolCommands.Free(PoolCommands.DefaultPool, st.Delta.Owner));
            if (st.Base is not null)
                templates.Tell(new TemplateCommands.Unhold(st.Base.Key, id));
        });
    }

    private async Task<WorkerSessionReplies.Started> StartOnAsync(WorkerEntry worker, WorkerSessionCommands.Start start, FunctionVersion version)
    {
        Interlocked.Increment(ref worker.InFlight);
        try
        {
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(worker.Gone.Token);
            return await worker.Invoker.Ask<WorkerSessionReplies.Started>(start, Api.InvokeApi.AnswerDeadline(version.Limits), gone.Token);
        }
        catch (Exception e) when (e is AskTimeoutException or OperationCanceledException)
        {
            // It may still come up there: release it so no sandbox stays bound to a session that never started.
            worker.Invoker.Tell(new WorkerSessionCommands.Release(start.SessionId));
            return new(start.SessionId, false, worker.Status.Node, "cold", 0, 0, null, null, "unavailable",
                $"Worker {worker.Status.Node} {(e is AskTimeoutException ? "did not answer in time" : "left the cluster")}.");
        }
        finally
        {
            Interlocked.Decrement(ref worker.InFlight);
        }
    }

    private async Task<bool> HoldAsync(string key, string id)
    {
        try
        {
            return await _s.TemplateRegistry.Ask<IProtocolMessage>(new TemplateCommands.Hold(key, id), AskTimeout) is TemplateReplies.Ack;
        }
        catch (AskTimeoutException)
        {
            return false;
        }
    }

    // The worker holding an active session: gone from the cluster means the session is lost; not heard from
    // yet (this coordinator just started) means retry.
    private (WorkerEntry? Worker, Outcome? Missing) FindWorker(SessionState st, string? address)
    {
        var id = Id;
        if (_s.Workers.Find(address) is { } worker)
            return (worker, null);
        var member = _cluster.State.Members.FirstOrDefault(m => m.Address.ToString() == address);
        if (member is not null && member.Status is Akka.Cluster.MemberStatus.Up or Akka.Cluster.MemberStatus.WeaklyUp)
            return (null, Refuse(id, "unavailable", $"Worker {st.Node} holds the session but has not reported to this coordinator yet; retry shortly."));
        return (null, Refuse(id, ErrorKinds.SessionLost, $"Worker {st.Node}, which held the session, is no longer in the cluster; its state since the last pause is gone.",
            [new SessionEvents.Lost(id, $"Worker {st.Node} left the cluster while the session was active on it.", DateTimeOffset.UtcNow)]));
    }
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
