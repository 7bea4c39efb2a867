using Akka.Actor;
using Akka.Hosting;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

// Deleting a function and reclaiming its instances, both carried out on every worker.
public static partial class FunctionsApi
{
    private static async Task<IResult> Delete(string name, IRequiredActor<FunctionRegion> functions, IRequiredActor<TemplateRegion> templates,
        WorkerDirectory workers, FunctionCatalog catalog, CancellationToken ct)
    {
        if (CheckName(name) is { } bad)
            return bad;
        var view = await functions.ActorRef.Ask<FunctionReplies.View>(new FunctionCommands.Get(name), AskTimeout, ct);
        if (view.Current is { } current)
            templates.ActorRef.Tell(new TemplateCommands.Retire(TemplateCommands.KeyOf(name, current.Version)));
        var deleted = await functions.ActorRef.Ask<FunctionReplies.Deleted>(new FunctionCommands.Delete(name), AskTimeout, ct);
        catalog.Removed(name, view.Versions.Count > 0 ? view.Versions[^1].Version : 0);
        if (view.Versions.Count > 0)
            await ForgetEverywhere(workers, name, view.Versions[^1].Version + 1, RetiredFiles.Of(RetiredFiles.Live(catalog), view.Versions), ct);
        return deleted.Existed ? Results.NoContent() : Error(404, ErrorKinds.NotFound, $"There is no function named \"{name}\".");
    }

    /// <summary>
    /// Reclaims every idle warm instance of the function on every worker now; templates stay, so the next
    /// start is a template start. The sandboxes go back to the pool, or with <c>?destroy=true</c> are shut down.
    /// </summary>
    private static async Task<IResult> ScaleToZero(string name, bool? destroy, WorkerDirectory workers, FunctionCatalog catalog, CancellationToken ct)
    {
        if (!catalog.TryGet(name, out _))
            return Error(404, ErrorKinds.NotFound, $"There is no function named \"{name}\".");
        var reclaimed = await ReclaimEverywhere(workers, name, ct, destroy ?? false);
        return Results.Json(new { name, reclaimed, destroyed = destroy ?? false });
    }

    // Every worker drops the function's versions below `below`: warm instances, template headers, unused files.
    private static async Task ForgetEverywhere(WorkerDirectory workers, string name, int below,
        (IReadOnlyList<string> Modules, IReadOnlyList<string> Layers) unused, CancellationToken ct)
    {
        await Task.WhenAll(workers.Workers.Select(async w =>
        {
            try
            {
                await w.Invoker.Ask<WorkerForgot>(new WorkerForget(name, below, unused.Modules, unused.Layers), TimeSpan.FromSeconds(10), ct);
            }
            catch (AskTimeoutException)
            {
                // A worker that cannot answer now reclaims the instances by keep-alive; its files stay.
            }
        }));
    }

    private static async Task<int> ReclaimEverywhere(WorkerDirectory workers, string name, CancellationToken ct, bool destroy = false)
    {
        var replies = await Task.WhenAll(workers.Workers.Select(async w =>
        {
            try
            {
                return (await w.Invoker.Ask<WorkerReclaimed>(new WorkerReclaim(name, destroy), TimeSpan.FromSeconds(10), ct)).Count;
            }
            catch (AskTimeoutException)
            {
                return 0;
            }
        }));
        return replies.Sum();
    }
}
