using TrEnv.Contracts;

namespace TrEnv.Coordinator.Api;

/// <summary>Error answers of the HTTP contract: JSON {"error": kind, "message": sentence}.</summary>
public static class ApiErrors
{

    public static IResult Error(int status, string kind, string message, int? retryAfterSeconds = null)
    {
        var result = Results.Json(new ErrorBody(kind, message), statusCode: status);
        return retryAfterSeconds is { } s ? new WithRetryAfter(result, s) : result;
    }

    public static IResult FromKind(string kind, string message) => Error(ErrorKinds.HttpStatus(kind), kind, message);

    public sealed record ErrorBody(string Error, string Message);

    /// <summary>
    /// Turns what an endpoint did not handle into a JSON error: an entity that did not answer in time (a shard
    /// mid hand-over after a coordinator died) is 503 with Retry-After, anything else 500 `internal`.
    /// </summary>
    public static void UseJsonErrors(this WebApplication app)
        => app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
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

    private sealed class WithRetryAfter(IResult inner, int seconds) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return inner.ExecuteAsync(httpContext);
        }
    }
}
