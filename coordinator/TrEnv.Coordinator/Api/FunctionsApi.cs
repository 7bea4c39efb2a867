using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Hosting;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

/// <summary>Deploy, list, read and delete functions (HTTP API v1, DESIGN.md section 4).</summary>
public static partial class FunctionsApi
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(15);

    // \z, not $: in .NET $ also matches before a final newline, which would make "abc\n" a second function.
    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z")]
    private static partial Regex NamePattern();

    public static IResult? CheckName(string name)
        => NamePattern().IsMatch(name) ? null
            : Error(400, ErrorKinds.BadRequest, $"\"{Printable(name)}\" is not a valid function name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.");

    public static void MapFunctionsApi(this WebApplication app)
    {
        var admin = app.MapGroup("/v1/functions").AddEndpointFilter<AdminTokenFilter>();
        admin.MapPut("/{name}", Deploy).WithTags("functions").WithSummary("Deploy a module (body: application/wasm); query: memoryMb, timeoutMs, concurrency, cpuMillicores, network, layer, env.KEY=VALUE");
        admin.MapDelete("/{name}", Delete).WithTags("functions").WithSummary("Delete a function; its templates are released once no sandbox maps them");
        admin.MapPost("/{name}/scale-to-zero", ScaleToZero).WithTags("functions").WithSummary("Reclaim the function's idle warm instances now (destroy=true shuts their sandboxes down)");
        app.MapGet("/v1/functions", List).WithTags("functions").WithSummary("List functions: current version, limits, template state, live instances per node");
        app.MapGet("/v1/functions/{name}", Get).WithTags("functions").WithSummary("One function with all its versions");
        app.MapGet("/v1/functions/{name}/logs", Logs).WithTags("functions").WithSummary("Recent stdout and stderr lines of the function's guests from every worker (tail: lines, default 100)");
    }

    /// <summary>
    /// The function's recent stdout and stderr lines from every worker (each keeps a bounded ring per function),
    /// oldest first. A worker that does not answer within 3 s is left out and named.
    /// </summary>
    private static async Task<IResult> Logs(string name, int? tail, WorkerDirectory workers, FunctionCatalog catalog, CancellationToken ct)
    {
        if (!catalog.TryGet(name, out _))
            return Error(404, ErrorKinds.NotFound, $"There is no function named \"{name}\".");
        var wanted = Math.Clamp(tail ?? 100, 1, 10_000);
        var silent = new System.Collections.Concurrent.ConcurrentBag<string>();
        var replies = await Task.WhenAll(workers.Workers.Select(async w =>
        {
            try
            {
                return (await w.Invoker.Ask<WorkerLogs>(new WorkerLogsQuery(name, wanted), TimeSpan.FromSeconds(3), ct)).Lines;
            }
            catch (AskTimeoutException)
            {
                silent.Add(w.Status.Node);
                return [];
            }
        }));
        var lines = replies.SelectMany(l => l).OrderBy(l => l.At).TakeLast(wanted)
            .Select(l => new { at = l.At, node = l.Node, version = l.Version, stream = l.Stream, text = l.Text });
        return Results.Json(new { name, lines, unanswered = silent.Order(StringComparer.Ordinal) });
    }

    private static IResult List(FunctionCatalog catalog, TemplateCatalog templates, WorkerDirectory workers)
        => Results.Json(new
        {
            functions = catalog.Names.Select(n => catalog.TryGet(n, out var v)
                ? new { name = n, current = Describe(n, v), template = TemplateState(templates, n, v), instances = workers.InstancesOf(n) }
                : null).Where(x => x is not null),
        });

    private static async Task<IResult> Get(string name, IRequiredActor<FunctionRegion> functions, TemplateCatalog templates, WorkerDirectory workers, CancellationToken ct)
    {
        if (CheckName(name) is { } bad)
            return bad;
        var view = await functions.ActorRef.Ask<FunctionReplies.View>(new FunctionCommands.Get(name), AskTimeout, ct);
        if (view.Current is not { } current)
            return Error(404, ErrorKinds.NotFound, $"There is no function named \"{name}\".");
        return Results.Json(new
        {
            name,
            current = Describe(name, current),
            versions = view.Versions.Select(v => Describe(name, v)),
            template = TemplateState(templates, name, current),
            instances = workers.InstancesOf(name),
        });
    }

    private static object TemplateState(TemplateCatalog templates, string name, FunctionVersion v)
        => templates.Find(TemplateCommands.KeyOf(name, v.Version)) is { } t
            ? new { status = "sealed", id = t.Key, nonZeroPages = t.NonZeroPages, capturedBy = (string?)t.CapturedBy }
            : new { status = "none", id = TemplateCommands.KeyOf(name, v.Version), nonZeroPages = 0L, capturedBy = (string?)null };

    private static object Describe(string name, FunctionVersion v) => new
    {
        name,
        version = v.Version,
        sha256 = v.Sha256,
        sizeBytes = v.SizeBytes,
        deployedAt = v.DeployedAt,
        limits = new
        {
            memoryMb = v.Limits.MemoryMb,
            timeoutMs = v.Limits.TimeoutMs,
            initTimeoutMs = v.Limits.InitTimeoutMs,
            tmpMb = v.Limits.TmpMb,
            concurrency = v.Limits.Concurrency,
            cpuMillicores = v.Limits.CpuMillicores,
            network = v.Limits.Network,
            layer = v.Limits.Layer,
            env = v.Limits.Env,
        },
    };

    // Control characters in an echoed name become \uXXXX so an error message cannot carry terminal escapes.
    private static string Printable(string text)
        => string.Concat(text.Take(128).Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
}
