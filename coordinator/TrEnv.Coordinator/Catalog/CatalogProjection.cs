using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Akka.Persistence.Query;
using Akka.Persistence.Sql.Query;
using Akka.Streams;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// Reads every tagged function, template and session event from the journal into the local catalogs: the whole
/// history at start-up, then live, so writes made through other coordinators appear here too. This
/// coordinator's own writes arrive at once through the event stream.
/// </summary>
public sealed class CatalogProjection : ReceiveActor, IWithTimers
{
    public ITimerScheduler Timers { get; set; } = null!;

    private static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(1);
    private readonly FunctionCatalog _functions;
    private readonly TemplateCatalog _templates;
    private readonly SessionCatalog _sessions;

    public CatalogProjection(FunctionCatalog functions, TemplateCatalog templates, SessionCatalog sessions)
    {
        _functions = functions;
        _templates = templates;
        _sessions = sessions;
        Context.System.EventStream.Subscribe(Self, typeof(IEvent));
        Receive<IEvent>(Apply);
        Receive<Start>(_ => ReadHistory());
        Receive<Live>(live =>
        {
            if (live.Failure is not null)
            {
                // Never "loaded" without the history: /readyz stays 503 and the read is tried again.
                Context.GetLogger().Warning("Reading the catalog history failed ({0}); retrying in {1}.", live.Failure.GetBaseException().Message, RetryAfter);
                Timers.StartSingleTimer("retry", Start.Instance, RetryAfter);
                return;
            }
            _functions.Loaded = true;
            foreach (var tag in new[] { FunctionEvents.Tag, TemplateEvents.Tag })
            {
                var pass = new FunctionCatalog.JournalPass();
                live.Journal!.EventsByTag(tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) Apply(e, pass); }, live.Materializer!);
            }
            // Sessions only from the journal, in order: their entities do not publish locally, so no event arrives twice.
            live.Journal!.EventsByTag(SessionEvents.Tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) _sessions.Apply(e); }, live.Materializer!);
        });
        // Off the constructor: a journal that is not reachable yet (a database restarting with the cluster) would
        // otherwise fail the actor's creation and stop it for good, leaving this coordinator unready forever.
        Self.Tell(Start.Instance);
    }

    private void Apply(IEvent e) => Apply(e, null);

    private void Apply(IEvent e, FunctionCatalog.JournalPass? pass)
    {
        _functions.Apply(e, pass);
        _templates.Apply(e);
    }

    private void ReadHistory()
    {
        SqlReadJournal journal;
        IMaterializer materializer;
        try
        {
            journal = PersistenceQuery.Get(Context.System).ReadJournalFor<SqlReadJournal>(SqlReadJournal.Identifier);
            materializer = Context.Materializer();
        }
        catch (Exception e)
        {
            Self.Tell(new Live(e, null, null));
            return;
        }
        var self = Self;
        var functionPass = new FunctionCatalog.JournalPass();
        var templatePass = new FunctionCatalog.JournalPass();
        var history = Task.WhenAll(
            journal.CurrentEventsByTag(FunctionEvents.Tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) Apply(e, functionPass); }, materializer),
            journal.CurrentEventsByTag(TemplateEvents.Tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) Apply(e, templatePass); }, materializer));
        history.ContinueWith(t => self.Tell(t.IsCompletedSuccessfully ? new Live(null, journal, materializer) : new Live(t.Exception, null, null)), TaskScheduler.Default);
    }

    private sealed record Start
    {
        public static readonly Start Instance = new();
    }

    private sealed record Live(Exception? Failure, SqlReadJournal? Journal, IMaterializer? Materializer);
}

public static class CatalogProjectionRegistration
{
    public static AkkaConfigurationBuilder AddCatalogProjection(this AkkaConfigurationBuilder builder, FunctionCatalog functions, TemplateCatalog templates, SessionCatalog sessions)
        => builder.WithActors((system, registry) =>
            registry.Register<CatalogProjection>(system.ActorOf(Props.Create(() => new CatalogProjection(functions, templates, sessions)), "catalog")));
}
