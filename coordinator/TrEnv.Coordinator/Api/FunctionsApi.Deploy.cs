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

// Deploying a version: a module checked before it is stored, or a script turned into its runtime's module and a layer.
public static partial class FunctionsApi
{
    public const string InvalidRuntime = "invalid_runtime";
    public const string InvalidScript = "invalid_script";

    private static async Task<IResult> Deploy(string name, HttpRequest request, NodeSettings settings,
        IRequiredActor<FunctionRegion> functions, IRequiredActor<ModuleRegion> modules, IRequiredActor<TemplateRegion> templates, FunctionCatalog catalog, WorkerDirectory workers, Wasmtime.Engine validator, UploadGate gate, CancellationToken ct)
    {
        if (CheckName(name) is { } bad)
            return bad;
        if (name.StartsWith(Sessions.InterpreterFunction.ReservedPrefix, StringComparison.Ordinal))
            return Error(400, ErrorKinds.BadRequest, $"Function names starting with \"{Sessions.InterpreterFunction.ReservedPrefix}\" are the platform's own (such as {Sessions.InterpreterFunction.Name}, behind Python interpreter sessions).");
        if (ParseLimits(request.Query, out var problem) is not { } limits)
            return Error(400, ErrorKinds.BadRequest, problem is null ? LimitsHelp : $"{problem} {LimitsHelp}");
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

        var outcome = await StoreAndDeployAsync(name, body, limits, functions.ActorRef, modules.ActorRef, templates.ActorRef, catalog, workers, validator, ct);
        return outcome.Error ?? Results.Json(new { name, version = outcome.Version, sha256 = outcome.Sha256, created = outcome.Created }, statusCode: 201);
    }

    /// <summary>A deploy's result: the version (new, or the current one when nothing changed), or the error answer.</summary>
    internal sealed record DeployOutcome(int Version, string Sha256, bool Created, IResult? Error);

    /// <summary>
    /// Checks the module, stores it and records the version; workers are told to prepare it and to forget what the
    /// replaced version alone used. The same module and limits again change nothing.
    /// </summary>
    internal static async Task<DeployOutcome> StoreAndDeployAsync(string name, byte[] body, FunctionLimits limits, IActorRef functions, IActorRef modules, IActorRef templates,
        FunctionCatalog catalog, WorkerDirectory workers, Wasmtime.Engine validator, CancellationToken ct)
    {
        static DeployOutcome Refused(IResult error) => new(0, "", false, error);
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
            return Refused(Error(422, ErrorKinds.InvalidModule, e.Message));
        }

        if (limits.Layer is { } layer && !await LayersApi.ExistsAsync(modules, layer, ct))
            return Refused(Error(422, ErrorKinds.InvalidLayer, $"No layer {layer} is stored: upload it first with PUT /v1/layers."));

        var sha = ModuleHash.Of(body).Hex;
        var before = await functions.Ask<FunctionReplies.View>(new FunctionCommands.Get(name), AskTimeout, ct);
        await modules.Ask<ModuleReplies.Stored>(new ModuleCommands.Store(sha, body), AskTimeout, ct);
        var deployed = await functions.Ask<FunctionReplies.Deployed>(new FunctionCommands.Deploy(name, sha, body.Length, limits), AskTimeout, ct);
        var view = await functions.Ask<FunctionReplies.View>(new FunctionCommands.Get(name), AskTimeout, ct);
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
            templates.Tell(new TemplateCommands.Retire(TemplateCommands.KeyOf(name, old.Version)));
            var (unusedModules, unusedLayers) = RetiredFiles.Of(RetiredFiles.Live(catalog), before.Versions);
            foreach (var w in workers.Workers)
                w.Invoker.Tell(new WorkerForget(name, deployed.Version, unusedModules, unusedLayers));
        }
        return new(deployed.Version, deployed.Sha256, deployed.Created, null);
    }

    private const string LimitsHelp = "Query parameters: memoryMb (1-4096), timeoutMs (1-900000), initTimeoutMs (1-300000), tmpMb (1-10240), concurrency (1-1024), cpuMillicores (1-64000), "
        + "network (true|false), layer (the sha256 PUT /v1/layers answered), runtime (python: the body is a script, or a tar with main.py), env.KEY=VALUE.";

    internal sealed record PreparedScript(byte[]? Module, FunctionLimits? Limits, IResult? Error);

    internal static async Task<PreparedScript> PrepareScriptAsync(FunctionLimits limits, byte[] body, NodeSettings settings, IActorRef blobs, CancellationToken ct)
    {
        static PreparedScript Refuse(int status, string kind, string message) => new(null, null, Error(status, kind, message));
        if (ScriptRuntimes.Find(limits.Runtime) is not { } runtime)
            return Refuse(422, InvalidRuntime, $"There is no runtime \"{limits.Runtime}\"; the runtimes are {string.Join(", ", ScriptRuntimes.All.Select(r => r.Name))}.");
        if (limits.Layer is not null)
            return Refuse(400, ErrorKinds.BadRequest, "A script deploy makes its own layer from the body; send the script and its modules as one tar instead of ?layer=.");
        if (runtime.ModulePath(settings) is not { } modulePath)
            return Refuse(503, ErrorKinds.Unavailable, $"The {runtime.Name} runtime is not installed on this coordinator ({Path.Combine(settings.RuntimesDirectory, runtime.ModuleFile)} is missing; "
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
                return Refuse(422, ErrorKinds.InvalidLayer, e.Message);
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
}
