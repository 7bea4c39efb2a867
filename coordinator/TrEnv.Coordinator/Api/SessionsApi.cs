using System.Security.Cryptography;
using System.Text.Json;
using Akka.Actor;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Observability;
using TrEnv.Coordinator.Sessions;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

/// <summary>
/// /v1/sessions: agent sessions, each an instance whose memory persists across its calls, paused as a delta
/// over its function's template and resumed on any worker. Every call goes through the session's entity.
/// </summary>
public static partial class SessionsApi
{
    // A call waits behind the session's earlier calls (they run one at a time), so allow for a queue.
    private static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(16);
    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(3);
    private static readonly TimeSpan QuickTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);

    public static void MapSessionsApi(this WebApplication app)
    {
        app.MapPost("/v1/sessions", Create).WithTags("sessions")
            .WithSummary("Start a session of a function (body: {\"function\": NAME, \"idleTimeoutS\": N, \"checkpointEveryS\": N}) or a Python code interpreter ({\"runtime\": \"python\"}: each invoke's body is a cell, answered as JSON): 201 with its id; its instance keeps memory across calls");
        app.MapGet("/v1/sessions", List).WithTags("sessions")
            .WithSummary("Sessions as the registry last recorded them (query function=NAME, state=active|paused|lost); lags by about a second");
        app.MapGet("/v1/sessions/{id}", Get).WithTags("sessions").WithSummary("A session's state, node, sizes and times");
        app.MapPost("/v1/sessions/{id}/invoke", Invoke).WithTags("sessions")
            .WithSummary("Invoke the session (resumes it first when paused); answers and headers as a function invoke, plus X-TrEnv-Session");
        app.MapPost("/v1/sessions/{id}/pause", Pause).WithTags("sessions")
            .WithSummary("Capture the session as a delta over its template into the pool, durably, and free its sandbox");
        app.MapPost("/v1/sessions/{id}/fork", Fork).WithTags("sessions")
            .WithSummary("Fork the session (body: {\"count\": N, \"idleTimeoutS\": M, \"checkpointEveryS\": K}): 201 with N new paused sessions at its state now, memory and files; the parent runs on");
        app.MapPost("/v1/sessions/{id}/checkpoint", Checkpoint).WithTags("sessions")
            .WithSummary("Store the active session's state durably without pausing it; if its worker dies, its next call resumes from there on another worker");
        app.MapPost("/v1/sessions/{id}/resume", Resume).WithTags("sessions")
            .WithSummary("Restore a paused session on a worker (query node=NAME to choose it): the template mapped, the delta overlaid; fromLastPause=true brings a lost session back to its last pause");
        app.MapDelete("/v1/sessions/{id}", Delete).WithTags("sessions").WithSummary("End a session and free its sandbox and stored delta");
    }

    public static string NewId() => "s-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(10));

    private static bool ValidId(string id) => id.Length == 22 && id.StartsWith("s-", StringComparison.Ordinal) && id[2..].All(char.IsAsciiHexDigitLower);

    private sealed record CreateBody(string? Function, int? IdleTimeoutS, int? CheckpointEveryS, string? Runtime);

    // A session about to take a sandbox (created, or resumed from paused or lost) must fit the sessions' share of the
    // cluster; answers the 429 refusal, or null when admitted.
    private static IResult? Admit(string id, string? function, SessionAdmission admission, Catalog.SessionCatalog catalog, Placement.WorkerDirectory workers)
    {
        if (function is null)
        {
            if (catalog.Find(id) is not { } known || known.State == SessionStates.Active)
                return null;
            function = known.Function;
        }
        var sandboxes = workers.Workers.Where(w => !w.Leaving).Sum(w => w.Status.MaxSandboxes);
        return admission.TryAdmit(id, function, sandboxes, catalog.Active(), s => catalog.Find(s) is not null) is { } why
            ? Error(429, ErrorKinds.TooManySessions, why, SessionAdmission.RetryAfterSeconds)
            : null;
    }

    private static async Task<IResult> Create(HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions,
        SessionAdmission admission, Catalog.SessionCatalog catalog, Placement.WorkerDirectory workers, InterpreterFunction interpreter, CancellationToken ct)
    {
        if (!BearerToken.Matches(request, settings.InvokeToken))
            return InvokeApi.NeedsInvokeToken();
        var (body, unreadable) = await ReadBodyAsync<CreateBody>(request, "{\"function\": \"NAME\"}", ct);
        if (unreadable is not null)
            return unreadable;
        string function;
        if (body?.Runtime is { } runtime)
        {
            // A code interpreter: no function of the user's, the platform's interpreter of that runtime.
            if (body.Function is not null)
                return Error(400, ErrorKinds.BadRequest, "Give either \"function\" (a session of a deployed function) or \"runtime\" (a code interpreter), not both.");
            if (runtime != "python")
                return Error(422, FunctionsApi.InvalidRuntime, $"There is no interpreter for \"{runtime}\"; interpreter sessions run \"python\".");
            if (await interpreter.EnsureAsync(ct) is { } notReady)
                return notReady;
            function = InterpreterFunction.Name;
        }
        else if (body?.Function is { Length: > 0 } named)
        {
            if (FunctionsApi.CheckName(named) is { } bad)
                return bad;
            function = named;
        }
        else
        {
            return Error(400, ErrorKinds.BadRequest, "The body must name the function, {\"function\": \"NAME\"}, or ask for a code interpreter, {\"runtime\": \"python\"}.");
        }
        if (CheckIntervals(body.IdleTimeoutS, body.CheckpointEveryS) is { } badInterval)
            return badInterval;
        var idle = body.IdleTimeoutS ?? settings.SessionIdleSeconds;
        var every = body.CheckpointEveryS ?? 0;
        var id = NewId();
        if (Admit(id, function, admission, catalog, workers) is { } full)
            return full;
        var reply = await AdmittedAsync(admission, id, sessions.ActorRef.Ask<IProtocolMessage>(
            new SessionCommands.Create(id, function, idle, InvokeApi.InvocationIdOf(request, response), every) { TraceParent = NodeTelemetry.CurrentTraceParent() }, StartTimeout, ct));
        if (reply is SessionReplies.View view)
        {
            response.Headers.Location = $"/v1/sessions/{id}";
            return Results.Json(view.Session, statusCode: 201);
        }
        return Answer(reply, response);
    }

    private static IResult List(string? function, string? state, HttpRequest request, NodeSettings settings, TrEnv.Coordinator.Catalog.SessionCatalog catalog)
    {
        if (!BearerToken.Matches(request, settings.InvokeToken))
            return InvokeApi.NeedsInvokeToken();
        if (state is not (null or SessionStates.Active or SessionStates.Paused or SessionStates.Lost))
            return Error(400, ErrorKinds.BadRequest, "state must be active, paused or lost.");
        return Results.Json(catalog.List(string.IsNullOrEmpty(function) ? null : function, state));
    }

    private static Task<IResult> Get(string id, HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions, CancellationToken ct)
        => Simple(id, request, response, settings, sessions, new SessionCommands.Get(id), QuickTimeout, ct);

    private static async Task<IResult> Pause(string id, HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions,
        SessionAdmission admission, CancellationToken ct)
    {
        var answer = await Simple(id, request, response, settings, sessions, new SessionCommands.Pause(id, "api") { TraceParent = NodeTelemetry.CurrentTraceParent() }, StartTimeout, ct);
        // Paused, it holds no sandbox: its admission stops counting now, not when the catalog catches up.
        if (response.Headers["X-TrEnv-Session-State"] == SessionStates.Paused)
            admission.Forget(id);
        return answer;
    }

    // A session request's small JSON body (an empty one is no body); the error answer when it is too large or not JSON.
    private static async Task<(T? Body, IResult? Error)> ReadBodyAsync<T>(HttpRequest request, string example, CancellationToken ct) where T : class
    {
        var bytes = await BodyReader.ReadAsync(request, 64 << 10, ct);
        if (bytes is null)
            return (null, Error(413, ErrorKinds.InputTooLarge, "A session request body is at most 64 KiB."));
        try
        {
            return (bytes.Length == 0 ? null : JsonSerializer.Deserialize<T>(bytes, new JsonSerializerOptions(JsonSerializerDefaults.Web)), null);
        }
        catch (JsonException e)
        {
            return (null, Error(400, ErrorKinds.BadRequest, $"The body must be JSON like {example}: {e.Message}"));
        }
    }

    // The idle timeout and checkpoint interval a create or a fork may give, each optional.
    private static IResult? CheckIntervals(int? idleTimeoutS, int? checkpointEveryS)
    {
        if (idleTimeoutS is < 0 or > 7 * 24 * 3600)
            return Error(400, ErrorKinds.BadRequest, "idleTimeoutS must be between 0 (never pause by itself) and 604800 (a week).");
        if (checkpointEveryS is < 0 or > SessionCheckpoints.MaxEverySeconds)
            return Error(400, ErrorKinds.BadRequest, $"checkpointEveryS must be between 0 (no periodic checkpoints) and {SessionCheckpoints.MaxEverySeconds}.");
        return null;
    }

    private static Task<IResult> Checkpoint(string id, HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions, CancellationToken ct)
        => Simple(id, request, response, settings, sessions, new SessionCommands.Checkpoint(id, "api") { TraceParent = NodeTelemetry.CurrentTraceParent() }, StartTimeout, ct);

    private static async Task<IResult> Resume(string id, string? node, bool? fromLastPause, HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions,
        SessionAdmission admission, Catalog.SessionCatalog catalog, Placement.WorkerDirectory workers, CancellationToken ct)
    {
        if (BearerToken.Matches(request, settings.InvokeToken) && ValidId(id) && Admit(id, null, admission, catalog, workers) is { } full)
            return full;
        return await Simple(id, request, response, settings, sessions,
            new SessionCommands.Resume(id, InvokeApi.InvocationIdOf(request, response), string.IsNullOrEmpty(node) ? null : node, fromLastPause ?? false) { TraceParent = NodeTelemetry.CurrentTraceParent() }, StartTimeout, ct);
    }

    // An admission whose create or resume did not leave the session active is taken back at once.
    private static async Task<IProtocolMessage> AdmittedAsync(SessionAdmission admission, string id, Task<IProtocolMessage> call)
    {
        try
        {
            var reply = await call;
            if (reply is not SessionReplies.View { Session.State: SessionStates.Active })
                admission.Forget(id);
            return reply;
        }
        catch
        {
            admission.Forget(id);
            throw;
        }
    }

    private static async Task<IResult> Delete(string id, HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions,
        SessionAdmission admission, CancellationToken ct)
    {
        if (!BearerToken.Matches(request, settings.InvokeToken))
            return InvokeApi.NeedsInvokeToken();
        if (!ValidId(id))
            return Error(404, ErrorKinds.NotFound, $"There is no session {id}.");
        if (await ReachAsync(sessions, id, ct) is { } refused)
            return Answer(refused, response);
        var reply = await sessions.ActorRef.Ask<IProtocolMessage>(new SessionCommands.Delete(id), StartTimeout, ct);
        if (reply is SessionReplies.View)
            admission.Forget(id);
        return reply is SessionReplies.View ? Results.NoContent() : Answer(reply, response);
    }

    private static async Task<IResult> Simple(string id, HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions,
        SessionCommands.ISessionCommand command, TimeSpan timeout, CancellationToken ct)
    {
        if (!BearerToken.Matches(request, settings.InvokeToken))
            return InvokeApi.NeedsInvokeToken();
        if (!ValidId(id))
            return Error(404, ErrorKinds.NotFound, $"There is no session {id}.");
        if (command is not SessionCommands.Get && await ReachAsync(sessions, id, ct) is { } refused)
            return Answer(refused, response);
        return Answer(await sessions.ActorRef.Ask<IProtocolMessage>(command, timeout, ct), response);
    }

    // A message sent to a shard whose coordinator just died is lost, and the long waits of session calls (a call
    // queues behind the session's earlier ones) would then hang for minutes: first reach the entity quickly (an
    // unanswered probe is a 503 to retry), then send the call. Answers a refusal, or null when the entity is there.
    private static async Task<IProtocolMessage?> ReachAsync(IRequiredActor<SessionRegion> sessions, string id, CancellationToken ct)
    {
        var probe = await sessions.ActorRef.Ask<IProtocolMessage>(new SessionCommands.Get(id), ProbeTimeout, ct);
        return probe is SessionReplies.Refused ? probe : null;
    }

    private static async Task<IResult> Invoke(string id, HttpRequest request, HttpResponse response, NodeSettings settings, IRequiredActor<SessionRegion> sessions,
        CoordinatorMetrics metrics, SessionAdmission admission, Catalog.SessionCatalog catalog, Placement.WorkerDirectory workers, CancellationToken ct)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var invocationId = InvokeApi.InvocationIdOf(request, response);
        response.Headers["X-TrEnv-Session"] = id;
        if (!BearerToken.Matches(request, settings.InvokeToken))
            return InvokeApi.NeedsInvokeToken();
        if (!ValidId(id))
            return Error(404, ErrorKinds.NotFound, $"There is no session {id}.");
        var input = await BodyReader.ReadAsync(request, settings.MaxInputMb * 1024L * 1024L, ct);
        if (input is null)
            return Error(413, ErrorKinds.InputTooLarge, $"The input is larger than the limit of {settings.MaxInputMb} MiB (TRENV_MAX_INPUT_MB).");
        if (await ReachAsync(sessions, id, ct) is { } refused)
            return Answer(refused, response);
        // A paused session resumes on its first call, which takes a sandbox like a resume.
        if (Admit(id, null, admission, catalog, workers) is { } full)
            return full;
        var reply = await sessions.ActorRef.Ask<IProtocolMessage>(new SessionCommands.Invoke(id, invocationId, input) { TraceParent = NodeTelemetry.CurrentTraceParent() }, CallTimeout, ct);
        if (reply is not SessionReplies.Invoked invoked)
            return Answer(reply, response);
        var result = invoked.Result;
        var session = invoked.Session;
        var start = invoked.Resumed ? "resume" : "warm";
        metrics.RecordInvocation(invocationId, session.Function, session.Version, start, result.Ok ? "ok" : result.ErrorKind ?? ErrorKinds.Internal, result.Node, "session",
            result.StartupMicros, result.ExecMicros, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, false);
        response.Headers["X-TrEnv-Session-State"] = session.State;
        if (invoked.Recovered is { } recovered)
        {
            response.Headers["X-TrEnv-Session-Recovered"] = "true";
            response.Headers["X-TrEnv-Session-Checkpoint-At"] = recovered.CheckpointAt.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        }
        return InvokeApi.Answer(response, result, start, session.Version,
            session.State == SessionStates.Lost ? " The session's instance is gone with it: the session is lost." : null);
    }

    private static IResult Answer(IProtocolMessage reply, HttpResponse response)
    {
        switch (reply)
        {
            case SessionReplies.View view:
                response.Headers["X-TrEnv-Session-State"] = view.Session.State;
                return Results.Json(view.Session);
            case SessionReplies.Refused refused:
                if (refused.Session is { } s)
                    response.Headers["X-TrEnv-Session-State"] = s.State;
                return refused.Kind switch
                {
                    ErrorKinds.NotFound => Error(404, ErrorKinds.NotFound, refused.Message),
                    ErrorKinds.Conflict => Error(409, ErrorKinds.Conflict, refused.Message),
                    ErrorKinds.SessionLost => Error(410, ErrorKinds.SessionLost, refused.Message),
                    ErrorKinds.Unavailable or ErrorKinds.NoCapacity => Error(503, refused.Kind, refused.Message, 1),
                    _ => FromKind(refused.Kind, refused.Message),
                };
            default:
                return Error(500, ErrorKinds.Internal, $"Unexpected answer {reply.GetType().Name} from the session registry.");
        }
    }

}
