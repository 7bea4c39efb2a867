using TrEnv.Contracts;
using TrEnv.Cluster;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

/// <summary>Requires the admin bearer token on deploy and delete when TRENV_ADMIN_TOKEN is set.</summary>
public sealed class AdminTokenFilter(NodeSettings settings) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        => BearerToken.Matches(context.HttpContext.Request, settings.AdminToken)
            ? await next(context)
            : Error(401, ErrorKinds.Unauthorized, "This call needs the admin token: send \"Authorization: Bearer <TRENV_ADMIN_TOKEN>\".");
}

public static class BearerToken
{
    public static bool Matches(HttpRequest request, string? expected)
    {
        if (string.IsNullOrEmpty(expected))
            return true;
        var header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.Ordinal))
            return false;
        var given = System.Text.Encoding.UTF8.GetBytes(header[7..].Trim());
        return System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, System.Text.Encoding.UTF8.GetBytes(expected));
    }
}
