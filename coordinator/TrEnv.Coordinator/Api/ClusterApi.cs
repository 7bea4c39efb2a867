using Akka.Actor;
using Akka.Cluster;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;
using TrEnv.Coordinator.Catalog;

namespace TrEnv.Coordinator.Api;

/// <summary>Cluster view, health and readiness.</summary>
public static class ClusterApi
{
    public static void MapClusterApi(this WebApplication app)
    {
        app.MapGet("/healthz", () => Results.Json(new { status = "ok" }));
        app.MapGet("/readyz", (ActorSystem system, FunctionCatalog catalog, WorkerDirectory workers, IHostApplicationLifetime lifetime) =>
        {
            // A draining coordinator finishes what it has but tells load balancers to send nothing new.
            if (lifetime.ApplicationStopping.IsCancellationRequested)
                return ApiErrors.Error(503, ApiErrors.Unavailable, "Not ready: shutting down.", 1);
            var cluster = Akka.Cluster.Cluster.Get(system);
            var self = cluster.SelfMember;
            // A coordinator that has not yet heard from any of the cluster's workers could only answer 503.
            var workerMembers = cluster.State.Members.Count(m => m.Status == MemberStatus.Up && m.HasRole(Roles.Worker));
            var workersKnown = workerMembers == 0 || workers.Workers.Count > 0;
            var ready = self.Status == MemberStatus.Up && catalog.Loaded && workersKnown;
            return ready
                ? Results.Json(new { status = "ready" })
                : ApiErrors.Error(503, ApiErrors.Unavailable,
                    $"Not ready: member {self.Status}, catalog {(catalog.Loaded ? "loaded" : "loading")}, {(workersKnown ? "workers known" : "no worker status received yet")}.", 1);
        });
        app.MapGet("/v1/cluster", async (ActorSystem system, NodeSettings settings, WorkerDirectory workers, IRequiredActor<PoolProxy> pool, CancellationToken ct) =>
        {
            var state = Akka.Cluster.Cluster.Get(system).State;
            PoolReplies.Usage? usage = null;
            try
            {
                usage = await pool.ActorRef.Ask<PoolReplies.Usage>(new PoolCommands.Stats(PoolCommands.DefaultPool), TimeSpan.FromSeconds(2), ct);
            }
            catch (AskTimeoutException)
            {
            }
            return Results.Json(new
            {
                self = settings.Name,
                leader = state.Leader?.ToString(),
                nodes = state.Members.Select(m => new
                {
                    address = m.Address.ToString(),
                    roles = m.Roles.Order(),
                    status = state.Unreachable.Contains(m) ? "unreachable" : m.Status.ToString().ToLowerInvariant(),
                }),
                workers = workers.Workers.OrderBy(w => w.Status.Node, StringComparer.Ordinal).Select(w => new
                {
                    node = w.Status.Node,
                    address = w.Status.Address,
                    isolation = w.Status.Isolation,
                    isolationMissing = w.Status.IsolationMissing ?? [],
                    maxSandboxes = w.Status.MaxSandboxes,
                    busy = w.Status.Busy,
                    idle = w.Status.IdleGeneric,
                    warm = w.Status.WarmIdle,
                    memoryBytes = w.Status.MemoryBytes,
                    memoryBoundMb = w.Status.MemoryBoundMb,
                    evicted = w.Status.Evicted,
                    sandboxes = w.Status.Sandboxes.Select(s => new { pid = s.Pid, state = s.State, function = s.Function, version = s.Version, memoryBytes = s.MemoryBytes }),
                    reportedAt = w.Status.At,
                }),
                pool = usage is null ? null : new
                {
                    path = settings.PoolPath,
                    capacityBytes = usage.Capacity,
                    allocatedBytes = usage.AllocatedBytes,
                    regions = usage.Regions,
                    largestFreeBytes = usage.LargestFree,
                },
            });
        });
    }
}
