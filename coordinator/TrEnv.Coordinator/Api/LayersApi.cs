using Akka.Actor;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Cluster.Layers;
using TrEnv.Contracts;
using TrEnv.Coordinator.Registry;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

/// <summary>
/// File layers: <c>PUT /v1/layers</c> stores a tar (or tar.gz) of files under its SHA-256; a deploy names it
/// with <c>?layer=SHA</c> and the function's guest then reads those files under /tmp.
/// </summary>
public static class LayersApi
{

    public static void MapLayersApi(this WebApplication app)
    {
        app.MapGroup("/v1/layers").AddEndpointFilter<AdminTokenFilter>().MapPut("", Upload);
    }

    private static async Task<IResult> Upload(HttpRequest request, NodeSettings settings, IRequiredActor<ModuleRegion> blobs, UploadGate gate, CancellationToken ct)
    {
        var limit = settings.MaxLayerMb * 1024L * 1024L;
        using var turn = await gate.EnterAsync(ct);
        if (turn is null)
            return gate.Busy();
        var (body, refused) = await UploadGate.ReadAsync(request, limit,
            () => Error(413, ErrorKinds.InputTooLarge, $"The layer is larger than the limit of {settings.MaxLayerMb} MiB (TRENV_MAX_LAYER_MB)."), ct);
        if (body is null)
            return refused!;
        LayerArchive.Summary layer;
        try
        {
            layer = LayerArchive.Check(body, limit);
        }
        catch (InvalidDataException e)
        {
            return Error(422, ErrorKinds.InvalidLayer, e.Message);
        }
        var sha = ModuleHash.Of(layer.Tar).Hex;
        await blobs.ActorRef.Ask<ModuleReplies.Stored>(new ModuleCommands.Store(sha, layer.Tar), TimeSpan.FromSeconds(30), ct);
        return Results.Json(new { sha256 = sha, files = layer.Files, directories = layer.Directories, unpackedBytes = layer.UnpackedBytes }, statusCode: 201);
    }

    /// <summary>Whether a layer with this hash is stored (a deploy may only name a stored layer).</summary>
    public static async Task<bool> ExistsAsync(IActorRef blobs, string sha, CancellationToken ct)
        => (await blobs.Ask<ModuleReplies.Holds>(new ModuleCommands.Has(sha), TimeSpan.FromSeconds(30), ct)).Stored;
}
