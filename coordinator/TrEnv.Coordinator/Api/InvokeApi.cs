using System.Globalization;
using Akka.Actor;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Cluster.Invoke;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Observability;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

/// <summary>
/// POST /v1/functions/{name}/invoke: the hot path. Function and template come from the local catalogs,
/// the worker from the local directory; the one network hop is coordinator to worker.
/// </summary>
public static partial class InvokeApi
{
    /// <summary>
    /// How long the coordinator waits for a worker's answer: the call's own deadline, instantiation and init
    /// (each bounded by initTimeoutMs in the sandbox), and a minute for fetching and compiling the module and
    /// capturing its template. The sandbox's deadlines fire well before this one.
    /// </summary>
    public static TimeSpan AnswerDeadline(FunctionLimits limits)
        => TimeSpan.FromMilliseconds(limits.TimeoutMs + 2L * limits.InitTimeoutMs) + TimeSpan.FromSeconds(60);

    public static void MapInvokeApi(this WebApplication app)
        => app.MapPost("/v1/functions/{name}/invoke", Invoke).WithTags("invoke")
            .WithSummary("Invoke a function: the body is the input, the answer the output; headers X-TrEnv-Start, -Sandbox, -Node, -Startup-Us, -Exec-Us");

    private static async Task<IResult> Invoke(string name, HttpRequest request, HttpResponse response, NodeSettings settings,
        FunctionCatalog functions, TemplateCatalog templates, WorkerDirectory workers, IRequiredActor<FunctionRegion> registry,
        CoordinatorMetrics metrics, InvokeLog log, CancellationToken ct)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var invocationId = InvocationIdOf(request, response);
        if (!BearerToken.Matches(request, settings.InvokeToken))
        {
            metrics.RecordRefused(null, ErrorKinds.Unauthorized);
            return NeedsInvokeToken();
        }
        if (!functions.TryGet(name, out var version))
        {
            // Slow path: a deploy through another coordinator that the journal poll has not shown us yet.
            if (FunctionsApi.CheckName(name) is { } bad)
                return bad;
            try
            {
                var view = await registry.ActorRef.Ask<FunctionReplies.View>(new FunctionCommands.Get(name), TimeSpan.FromSeconds(5), ct);
                functions.Set(view);
                if (view.Current is null)
                {
                    metrics.RecordRefused(null, ErrorKinds.NotFound);
                    return Error(404, ErrorKinds.NotFound, $"There is no function named \"{name}\".");
                }
                version = view.Current;
            }
            catch (AskTimeoutException) when (functions.TryGet(name, out var caughtUp))
            {
                // Its entity is moving (a coordinator died), but the journal poll has shown us the deploy meanwhile.
                version = caughtUp;
            }
            catch (AskTimeoutException)
            {
                metrics.RecordRefused(name, ErrorKinds.Unavailable);
                return Error(503, ErrorKinds.Unavailable, $"The registry did not answer for \"{name}\" in time (a coordinator may have just failed); if it was just deployed, retry shortly.", 2);
            }
        }
        var input = await BodyReader.ReadAsync(request, settings.MaxInputMb * 1024L * 1024L, ct);
        if (input is null)
        {
            metrics.RecordRefused(name, ErrorKinds.InputTooLarge);
            return Error(413, ErrorKinds.InputTooLarge, $"The input is larger than the limit of {settings.MaxInputMb} MiB (TRENV_MAX_INPUT_MB).");
        }

        // The function's concurrency limit, counted per coordinator: over it the caller is told to retry.
        var running = InFlightByFunction.AddOrUpdate(name, 1, (_, n) => n + 1);
        try
        {
            if (running > version.Limits.Concurrency)
            {
                metrics.RecordRefused(name, ErrorKinds.Unavailable);
                return Error(503, ErrorKinds.Unavailable, $"{name} is already running {version.Limits.Concurrency} invocations, its concurrency limit.", 1);
            }
            return await DispatchAsync(invocationId, name, version, input, response, templates, workers, metrics, log.Logger, started, ct);
        }
        finally
        {
            InFlightByFunction.AddOrUpdate(name, 0, (_, n) => n - 1);
        }
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> InFlightByFunction = new(StringComparer.Ordinal);

