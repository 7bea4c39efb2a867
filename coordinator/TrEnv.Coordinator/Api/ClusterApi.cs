using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Api;

/// <summary>Cluster view, health and readiness.</summary>
public static class ClusterApi
{
    public static void MapClusterApi(this WebApplication app)
    {
        app.MapGet("/healthz", () => Results.Json(new { status = "ok" }));
        app.MapGet("/readyz", async (HealthCheckService health, CancellationToken ct) =>
        {
            var report = await health.CheckHealthAsync(check => check.Tags.Contains(ReadinessChecks.Tag), ct);
            if (report.Status == HealthStatus.Healthy)
                return Results.Json(new { status = "ready" });
            var why = report.Entries.Where(e => e.Value.Status != HealthStatus.Healthy).Select(e => e.Value.Description ?? e.Key);
            return ApiErrors.Error(503, ErrorKinds.Unavailable, $"Not ready: {string.Join(", ", why)}.", 1);
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
