using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using TrEnv.Cluster;
using TrEnv.Coordinator.Observability;

namespace TrEnv.Coordinator.Api;

/// <summary>GET /metrics: OpenTelemetry's Prometheus exporter over the meter <see cref="CoordinatorMetrics.MeterName"/>.</summary>
public static class MetricsApi
{
    public static IServiceCollection AddTrEnvMetrics(this IServiceCollection services, string node)
    {
        services.AddSingleton<PoolUsageSampler>().AddHostedService(p => p.GetRequiredService<PoolUsageSampler>());
        services.AddSingleton<CoordinatorMetrics>();
        services.AddTrEnvTelemetry("trenv-coordinator", node, [NodeTelemetry.Coordinator],
            tracing: t => t.AddAspNetCoreInstrumentation(o => o.Filter = TracedRequest),
            metrics: m => m
                .AddMeter(CoordinatorMetrics.MeterName)
                .AddAspNetCoreInstrumentation()
                // Every scrape sees the invocations answered before it: no response cache.
                .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        return services;
    }

    // The API is traced; scrapes, probes and the dashboard's polling would only bury it.
    private static bool TracedRequest(HttpContext context)
        => context.Request.Path.StartsWithSegments("/v1") && !context.Request.Path.StartsWithSegments("/v1/dashboard");

    public static void MapMetricsApi(this WebApplication app)
    {
        // The meter's instruments exist once the metrics object does; create it before the first scrape.
        _ = app.Services.GetRequiredService<CoordinatorMetrics>();
        app.MapPrometheusScrapingEndpoint("/metrics").WithTags("cluster").WithSummary("Prometheus metrics (OpenTelemetry exporter)");
    }
}
