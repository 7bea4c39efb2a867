using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Placement;

namespace TrEnv.Coordinator.Api;

/// <summary>
/// What a coordinator must have before it takes traffic, as ASP.NET Core health checks tagged <see cref="Tag"/>
/// (GET /readyz runs them): it is not draining, it is an Up member, its catalog holds the journal's history,
/// and it has heard from a worker when the cluster has any.
/// </summary>
public static class ReadinessChecks
{
    public const string Tag = "ready";

    public static IHealthChecksBuilder AddCoordinatorReadiness(this IServiceCollection services) => services.AddHealthChecks()
        .AddCheck<NotDraining>("not-draining", tags: [Tag])
        .AddCheck<UpMember>("up-member", tags: [Tag])
        .AddCheck<CatalogLoaded>("catalog-loaded", tags: [Tag])
        .AddCheck<WorkersHeard>("workers-heard", tags: [Tag]);

    /// <summary>A draining coordinator finishes what it has but tells load balancers to send nothing new.</summary>
    public sealed class NotDraining(IHostApplicationLifetime lifetime) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
            => Task.FromResult(lifetime.ApplicationStopping.IsCancellationRequested ? HealthCheckResult.Unhealthy("shutting down") : HealthCheckResult.Healthy());
    }

    public sealed class UpMember(ActorSystem system) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
        {
            var status = Akka.Cluster.Cluster.Get(system).SelfMember.Status;
            return Task.FromResult(status == MemberStatus.Up ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy($"member {status}"));
        }
    }

    public sealed class CatalogLoaded(FunctionCatalog catalog) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
            => Task.FromResult(catalog.Loaded ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("catalog loading"));
    }

    /// <summary>A coordinator that has not yet heard from any of the cluster's workers could only answer 503.</summary>
    public sealed class WorkersHeard(ActorSystem system, WorkerDirectory workers) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
        {
            var workerMembers = Akka.Cluster.Cluster.Get(system).State.Members.Count(m => m.Status == MemberStatus.Up && m.HasRole(Roles.Worker));
            return Task.FromResult(workerMembers == 0 || workers.Workers.Count > 0
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy("no worker status received yet"));
        }
    }
}
