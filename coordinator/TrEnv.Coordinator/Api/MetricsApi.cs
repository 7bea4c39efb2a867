using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using TrEnv.Coordinator.Observability;

namespace TrEnv.Coordinator.Api;

/// <summary>GET /metrics: OpenTelemetry's Prometheus exporter over the meter <see cref="CoordinatorMetrics.MeterName"/>.</summary>
public static class MetricsApi
{
    public static IServiceCollection AddTrEnvMetrics(this IServiceCollection services, string node)
    {
        services.AddSingleton<PoolUsageSampler>().AddHostedService(p => p.GetRequiredService<PoolUsageSampler>());
        services.AddSingleton<CoordinatorMetrics>();
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("trenv-coordinator", serviceInstanceId: node))
            .WithMetrics(m => m
            .AddMeter(CoordinatorMetrics.MeterName)
            // Every scrape sees the invocations answered before it: no response cache.
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        return services;
    }

    public static void MapMetricsApi(this WebApplication app)
    {
        // The meter's instruments exist once the metrics object does; create it before the first scrape.
        _ = app.Services.GetRequiredService<CoordinatorMetrics>();
        app.MapPrometheusScrapingEndpoint("/metrics").WithTags("cluster").WithSummary("Prometheus metrics (OpenTelemetry exporter)");
    }
}
