using Akka.Actor;
using Akka.Hosting;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Observability;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Api;

/// <summary>GET /metrics in the Prometheus text format.</summary>
public static class MetricsApi
{
    public static void MapMetricsApi(this WebApplication app)
        => app.MapGet("/metrics", async (CoordinatorMetrics metrics, WorkerDirectory workers, FunctionCatalog functions, TemplateCatalog templates,
            IRequiredActor<PoolProxy> pool, CancellationToken ct) =>
        {
            PoolReplies.Usage? usage = null;
            try
            {
                usage = await pool.ActorRef.Ask<PoolReplies.Usage>(new PoolCommands.Stats(PoolCommands.DefaultPool), TimeSpan.FromSeconds(2), ct);
            }
            catch (AskTimeoutException)
            {
            }
            var sandboxes = workers.Workers.SelectMany(w => w.Status.Sandboxes.GroupBy(s => s.State)
                .Select(g => ($"worker=\"{CoordinatorMetrics.Escape(w.Status.Node)}\",state=\"{g.Key}\"", (double)g.Count())));
            var gauges = new List<(string, string, IEnumerable<(string, double)>)>
            {
                ("trenv_sandboxes", "Sandboxes per worker by state (idle, warm, busy), as last reported.", sandboxes),
                ("trenv_workers", "Workers in this coordinator's directory.", [("", workers.Workers.Count)]),
                ("trenv_invocations_in_flight", "Invocations this coordinator is running, per function.",
                    InvokeApi.InFlight.Select(f => ($"function=\"{CoordinatorMetrics.Escape(f.Function)}\"", (double)f.Count))),
                ("trenv_functions", "Deployed functions.", [("", functions.Names.Count)]),
                ("trenv_templates", "Sealed templates.", [("", templates.All.Count)]),
                ("trenv_template_bytes", "Bytes of non-zero pages held by sealed templates.", [("", templates.All.Sum(t => t.NonZeroPages * 4096.0))]),
            };
            if (usage is not null)
                gauges.Add(("trenv_pool_bytes", "Memory pool capacity and allocated bytes.", [("kind=\"capacity\"", usage.Capacity), ("kind=\"allocated\"", usage.AllocatedBytes)]));
            return Results.Text(metrics.Render(gauges), "text/plain; version=0.0.4");
        });
}
