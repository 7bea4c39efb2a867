using Akka.Actor;
using Akka.Cluster;
using TrEnv.Cluster;
using TrEnv.Coordinator.Catalog;

namespace TrEnv.Coordinator.Api;

/// <summary>Cluster view, health and readiness.</summary>
public static class ClusterApi
{
    public static void MapClusterApi(this WebApplication app)
    {
        app.MapGet("/healthz", () => Results.Json(new { status = "ok" }));
        app.MapGet("/readyz", (ActorSystem system, FunctionCatalog catalog) =>
        {
            var self = Akka.Cluster.Cluster.Get(system).SelfMember;
            var ready = self.Status == MemberStatus.Up && catalog.Loaded;
            return ready
                ? Results.Json(new { status = "ready" })
                : ApiErrors.Error(503, ApiErrors.Unavailable, $"Not ready: member {self.Status}, catalog {(catalog.Loaded ? "loaded" : "loading")}.", 1);
        });
        app.MapGet("/v1/cluster", (ActorSystem system, NodeSettings settings) =>
        {
            var state = Akka.Cluster.Cluster.Get(system).State;
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
            });
        });
    }
}
