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
        var (body, unreadable) = await ReadBodyAsync<ForkBody>(request, "{\"count\": 4}", ct);
        if (unreadable is not null)
            return unreadable;
        var count = body?.Count ?? 1;
        if (count is < 1 or > SessionForking.MaxChildren)
            return Error(400, ErrorKinds.BadRequest, $"count must be between 1 and {SessionForking.MaxChildren}.");
        if (CheckIntervals(body?.IdleTimeoutS, body?.CheckpointEveryS) is { } badInterval)
            return badInterval;
        if (await ReachAsync(sessions, id, ct) is { } refused)
            return Answer(refused, response);
        var (forked, notForked) = await forking.ForkAsync(id, count, body?.IdleTimeoutS, body?.CheckpointEveryS, ct);
        if (forked is null)
            return Answer(notForked!, response);
        return Results.Json(new { parent = forked.Parent, sessions = forked.Sessions, parentBlockedMs = forked.ParentBlockedMs, forkMs = forked.ForkMs }, statusCode: 201);
    }
}