    /// <summary>
    /// Invocations this coordinator is running, per function invoked since it started (the /metrics gauge): zeros
    /// too, so a series falls back to 0 instead of keeping its last value.
    /// </summary>
    public static IEnumerable<(string Function, int Count)> InFlight => InFlightByFunction.Select(kv => (kv.Key, kv.Value));

    /// <summary>The id that labels an invocation's log lines on every node: the caller's own (to correlate) when valid, else a new one; echoed in the answer.</summary>
    public static string InvocationIdOf(HttpRequest request, HttpResponse response)
    {
        var given = request.Headers["X-TrEnv-Invocation-Id"].ToString();
        var id = given.Length is > 0 and <= 64 && given.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') ? given : Guid.NewGuid().ToString("N");
        response.Headers["X-TrEnv-Invocation-Id"] = id;
        return id;
    }

    public static IResult NeedsInvokeToken()
        => Error(401, ErrorKinds.Unauthorized, "This call needs the invoke token: send \"Authorization: Bearer <TRENV_INVOKE_TOKEN>\".");

    /// <summary>A worker's result as the HTTP answer of an invocation: the X-TrEnv-* headers, then the output or the error by kind.</summary>
    public static IResult Answer(HttpResponse response, WorkerInvokeResult result, string start, int version, string? failureSuffix = null)
    {
        var headers = response.Headers;
        headers["X-TrEnv-Node"] = result.Node;
        headers["X-TrEnv-Start"] = start;
        headers["X-TrEnv-Sandbox"] = result.Sandbox.ToHeader();
        headers["X-TrEnv-Startup-Us"] = result.StartupMicros.ToString(CultureInfo.InvariantCulture);
        headers["X-TrEnv-Exec-Us"] = result.ExecMicros.ToString(CultureInfo.InvariantCulture);
        headers["X-TrEnv-Version"] = version.ToString(CultureInfo.InvariantCulture);
        if (result.Ok)
            return Results.Bytes(result.Output, "application/octet-stream");
        var kind = result.ErrorKind ?? ErrorKinds.Internal;
        var message = (result.ErrorMessage ?? (kind is ErrorKinds.SandboxCrashed or ErrorKinds.NoCapacity ? "The sandbox crashed." : kind)) + failureSuffix;
        return kind is ErrorKinds.SandboxCrashed or ErrorKinds.NoCapacity ? Error(503, kind, message, 1) : FromKind(kind, message);
    }

