using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;

namespace TrEnv.Cli;

/// <summary>An answer of the HTTP API, or the sentence and exit code of why there is none.</summary>
public sealed record ApiAnswer(int Status, byte[] Body, HttpResponseHeaders? Headers, string? ErrorKind, string? ErrorMessage)
{
    public bool Ok => Status is >= 200 and < 300;
    public int ExitCode => Ok ? ExitCodes.Ok : Status == 0 ? ExitCodes.Unreachable : ExitCodes.For(Status, ErrorKind);
    public string Text => System.Text.Encoding.UTF8.GetString(Body);
    public JsonElement Json => JsonDocument.Parse(Body).RootElement;

    public string? Header(string name) => Headers is not null && Headers.TryGetValues(name, out var v) ? v.FirstOrDefault() : null;

    /// <summary>One sentence for the user: the coordinator's message and kind, or why it could not be reached.</summary>
    public string Describe() => Status == 0
        ? ErrorMessage ?? "no answer"
        : $"{ErrorMessage ?? Text} ({ErrorKind ?? "error"}, HTTP {Status})";
}

/// <summary>The v1 HTTP API as the CLI uses it; bearer token when given.</summary>
public sealed class TrEnvClient(string baseUrl, string? token, HttpMessageHandler? handler = null) : IDisposable
{
    private readonly HttpClient _http = new(handler ?? new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5) })
    {
        BaseAddress = new Uri(baseUrl.TrimEnd('/') + "/"),
        Timeout = TimeSpan.FromMinutes(15),
    };

    public string BaseUrl { get; } = baseUrl.TrimEnd('/');

    public Task<ApiAnswer> GetAsync(string path, CancellationToken ct) => SendAsync(HttpMethod.Get, path, null, ct);

    public Task<ApiAnswer> SendAsync(HttpMethod method, string path, HttpContent? content, CancellationToken ct)
        => SendCoreAsync(method, path, content, ct);

    private async Task<ApiAnswer> SendCoreAsync(HttpMethod method, string path, HttpContent? content, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path.TrimStart('/')) { Content = content };
        if (!string.IsNullOrEmpty(token))
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        try
        {
            using var response = await _http.SendAsync(request, ct);
            var body = await response.Content.ReadAsByteArrayAsync(ct);
            string? kind = null, message = null;
            if (!response.IsSuccessStatusCode)
            {
                try
                {
                    using var doc = JsonDocument.Parse(body);
                    // Our problem details carry error and message; another server's carry detail (RFC 9457) at least.
                    kind = doc.RootElement.TryGetProperty("error", out var k) ? k.GetString() : null;
                    message = doc.RootElement.TryGetProperty("message", out var m) ? m.GetString()
                        : doc.RootElement.TryGetProperty("detail", out var d) ? d.GetString() : null;
                }
                catch (JsonException)
                {
                    message = response.StatusCode == HttpStatusCode.NotFound ? $"{BaseUrl}/{path.TrimStart('/')} does not exist; is {BaseUrl} a TrEnv coordinator?" : null;
                }
            }
            return new ApiAnswer((int)response.StatusCode, body, response.Headers, kind, message);
        }
        catch (HttpRequestException e) when (e.InnerException is SocketException s)
        {
            return new ApiAnswer(0, [], null, null, $"Cannot reach the coordinator at {BaseUrl}: {s.Message}. Is the cluster running (./run.sh), and is --url (TRENV_URL) right?");
        }
        catch (HttpRequestException e)
        {
            return new ApiAnswer(0, [], null, null, $"The request to {BaseUrl} failed: {e.Message}");
        }
    }

    public void Dispose() => _http.Dispose();
}
