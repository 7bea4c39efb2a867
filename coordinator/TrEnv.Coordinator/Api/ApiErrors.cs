using System.Text.Json;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Api;

/// <summary>
/// Error answers of the HTTP contract: RFC 9457 problem details (<c>application/problem+json</c>) with
/// <c>type</c> (<c>urn:trenv:error:KIND</c>), <c>title</c>, <c>status</c>, <c>detail</c> and <c>instance</c>, plus the
/// members clients read before problem details: <c>error</c> (the kind) and <c>message</c> (the sentence).
/// </summary>
public static class ApiErrors
{
    public const string ProblemJson = "application/problem+json";
    public const string TypePrefix = "urn:trenv:error:";

    public static IResult Error(int status, string kind, string message, int? retryAfterSeconds = null) => new Problem(status, kind, message, retryAfterSeconds);

    public static IResult FromKind(string kind, string message) => Error(ErrorKinds.HttpStatus(kind), kind, message);

    /// <summary>The problem type's title: the kind in words ("input_too_large" is "Input too large").</summary>
    public static string Title(string kind)
    {
        var words = kind.Replace('_', ' ');
        return words.Length == 0 ? "Error" : char.ToUpperInvariant(words[0]) + words[1..];
    }

    /// <summary>The kind a bare status stands for, for answers no handler wrote (an unknown route, a wrong method).</summary>
    public static string KindOf(int status) => status switch
    {
        400 => ErrorKinds.BadRequest,
        401 => ErrorKinds.Unauthorized,
        404 => ErrorKinds.NotFound,
        405 => "method_not_allowed",
        408 => ErrorKinds.RequestTimeout,
        409 => ErrorKinds.Conflict,
        413 => ErrorKinds.InputTooLarge,
        415 => "unsupported_media_type",
        503 => ErrorKinds.Unavailable,
        _ when status >= 500 => ErrorKinds.Internal,
        _ => "http_" + status.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Turns what an endpoint did not handle into a problem: a request Kestrel refused while it was read (too
    /// large, too slow) keeps its status; an entity that did not answer in time (a shard mid hand-over after a
    /// coordinator died) is 503 with Retry-After; anything else is 500 <c>internal</c>. Answers with an error
    /// status and no body (no route, wrong method) get a problem body too.
    /// </summary>
    public static void UseJsonErrors(this WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
            }
            catch (BadHttpRequestException e) when (!context.Response.HasStarted)
            {
                await Error(e.StatusCode, KindOf(e.StatusCode), $"The request could not be read: {e.Message}").ExecuteAsync(context);
            }
            catch (Akka.Actor.AskTimeoutException) when (!context.Response.HasStarted)
            {
                await Error(503, ErrorKinds.Unavailable, "The registry did not answer in time (a coordinator may have just failed and its entities are moving); retry shortly.", 2)
                    .ExecuteAsync(context);
            }
            catch (Exception e) when (!context.Response.HasStarted && e is not OperationCanceledException)
            {
                await Error(500, ErrorKinds.Internal, $"The coordinator failed to handle this request: {e.GetBaseException().Message}")
                    .ExecuteAsync(context);
            }
        });
        app.UseStatusCodePages(context =>
        {
            var status = context.HttpContext.Response.StatusCode;
            var message = status switch
            {
                404 => $"There is nothing at {context.HttpContext.Request.Path}; /openapi lists the API.",
                405 => $"{context.HttpContext.Request.Method} is not allowed on {context.HttpContext.Request.Path}; /openapi lists the API.",
                _ => $"The request was answered with status {status}.",
            };
            return Error(status, KindOf(status), message).ExecuteAsync(context.HttpContext);
        });
    }

    private sealed class Problem(int status, string kind, string message, int? retryAfterSeconds) : IResult
    {
        public async Task ExecuteAsync(HttpContext httpContext)
        {
            var response = httpContext.Response;
            if (retryAfterSeconds is { } s)
                response.Headers.RetryAfter = s.ToString(System.Globalization.CultureInfo.InvariantCulture);
            response.StatusCode = status;
            response.ContentType = ProblemJson;
            await using var json = new Utf8JsonWriter(response.Body);
            json.WriteStartObject();
            json.WriteString("type", TypePrefix + kind);
            json.WriteString("title", Title(kind));
            json.WriteNumber("status", status);
            json.WriteString("detail", message);
            json.WriteString("instance", httpContext.Request.Path.Value);
            json.WriteString("error", kind);
            json.WriteString("message", message);
            json.WriteEndObject();
        }
    }
}
