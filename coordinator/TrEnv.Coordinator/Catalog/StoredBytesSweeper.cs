using Akka.Actor;
using Akka.Hosting;
using Akka.Persistence.Query;
using Akka.Persistence.Sql.Query;
using Akka.Streams;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// Removes stored module and layer bytes that nothing has referenced for <c>TRENV_UNREFERENCED_TTL_S</c>: those of
/// deleted functions, and layers uploaded but never deployed. Each sweep reads the journal afresh (which bytes
/// are stored, every function and session event) rather than the live catalogs, so a coordinator that has just
/// started never removes what it has not read yet. A module entity refuses the removal if a store or a deploy
/// referenced its bytes within the TTL, which covers a deploy in flight during the sweep.
/// </summary>
public sealed class StoredBytesSweeper(NodeSettings settings, ActorSystem system, IRequiredActor<ModuleRegion> modules, FunctionCatalog catalog,
    ILogger<StoredBytesSweeper> log) : BackgroundService
{
    private const string Prefix = "module-";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (settings.UnreferencedTtlSeconds <= 0)
            return;
        var ttl = TimeSpan.FromSeconds(settings.UnreferencedTtlSeconds);
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(Math.Clamp(settings.UnreferencedTtlSeconds / 2.0, 1, 600)));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                if (!catalog.Loaded)
                    continue;
                try
                {
                    await SweepAsync(ttl, stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    log.LogWarning("Removing unreferenced module and layer bytes failed, tried again next sweep: {Error}", e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task SweepAsync(TimeSpan ttl, CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var journal = PersistenceQuery.Get(system).ReadJournalFor<SqlReadJournal>(SqlReadJournal.Identifier);
        var materializer = system.Materializer();
        var stored = new List<string>();
        await journal.CurrentPersistenceIds().RunForeach(id => { if (id.StartsWith(Prefix, StringComparison.Ordinal)) stored.Add(id[Prefix.Length..]); }, materializer);
        if (stored.Count == 0)
            return;
        var functions = new List<IEvent>();
        var sessions = new List<IEvent>();
        await journal.CurrentEventsByTag(FunctionEvents.Tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) functions.Add(e); }, materializer);
        await journal.CurrentEventsByTag(SessionEvents.Tag, Offset.NoOffset()).RunForeach(env => { if (env.Event is IEvent e) sessions.Add(e); }, materializer);
        foreach (var sha in StoredBytes.Unreferenced(stored, functions, sessions))
        {
            var reply = await modules.ActorRef.Ask<ModuleReplies.Removed>(new ModuleCommands.Remove(sha, started - ttl), TimeSpan.FromSeconds(30), ct);
            if (reply.Done)
                log.LogInformation("Removed the stored bytes of {Sha256}: no function version or session has referenced them for {Ttl} s", sha, ttl.TotalSeconds);
        }
    }
}
