using Akka.Actor;
using Akka.Event;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Hosting;
using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Cluster.Invoke;
using TrEnv.Contracts;

namespace TrEnv.Worker;

/// <summary>
/// The worker's front door at /user/invoker: runs invocations concurrently through the sandbox manager
/// (never blocking the mailbox), and broadcasts this worker's status to the coordinators.
/// </summary>
public sealed class WorkerActor : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan StatusEvery = TimeSpan.FromMilliseconds(500);
    private readonly SandboxManager _manager;
    private readonly IActorRef _mediator;
    private readonly string _address;
    private readonly string _healthFile;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly IActorRef _self;
    private readonly NodeSettings _settings;
    private readonly ILogger _channelLog;
    private InvokeListener? _listener;
    private bool _maintaining;

    public WorkerActor(SandboxManager manager, string healthFile, NodeSettings settings, ILogger channelLog)
    {
        _healthFile = healthFile;
        _manager = manager;
        _settings = settings;
        _channelLog = channelLog;
        _self = Self;
        _mediator = DistributedPubSub.Get(Context.System).Mediator;
        _address = Akka.Cluster.Cluster.Get(Context.System).SelfAddress.ToString();
        // Through remoting: coordinators use it when this worker has no invoke channel or theirs cannot open.
        Receive<WorkerInvoke>(invoke =>
        {
            var sender = Sender;
            RunAsync(invoke).ContinueWith(t => sender.Tell(t.Result), TaskScheduler.Default);
        });
        Receive<WorkerReclaim>(reclaim =>
        {
            var sender = Sender;
            var self = Self;
            _manager.ReclaimAsync(reclaim.Function, reclaim.Destroy, CancellationToken.None).ContinueWith(t =>
            {
                sender.Tell(new WorkerReclaimed(_address, t.IsCompletedSuccessfully ? t.Result : 0));
                self.Tell(Publish.Instance);
            }, TaskScheduler.Default);
        });
        Receive<WorkerPrepare>(prepare => _ = _manager.PrepareAheadAsync(prepare));
        Receive<WorkerForget>(forget =>
        {
            var sender = Sender;
            var self = Self;
            _manager.ForgetAsync(forget, CancellationToken.None).ContinueWith(t =>
            {
                sender.Tell(new WorkerForgot(_address, t.IsCompletedSuccessfully ? t.Result : 0));
                self.Tell(Publish.Instance);
            }, TaskScheduler.Default);
        });
        _manager.Sessions.Address = _address;
        // Session operations run off the mailbox like invocations; the manager serializes each session's own.
        ReceiveSession<WorkerSessionCommands.Start, WorkerSessionReplies.Started>((m, ct) => _manager.Sessions.StartAsync(m, ct), m => new WorkerSessionReplies.Started(m.SessionId, false, _address, "cold", 0, 0, null, null, ErrorKinds.Internal, "the worker failed to start the session"));
        ReceiveSession<WorkerSessionCommands.Invoke, WorkerSessionReplies.Invoked>((m, ct) => _manager.Sessions.InvokeAsync(m, ct), m => new WorkerSessionReplies.Invoked(
            new WorkerInvokeResult(m.InvocationId, false, [], StartKind.Warm, SandboxOrigin.Session, _address, 0, 0, ErrorKinds.Internal, "the worker failed to run the invocation", null), false));
        ReceiveSession<WorkerSessionCommands.Pause, WorkerSessionReplies.Paused>((m, ct) => _manager.Sessions.PauseAsync(m, ct), m => new WorkerSessionReplies.Paused(m.SessionId, false, null, 0, ErrorKinds.Internal, "the worker failed to pause the session", false));
        ReceiveSession<WorkerSessionCommands.Release, WorkerSessionReplies.Released>((m, ct) => _manager.Sessions.ReleaseAsync(m, ct), m => new WorkerSessionReplies.Released(m.SessionId, false));
        Receive<WorkerLogsQuery>(q => Sender.Tell(new WorkerLogs(_address, _manager.Logs.Tail(q.Function, q.MaxLines))));
        Receive<Publish>(_ => _mediator.Tell(new Akka.Cluster.Tools.PublishSubscribe.Publish(Sharding.WorkersTopic,
            _manager.Snapshot(_address) with { InvokeEndpoint = _listener?.Endpoint })));
        Receive<Maintain>(_ =>
        {
            if (_maintaining)
                return;
            _maintaining = true;
            var self = Self;
            _manager.MaintainAsync(CancellationToken.None).ContinueWith(_ => self.Tell(Maintained.Instance), TaskScheduler.Default);
        });
        Receive<Health>(_ =>
        {
            // The compose health check reads this file's age: fresh only while this worker is an Up member.
            if (Akka.Cluster.Cluster.Get(Context.System).SelfMember.Status == Akka.Cluster.MemberStatus.Up)
                File.WriteAllText(_healthFile, DateTimeOffset.UtcNow.ToString("O"));
        });
        Receive<Maintained>(_ =>
        {
            _maintaining = false;
            Self.Tell(Publish.Instance);
        });
    }

    /// <summary>One invocation, from the invoke channel or remoting; never throws.</summary>
    private async Task<WorkerInvokeResult> RunAsync(WorkerInvoke invoke)
    {
        WorkerInvokeResult result;
        try
        {
            result = await _manager.InvokeAsync(invoke, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            result = Failed(invoke, e);
        }
        // A new warm instance changes placement (REUSE): tell coordinators now, not at the next tick.
        if (!result.Ok || result.Start != StartKind.Warm)
            _self.Tell(Publish.Instance);
        return result;
    }

    private WorkerInvokeResult Failed(WorkerInvoke invoke, Exception e)
        => new(invoke.InvocationId, false, [], StartKind.Cold, SandboxOrigin.New, _settings.Name, 0, 0, ErrorKinds.Internal, e.GetBaseException().Message, null);

    private void ReceiveSession<T, TReply>(Func<T, CancellationToken, Task<TReply>> run, Func<T, TReply> failed)
        where T : class
        where TReply : class
        => Receive<T>(message =>
        {
            var sender = Sender;
            var self = Self;
            run(message, CancellationToken.None).ContinueWith(t =>
            {
                if (!t.IsCompletedSuccessfully)
                    _log.Error(t.Exception?.GetBaseException(), "worker: session operation {0} failed", typeof(T).Name);
                sender.Tell(t.IsCompletedSuccessfully ? t.Result : failed(message), self);
                self.Tell(Publish.Instance);
            }, TaskScheduler.Default);
        });

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        if (_settings.InvokePort >= 0)
        {
            _listener = new InvokeListener(_settings.Hostname, _settings.PublicHostname ?? _settings.Hostname, _settings.InvokePort,
                _settings.MaxInputMb << 20, RunAsync, Failed, _channelLog);
            _log.Info("worker: invoke channel listening at {0}", _listener.Endpoint);
        }
        Timers.StartPeriodicTimer("status", Publish.Instance, TimeSpan.Zero, StatusEvery);
        Timers.StartPeriodicTimer("maintain", Maintain.Instance, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        Timers.StartPeriodicTimer("health", Health.Instance, TimeSpan.Zero, TimeSpan.FromSeconds(1));
    }

    protected override void PostStop() => _listener?.Dispose();

    private sealed class Health
    {
        public static readonly Health Instance = new();
    }

    private sealed class Publish
    {
        public static readonly Publish Instance = new();
    }

    private sealed class Maintain
    {
        public static readonly Maintain Instance = new();
    }

    private sealed class Maintained
    {
        public static readonly Maintained Instance = new();
    }
}

public static class WorkerActorRegistration
{
    /// <summary>Starts /user/invoker; it keeps <paramref name="healthFile"/> fresh while the worker is an Up member.</summary>
    public static AkkaConfigurationBuilder AddWorker(this AkkaConfigurationBuilder builder, NodeSettings settings, string healthFile, ILogger channelLog,
        Func<IActorRegistry, ActorSystem, SandboxManager> manager)
        => builder.WithActors((system, registry) =>
            registry.Register<WorkerActor>(system.ActorOf(Props.Create(() => new WorkerActor(manager(registry, system), healthFile, settings, channelLog)), "invoker")));
}
