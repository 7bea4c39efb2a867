using TrEnv.Contracts;

namespace TrEnv.Coordinator.Api;

/// <summary>Error answers of the HTTP contract: JSON {"error": kind, "message": sentence}.</summary>
public static class ApiErrors
{
    public const string NotFound = "not_found";
    public const string BadRequest = "bad_request";
    public const string Unauthorized = "unauthorized";
    public const string Unavailable = "unavailable";

    public static IResult Error(int status, string kind, string message, int? retryAfterSeconds = null)
    {
        var result = Results.Json(new ErrorBody(kind, message), statusCode: status);
        return retryAfterSeconds is { } s ? new WithRetryAfter(result, s) : result;
    }

    public static IResult FromKind(string kind, string message) => Error(ErrorKinds.HttpStatus(kind), kind, message);

    public sealed record ErrorBody(string Error, string Message);

    private sealed class WithRetryAfter(IResult inner, int seconds) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return inner.ExecuteAsync(httpContext);
        }
    }
}
