using Akka.Actor;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Observability;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Api;

/// <summary>
/// The live dashboard: a single page at <c>/</c> (embedded, no build step) that polls <c>GET /v1/dashboard</c>
/// once a second: nodes, each worker's sandboxes, the pool's regions and their templates, recent invocations.
/// </summary>
public static class DashboardApi
{
    private static readonly Lazy<byte[]> Page = new(() =>
    {
        using var stream = typeof(DashboardApi).Assembly.GetManifestResourceStream("TrEnv.Coordinator.Dashboard.dashboard.html")
            ?? throw new InvalidOperationException("The dashboard page is not embedded in the coordinator.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    public static void MapDashboard(this WebApplication app)
    {
        app.MapGet("/", () => Results.Bytes(Page.Value, "text/html; charset=utf-8")).ExcludeFromDescription();
        app.MapGet("/v1/dashboard", Snapshot).WithTags("cluster")
            .WithSummary("What the dashboard at / shows: nodes, workers and their sandboxes, pool regions and templates, recent invocations through this coordinator");
    }

    private static async Task<IResult> Snapshot(ActorSystem system, NodeSettings settings, WorkerDirectory workers, TemplateCatalog templates,
        CoordinatorMetrics metrics, PoolUsageSampler sampler, IRequiredActor<PoolProxy> pool, CancellationToken ct)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        var usage = sampler.Last;
        if (usage is null)
        {
            try
            {
                usage = await pool.ActorRef.Ask<PoolReplies.Usage>(new PoolCommands.Stats(PoolCommands.DefaultPool), TimeSpan.FromSeconds(1), ct);
            }
            catch (AskTimeoutException)
            {
            }
        }
        var reported = workers.Workers.OrderBy(w => w.Status.Node, StringComparer.Ordinal).Select(w => w.Status).ToList();
        var mappedBy = reported.SelectMany(w => w.Sandboxes).Where(s => s.Template is not null).GroupBy(s => s.Template!, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var (total, byStart, latest) = metrics.Recent.Snapshot(512);
        return Results.Json(new
        {
            self = settings.Name,
            at = DateTimeOffset.UtcNow,
            nodes = state.Members.OrderBy(m => m.Address.ToString(), StringComparer.Ordinal).Select(m => new
            {
                address = m.Address.ToString(),
                self = m.Address == cluster.SelfAddress,
                roles = m.Roles.Order(StringComparer.Ordinal),
                status = state.Unreachable.Contains(m) ? "unreachable" : m.Status.ToString().ToLowerInvariant(),
            }),
            workers = reported.Select(w => new
            {
                node = w.Node,
                isolation = w.Isolation,
                maxSandboxes = w.MaxSandboxes,
                memoryBytes = w.MemoryBytes,
                memoryBoundMb = w.MemoryBoundMb,
                poolMappedBytes = w.PoolMappedBytes,
                reportedAt = w.At,
                sandboxes = w.Sandboxes.OrderBy(s => s.Pid).Select(s => new
                {
                    pid = s.Pid,
                    state = s.State,
                    function = s.Function,
                    version = s.Version,
                    memoryBytes = s.MemoryBytes,
                    template = s.Template,
                }),
            }),
            pool = usage is null ? null : new
            {
                capacityBytes = usage.Capacity,
                allocatedBytes = usage.AllocatedBytes,
                regions = usage.Regions,
                largestFreeBytes = usage.LargestFree,
            },
            templates = templates.All.OrderBy(t => t.Region.Offset).Select(t => new
            {
                key = t.Key,
                function = t.Function,
                version = t.Version,
                offset = t.Region.Offset,
                length = t.Region.Length,
                nonZeroPages = t.NonZeroPages,
                capturedBy = t.CapturedBy,
                mappedBy = mappedBy.GetValueOrDefault(t.Key),
            }),
            invocations = new
            {
                total,
                byStart,
                latest = latest.Select(v => new
                {
                    at = v.At,
                    id = v.Id,
                    function = v.Function,
                    version = v.Version,
                    start = v.Start,
                    sandbox = v.Sandbox,
                    outcome = v.Outcome,
                    node = v.Node,
                    startupMicros = v.StartupMicros,
                    execMicros = v.ExecMicros,
                    totalMicros = v.TotalMicros,
                }),
            },
        });
    }
}