    private static async Task<IResult> DispatchAsync(string invocationId, string name, FunctionVersion version, byte[] input, HttpResponse response,
        TemplateCatalog templates, WorkerDirectory workers, CoordinatorMetrics metrics, ILogger log, long started, CancellationToken ct)
    {
        var key = TemplateCommands.KeyOf(name, version.Version);
        WorkerEntry? worker;
        using (var place = NodeTelemetry.Coordinator.StartActivity("trenv.place"))
        {
            worker = workers.Choose(key);
            place?.SetTag("trenv.node", worker?.Status.Node);
        }
        if (worker is null)
        {
            metrics.RecordRefused(name, ErrorKinds.Unavailable);
            LogRefused(log, invocationId, name, "no worker has room");
            return Error(503, ErrorKinds.Unavailable, "No worker has room for this invocation right now.", 1);
        }

        // The hop to the worker: a client span whose context the worker continues.
        using var hop = NodeTelemetry.Coordinator.StartActivity("trenv.worker.call", System.Diagnostics.ActivityKind.Client);
        hop?.SetTag("faas.invoked_name", name);
        hop?.SetTag("faas.invocation_id", invocationId);
        hop?.SetTag("trenv.node", worker.Status.Node);
        var message = new WorkerInvoke(invocationId, name, version, templates.Find(key), input, NodeTelemetry.TraceParent(hop));
        WorkerInvokeResult? result = null;
        string? failure = null;
        Interlocked.Increment(ref worker.InFlight);
        try
        {
            // The invoke channel when the worker has one; remoting when it has none or the channel cannot open.
            if (worker.Channel is { } channel)
            {
                try
                {
                    result = await channel.InvokeAsync(message, AnswerDeadline(version.Limits));
                }
                catch (InvokeChannelException e) when (!e.Sent)
                {
                }
            }
            if (result is null)
            {
                using var gone = CancellationTokenSource.CreateLinkedTokenSource(ct, worker.Gone.Token);
                result = await worker.Invoker.Ask<WorkerInvokeResult>(message, AnswerDeadline(version.Limits), gone.Token);
            }
        }
        // A failure names its worker too, so a client can tell which node an error came from.
        catch (Exception e) when (e is AskTimeoutException or InvokeChannelException { TimedOut: true })
        {
            failure = $"Worker {worker.Status.Node} did not answer in time; the invocation may not have run.";
        }
        catch (Exception e) when (worker.Gone.IsCancellationRequested && !ct.IsCancellationRequested && e is OperationCanceledException or InvokeChannelException)
        {
            failure = $"Worker {worker.Status.Node} left the cluster while running this invocation; it may not have completed.";
        }
        catch (InvokeChannelException e)
        {
            failure = e.Message;
        }
        finally
        {
            Interlocked.Decrement(ref worker.InFlight);
        }
        hop?.SetTag("trenv.start", result?.Start.ToHeader());
        if (result is null || !result.Ok)
            hop?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, result?.ErrorKind ?? failure);
        if (result is null)
        {
            response.Headers["X-TrEnv-Node"] = worker.Status.Node;
            metrics.RecordRefused(name, ErrorKinds.Unavailable);
            LogRefused(log, invocationId, name, failure!);
            return Error(503, ErrorKinds.Unavailable, failure!, 1);
        }

        // The worker's last broadcast may still count this invocation as busy: correct it now, not in 500 ms.
        if (result.BusyAfter >= 0)
            worker.ApplyBusy(result.BusyAfter, result.Sequence);
        if (result.CapturedTemplate is { } captured)
            templates.Add(captured);
        var outcome = result.Ok ? "ok" : result.ErrorKind ?? ErrorKinds.Internal;
        var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(started);
        metrics.RecordInvocation(invocationId, name, version.Version, result.Start.ToHeader(), outcome, result.Node, result.Sandbox.ToHeader(), result.StartupMicros, result.ExecMicros, elapsed.TotalSeconds,
            result.CapturedTemplate is not null);
        // A warm success is the common case and costs a line per call: debug. Starts and failures stay visible.
        LogDone(log, result.Ok && result.Start == StartKind.Warm ? LogLevel.Debug : LogLevel.Information,
            invocationId, name, version.Version, outcome, result.Start.ToHeader(), result.Node, result.StartupMicros, result.ExecMicros, elapsed.TotalMilliseconds);
        return Answer(response, result, result.Start.ToHeader(), version.Version);
    }

    [LoggerMessage(EventId = 1,
        Message = "Invocation {InvocationId} of {Function} v{Version}: {Outcome}, {Start} start on {Worker}, startup {StartupUs} µs, exec {ExecUs} µs, {DurationMs:F2} ms in all")]
    private static partial void LogDone(ILogger log, LogLevel level, string invocationId, string function, int version, string outcome, string start, string worker,
        long startupUs, long execUs, double durationMs);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "Invocation {InvocationId} of {Function} not run: {Reason}")]
    private static partial void LogRefused(ILogger log, string invocationId, string function, string reason);
}

/// <summary>The invoke path's logger, created once: LoggerFactory.CreateLogger takes a lock on every call.</summary>
public sealed class InvokeLog(ILoggerFactory factory)
{
    public ILogger Logger { get; } = factory.CreateLogger("TrEnv.Coordinator.Invoke");
}
