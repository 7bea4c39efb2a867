using System.Text.Json;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Sessions;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

// POST /v1/sessions/{id}/fork: N new sessions from the parent's state now (SessionForking does the work).
public static partial class SessionsApi
{
    private sealed record ForkBody(int? Count, int? IdleTimeoutS, int? CheckpointEveryS);

    private static async Task<IResult> Fork(string id, HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions,
        SessionForking forking, CancellationToken ct)
    {
        if (!BearerToken.Matches(request, settings.InvokeToken))
            return InvokeApi.NeedsInvokeToken();
        if (!ValidId(id))
            return Error(404, ErrorKinds.NotFound, $"There is no session {id}.");
        ForkBody? body = null;
        try
        {
            var bytes = await BodyReader.ReadAsync(request, 64 << 10, ct);
            if (bytes is null)
                return Error(413, ErrorKinds.InputTooLarge, "A fork request body is at most 64 KiB.");
            if (bytes.Length > 0)
                body = JsonSerializer.Deserialize<ForkBody>(bytes, new JsonSerializerOptions(JsonSerializerDefaults.Web));
        }
        catch (JsonException e)
        {
            return Error(400, ErrorKinds.BadRequest, $"The body must be JSON like {{\"count\": 4}}: {e.Message}");
        }
        var count = body?.Count ?? 1;
        if (count is < 1 or > SessionForking.MaxChildren)
            return Error(400, ErrorKinds.BadRequest, $"count must be between 1 and {SessionForking.MaxChildren}.");
        if (body?.IdleTimeoutS is < 0 or > 7 * 24 * 3600)
            return Error(400, ErrorKinds.BadRequest, "idleTimeoutS must be between 0 (never pause by itself) and 604800 (a week).");
        if (body?.CheckpointEveryS is < 0 or > SessionCheckpoints.MaxEverySeconds)
            return Error(400, ErrorKinds.BadRequest, $"checkpointEveryS must be between 0 (no periodic checkpoints) and {SessionCheckpoints.MaxEverySeconds}.");
        if (await ReachAsync(sessions, id, ct) is { } refused)
            return Answer(refused, response);
        var (forked, notForked) = await forking.ForkAsync(id, count, body?.IdleTimeoutS, body?.CheckpointEveryS, ct);
        if (forked is null)
            return Answer(notForked!, response);
        return Results.Json(new { parent = forked.Parent, sessions = forked.Sessions, parentBlockedMs = forked.ParentBlockedMs, forkMs = forked.ForkMs }, statusCode: 201);
    }
}
