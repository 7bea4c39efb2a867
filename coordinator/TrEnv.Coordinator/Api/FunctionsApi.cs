using System.Globalization;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Cluster.Layers;
using TrEnv.Cluster.Runtimes;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;
using TrEnv.Engine;
using TrEnv.Engine.Wasm;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

/// <summary>Deploy, list, read and delete functions (HTTP API v1, DESIGN.md section 4).</summary>
public static partial class FunctionsApi
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(15);

    // \z, not $: in .NET $ also matches before a final newline, which would make "abc\n" a second function.
    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z")]
    private static partial Regex NamePattern();

    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]{0,127}\z")]
    private static partial Regex EnvKeyPattern();

    public static IResult? CheckName(string name)
        => NamePattern().IsMatch(name) ? null
            : Error(400, BadRequest, $"\"{Printable(name)}\" is not a valid function name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.");

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

    private static async Task<IResult> Deploy(string name, HttpRequest request, NodeSettings settings,
        IRequiredActor<FunctionRegion> functions, IRequiredActor<ModuleRegion> modules, IRequiredActor<TemplateRegion> templates, FunctionCatalog catalog, WorkerDirectory workers, Wasmtime.Engine validator, UploadGate gate, CancellationToken ct)
    {
        if (CheckName(name) is { } bad)
            return bad;
        if (ParseLimits(request.Query, out var problem) is not { } limits)
            return Error(400, BadRequest, problem is null ? LimitsHelp : $"{problem} {LimitsHelp}");
        using var turn = await gate.EnterAsync(ct);
        if (turn is null)
            return gate.Busy();
        var (body, unread) = await UploadGate.ReadAsync(request, settings.MaxModuleMb * 1024L * 1024L,
            () => Error(413, ErrorKinds.InputTooLarge, $"The module is larger than the deploy limit of {settings.MaxModuleMb} MiB (TRENV_MAX_MODULE_MB)."), ct);
        if (body is null)
            return unread!;
        if (limits.Runtime is not null)
        {
            // A script: the runtime's module runs it, and the script (or the archive of it and its modules) is the layer.
            var prepared = await PrepareScriptAsync(limits, body, settings, modules.ActorRef, ct);
            if (prepared.Error is { } refused)
                return refused;
            (body, limits) = (prepared.Module!, prepared.Limits!);
        }

        // Validate before storing anything: malformed bytes and ABI problems are 422 with every problem named.
        try
        {
            GuestAbiCheck.Check(body, (long)limits.MemoryMb << 20);
            ModuleRewriter.ExportMutableGlobals(body);
            // Full validation (function bodies too) without compiling: microseconds, not the compile's seconds.
            if (Wasmtime.Module.Validate(validator, body) is { } invalid)
                throw new InvalidModuleException($"The module is not valid WebAssembly: {invalid}");
        }
        catch (InvalidModuleException e)
        {
            return Error(422, ErrorKinds.InvalidModule, e.Message);
        }

        if (limits.Layer is { } layer && !await LayersApi.ExistsAsync(modules.ActorRef, layer, ct))
            return Error(422, LayersApi.InvalidLayer, $"No layer {layer} is stored: upload it first with PUT /v1/layers.");

        var sha = ModuleHash.Of(body).Hex;
        var before = await functions.ActorRef.Ask<FunctionReplies.View>(new FunctionCommands.Get(name), AskTimeout, ct);
        await modules.ActorRef.Ask<ModuleReplies.Stored>(new ModuleCommands.Store(sha, body), AskTimeout, ct);
        var deployed = await functions.ActorRef.Ask<FunctionReplies.Deployed>(new FunctionCommands.Deploy(name, sha, body.Length, limits), AskTimeout, ct);
        var view = await functions.ActorRef.Ask<FunctionReplies.View>(new FunctionCommands.Get(name), AskTimeout, ct);
        catalog.Set(view);
        if (view.Current is { } deployedVersion)
        {
            foreach (var w in workers.Workers)
                w.Invoker.Tell(new WorkerPrepare(name, deployedVersion));
        }
        // The replaced version's template is retired: its region is freed once no instance maps it. Workers
        // drop the old versions' instances, headers and files (not waited for: a slow worker never slows a deploy).
        if (deployed.Created && before.Current is { } old)
        {
            templates.ActorRef.Tell(new TemplateCommands.Retire(TemplateCommands.KeyOf(name, old.Version)));
            var (unusedModules, unusedLayers) = RetiredFiles.Of(RetiredFiles.Live(catalog), before.Versions);
            foreach (var w in workers.Workers)
                w.Invoker.Tell(new WorkerForget(name, deployed.Version, unusedModules, unusedLayers));
        }
        return Results.Json(new { name, version = deployed.Version, sha256 = deployed.Sha256, created = deployed.Created }, statusCode: 201);
    }

    private static async Task<IResult> Delete(string name, IRequiredActor<FunctionRegion> functions, IRequiredActor<TemplateRegion> templates,
        WorkerDirectory workers, FunctionCatalog catalog, CancellationToken ct)
    {
        if (CheckName(name) is { } bad)
            return bad;
        var view = await functions.ActorRef.Ask<FunctionReplies.View>(new FunctionCommands.Get(name), AskTimeout, ct);
        if (view.Current is { } current)
            templates.ActorRef.Tell(new TemplateCommands.Retire(TemplateCommands.KeyOf(name, current.Version)));
        var deleted = await functions.ActorRef.Ask<FunctionReplies.Deleted>(new FunctionCommands.Delete(name), AskTimeout, ct);
        catalog.Apply(new FunctionEvents.Deleted(name, DateTimeOffset.UtcNow));
        if (view.Versions.Count > 0)
            await ForgetEverywhere(workers, name, view.Versions[^1].Version + 1, RetiredFiles.Of(RetiredFiles.Live(catalog), view.Versions), ct);
        return deleted.Existed ? Results.NoContent() : Error(404, NotFound, $"There is no function named \"{name}\".");
    }

    /// <summary>
    /// Reclaims every idle warm instance of the function on every worker now; templates stay, so the next
    /// start is a template start. The sandboxes go back to the pool, or with <c>?destroy=true</c> are shut down.
    /// </summary>
    private static async Task<IResult> ScaleToZero(string name, bool? destroy, WorkerDirectory workers, FunctionCatalog catalog, CancellationToken ct)
    {
        if (!catalog.TryGet(name, out _))
            return Error(404, NotFound, $"There is no function named \"{name}\".");
        var reclaimed = await ReclaimEverywhere(workers, name, ct, destroy ?? false);
        return Results.Json(new { name, reclaimed, destroyed = destroy ?? false });
    }

    /// <summary>
    /// The function's recent stdout and stderr lines from every worker (each keeps a bounded ring per function),
    /// oldest first. A worker that does not answer within 3 s is left out and named.
    /// </summary>
    private static async Task<IResult> Logs(string name, int? tail, WorkerDirectory workers, FunctionCatalog catalog, CancellationToken ct)
    {
        if (!catalog.TryGet(name, out _))
            return Error(404, NotFound, $"There is no function named \"{name}\".");
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
            return Error(404, NotFound, $"There is no function named \"{name}\".");
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

    private const string LimitsHelp = "Query parameters: memoryMb (1-4096), timeoutMs (1-900000), initTimeoutMs (1-300000), tmpMb (1-10240), concurrency (1-1024), cpuMillicores (1-64000), "
        + "network (true|false), layer (the sha256 PUT /v1/layers answered), runtime (python: the body is a script, or a tar with main.py), env.KEY=VALUE.";

    private sealed record PreparedScript(byte[]? Module, FunctionLimits? Limits, IResult? Error);

    private static async Task<PreparedScript> PrepareScriptAsync(FunctionLimits limits, byte[] body, NodeSettings settings, IActorRef blobs, CancellationToken ct)
    {
        static PreparedScript Refuse(int status, string kind, string message) => new(null, null, Error(status, kind, message));
        if (ScriptRuntimes.Find(limits.Runtime) is not { } runtime)
            return Refuse(422, InvalidRuntime, $"There is no runtime \"{limits.Runtime}\"; the runtimes are {string.Join(", ", ScriptRuntimes.All.Select(r => r.Name))}.");
        if (limits.Layer is not null)
            return Refuse(400, BadRequest, "A script deploy makes its own layer from the body; send the script and its modules as one tar instead of ?layer=.");
        if (runtime.ModulePath(settings) is not { } modulePath)
            return Refuse(503, Unavailable, $"The {runtime.Name} runtime is not installed on this coordinator ({Path.Combine(settings.RuntimesDirectory, runtime.ModuleFile)} is missing; "
                + $"scripts/build-{runtime.Name}.sh builds it, TRENV_RUNTIMES_DIR says where).");
        byte[] tar;
        if (ScriptRuntimes.LooksLikeArchive(body))
        {
            try
            {
                var summary = LayerArchive.Check(body, settings.MaxLayerMb * 1024L * 1024L);
                if (!LayerArchive.Contains(summary.Tar, runtime.ScriptFile))
                    return Refuse(422, InvalidScript, $"The archive has no {runtime.ScriptFile} at its top: the runtime runs that file.");
                tar = summary.Tar;
            }
            catch (InvalidDataException e)
            {
                return Refuse(422, LayersApi.InvalidLayer, e.Message);
            }
        }
        else
        {
            try
            {
                new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(body);
            }
            catch (System.Text.DecoderFallbackException)
            {
                return Refuse(422, InvalidScript, $"A {runtime.Name} script must be UTF-8 text (or a tar of the script and its modules).");
            }
            if (body.Length == 0)
                return Refuse(422, InvalidScript, $"The script is empty; it must define handle(request).");
            tar = ScriptRuntimes.ScriptLayer(runtime.ScriptFile, body);
        }
        var layer = ModuleHash.Of(tar).Hex;
        await blobs.Ask<ModuleReplies.Stored>(new ModuleCommands.Store(layer, tar), TimeSpan.FromSeconds(30), ct);
        return new(await File.ReadAllBytesAsync(modulePath, ct), limits with { Layer = layer }, null);
    }

    // Control characters in an echoed name become \uXXXX so an error message cannot carry terminal escapes.
    private static string Printable(string text)
        => string.Concat(text.Take(128).Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));

    public const string InvalidRuntime = "invalid_runtime";
    public const string InvalidScript = "invalid_script";

    internal static FunctionLimits? ParseLimits(IQueryCollection query) => ParseLimits(query, out _);

    /// <summary>The deploy's limits, or null with <paramref name="problem"/> naming what is wrong when it can say.</summary>
    internal static FunctionLimits? ParseLimits(IQueryCollection query, out string? problem)
    {
        problem = null;
        int? Int(string key, int min, int max)
        {
            if (!query.TryGetValue(key, out var text))
                return null;
            return int.TryParse(text.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max ? v : -1;
        }
        var memory = Int("memoryMb", 1, FunctionLimits.MaxMemoryMb);
        var timeout = Int("timeoutMs", 1, FunctionLimits.MaxTimeoutMs);
        var concurrency = Int("concurrency", 1, 1024);
        var cpu = Int("cpuMillicores", 1, FunctionLimits.MaxCpuMillicores);
        var init = Int("initTimeoutMs", 1, FunctionLimits.MaxInitTimeoutMs);
        var tmp = Int("tmpMb", 1, FunctionLimits.MaxTmpMb);
        if (memory == -1 || timeout == -1 || concurrency == -1 || cpu == -1 || init == -1 || tmp == -1)
            return null;
        bool? network = query.TryGetValue("network", out var net) ? net.ToString() switch { "true" or "1" => true, "false" or "0" => false, _ => null } : false;
        var layer = query.TryGetValue("layer", out var l) ? l.ToString().ToLowerInvariant() : null;
        if (network is null || (layer is not null && !ModuleHash.IsValid(layer)))
            return null;
        var runtime = query.TryGetValue("runtime", out var rt) ? rt.ToString() : null;
        if (runtime is { Length: 0 or > 32 })
            return null;
        var env = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in query)
        {
            if (key.StartsWith("env.", StringComparison.Ordinal))
            {
                var name = key[4..];
                if (!EnvKeyPattern().IsMatch(name))
                {
                    problem = $"The environment key \"{Printable(name)}\" is not valid: use 1 to 128 letters, digits or '_', not starting with a digit.";
                    return null;
                }
                if (value.Count != 1 || value.ToString().Contains('\0', StringComparison.Ordinal))
                {
                    problem = value.Count != 1 ? $"The environment key \"{name}\" is given {value.Count} times." : $"The value of environment key \"{name}\" contains a NUL character.";
                    return null;
                }
                env[name] = value.ToString();
            }
            else if (key is not ("memoryMb" or "timeoutMs" or "initTimeoutMs" or "tmpMb" or "concurrency" or "cpuMillicores" or "network" or "layer" or "runtime"))
            {
                problem = $"Unknown query parameter \"{Printable(key)}\".";
                return null;
            }
        }
        return new FunctionLimits(memory ?? FunctionLimits.DefaultMemoryMb, timeout ?? FunctionLimits.DefaultTimeoutMs,
            concurrency ?? FunctionLimits.DefaultConcurrency, new Dictionary<string, string>(env, StringComparer.Ordinal), cpu ?? 0, network.Value, layer, runtime,
            init ?? FunctionLimits.DefaultInitTimeoutMs, tmp ?? FunctionLimits.DefaultTmpMb);
    }
}

/// <summary>Requires the admin bearer token on deploy and delete when TRENV_ADMIN_TOKEN is set.</summary>
public sealed class AdminTokenFilter(NodeSettings settings) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        => BearerToken.Matches(context.HttpContext.Request, settings.AdminToken)
            ? await next(context)
            : Error(401, Unauthorized, "This call needs the admin token: send \"Authorization: Bearer <TRENV_ADMIN_TOKEN>\".");
}

public static class BearerToken
{
    public static bool Matches(HttpRequest request, string? expected)
    {
        if (string.IsNullOrEmpty(expected))
            return true;
        var header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.Ordinal))
            return false;
        var given = System.Text.Encoding.UTF8.GetBytes(header[7..].Trim());
        return System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, System.Text.Encoding.UTF8.GetBytes(expected));
    }
}
