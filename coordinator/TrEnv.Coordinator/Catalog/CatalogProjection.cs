using Akka.Actor;
using Akka.Hosting;
using Akka.Persistence.Query;
using Akka.Persistence.Sql.Query;
using Akka.Streams;
using Akka.Event;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// Reads every tagged function event from the journal into the <see cref="FunctionCatalog"/>: the whole
/// history at start-up, then live, so deploys made through other coordinators appear here too.
/// </summary>
public sealed class CatalogProjection : ReceiveActor
{
    public CatalogProjection(FunctionCatalog catalog)
    {
        var journal = PersistenceQuery.Get(Context.System).ReadJournalFor<SqlReadJournal>(SqlReadJournal.Identifier);
        var materializer = Context.Materializer();
        var self = Self;
        journal.CurrentEventsByTag(FunctionEvents.Tag, Offset.NoOffset())
            .RunForeach(env => { if (env.Event is IEvent e) catalog.Apply(e); }, materializer)
            .ContinueWith(t =>
            {
                catalog.Loaded = true;
                self.Tell(new Live(t.IsCompletedSuccessfully ? null : t.Exception));
            });
        Receive<Live>(live =>
        {
            if (live.Failure is not null)
                Context.GetLogger().Error(live.Failure, "Reading the function catalog failed; relying on live updates.");
            journal.EventsByTag(FunctionEvents.Tag, Offset.NoOffset())
                .RunForeach(env => { if (env.Event is IEvent e) catalog.Apply(e); }, materializer);
        });
        // This coordinator's own writes are visible at once, before the journal poll sees them.
        Context.System.EventStream.Subscribe(Self, typeof(IEvent));
        Receive<IEvent>(catalog.Apply);
    }

    private sealed record Live(Exception? Failure);
}

public static class CatalogProjectionRegistration
{
    public static AkkaConfigurationBuilder AddCatalogProjection(this AkkaConfigurationBuilder builder, FunctionCatalog catalog)
        => builder.WithActors((system, registry) =>
            registry.Register<CatalogProjection>(system.ActorOf(Props.Create(() => new CatalogProjection(catalog)), "function-catalog")));
}
