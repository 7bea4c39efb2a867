using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using Akka.Persistence.Query;
using Akka.Persistence.Sql.Query;
using Akka.Streams;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// Reads every tagged function and template event from the journal into the local catalogs: the whole
/// history at start-up, then live, so writes made through other coordinators appear here too. This
/// coordinator's own writes arrive at once through the event stream.
/// </summary>
public sealed class CatalogProjection : ReceiveActor
{
    public CatalogProjection(FunctionCatalog functions, TemplateCatalog templates)
    {
        var journal = PersistenceQuery.Get(Context.System).ReadJournalFor<SqlReadJournal>(SqlReadJournal.Identifier);
        var materializer = Context.Materializer();
        var self = Self;
        void Apply(IEvent e)
        {
            functions.Apply(e);
            templates.Apply(e);
        }

        var history = Task.WhenAll(
            journal.CurrentEventsByTag(FunctionEvents.Tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) Apply(e); }, materializer),
            journal.CurrentEventsByTag(TemplateEvents.Tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) Apply(e); }, materializer));
        history.ContinueWith(t => self.Tell(new Live(t.IsCompletedSuccessfully ? null : t.Exception)), TaskScheduler.Default);

        Receive<Live>(live =>
        {
            if (live.Failure is not null)
                Context.GetLogger().Error(live.Failure, "Reading the catalog history failed; serving from live updates only.");
            functions.Loaded = true;
            foreach (var tag in new[] { FunctionEvents.Tag, TemplateEvents.Tag })
                journal.EventsByTag(tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) Apply(e); }, materializer);
        });
        Context.System.EventStream.Subscribe(Self, typeof(IEvent));
        Receive<IEvent>(Apply);
    }

    private sealed record Live(Exception? Failure);
}

public static class CatalogProjectionRegistration
{
    public static AkkaConfigurationBuilder AddCatalogProjection(this AkkaConfigurationBuilder builder, FunctionCatalog functions, TemplateCatalog templates)
        => builder.WithActors((system, registry) =>
            registry.Register<CatalogProjection>(system.ActorOf(Props.Create(() => new CatalogProjection(functions, templates)), "catalog")));
}
