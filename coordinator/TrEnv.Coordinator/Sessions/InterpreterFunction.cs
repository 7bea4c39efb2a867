using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Api;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Sessions;

/// <summary>
/// The platform function behind Python interpreter sessions (<c>POST /v1/sessions {"runtime": "python"}</c>): the
/// embedded <c>interpreter.py</c> deployed as <see cref="Name"/> on the Python runtime, once per cluster (the same
/// script and limits again change nothing), so its template, with the common stdlib imported, is shared by
/// every interpreter session. Names under <c>trenv.</c> are the platform's: users cannot deploy them.
/// </summary>
public sealed class InterpreterFunction(NodeSettings settings, IRequiredActor<FunctionRegion> functions, IRequiredActor<ModuleRegion> modules,
    IRequiredActor<TemplateRegion> templates, FunctionCatalog catalog, WorkerDirectory workers, Wasmtime.Engine validator)
{
    public const string Name = "trenv.python";
    public const string ReservedPrefix = "trenv.";
    private static readonly Lazy<byte[]> Script = new(() =>
    {
        using var stream = typeof(InterpreterFunction).Assembly.GetManifestResourceStream("TrEnv.Coordinator.Sessions.interpreter.py")
            ?? throw new InvalidOperationException("the interpreter script is not embedded in the coordinator");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    private readonly SemaphoreSlim _deploying = new(1, 1);
    private string? _deployedLayer;

    /// <summary>The limits interpreter sessions run with (runtime python; cell timeout and memory from the settings).</summary>
    public FunctionLimits Limits => FunctionLimits.Default with
    {
        Runtime = "python", TimeoutMs = settings.InterpreterTimeoutMs, MemoryMb = settings.InterpreterMemoryMb,
    };

    private bool Deployed() => _deployedLayer is not null && catalog.TryGet(Name, out var known) && known.Limits.Layer == _deployedLayer;

    /// <summary>Deploys the interpreter unless this coordinator already did; answers null, or the error to return.</summary>
    public async Task<IResult?> EnsureAsync(CancellationToken ct)
    {
        if (Deployed())
            return null;
        await _deploying.WaitAsync(ct);
        try
        {
            // Concurrent first sessions: one prepares and deploys, the others find it done.
            if (Deployed())
                return null;
            var prepared = await FunctionsApi.PrepareScriptAsync(Limits, Script.Value, settings, modules.ActorRef, ct);
            if (prepared.Error is { } refused)
                return refused;
            var outcome = await FunctionsApi.StoreAndDeployAsync(Name, prepared.Module!, prepared.Limits!, functions.ActorRef, modules.ActorRef, templates.ActorRef,
                catalog, workers, validator, ct);
            if (outcome.Error is not null)
                return outcome.Error;
            _deployedLayer = prepared.Limits!.Layer;
            return null;
        }
        finally
        {
            _deploying.Release();
        }
    }
}
