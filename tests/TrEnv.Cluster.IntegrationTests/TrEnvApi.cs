using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace TrEnv.Tests;

/// <summary>The function calls of the coordinator's HTTP API that the integration tests share, typed.</summary>
/// <remarks>
/// Names and queries go into the URL as given, unescaped, so hostile tests can send malformed ones. A query may
/// come with or without its leading '?'. The client is the caller's: this class never disposes it.
/// </remarks>
public sealed class TrEnvApi(HttpClient http)
{
    /// <summary>PUT /v1/functions/{name}: the answer, whatever it is. The server reads the body alone; the content type is for readers.</summary>
    public Task<HttpResponseMessage> DeployAsync(string name, byte[] body, string query = "", string? contentType = null)
    {
        var content = new ByteArrayContent(body);
        if (contentType is not null)
            content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        return http.PutAsync($"/v1/functions/{name}{Query(query)}", content);
    }

    /// <summary>Deploys a sample guest (guests/build) as application/wasm and asserts 201 Created.</summary>
    public async Task DeployGuestAsync(string name, string guest, string query = "")
    {
        using var r = await DeployAsync(name, TestGuests.Bytes(guest), query, "application/wasm");
        Assert.True(r.StatusCode == HttpStatusCode.Created, $"deploy {name}: {r.StatusCode} {await r.Content.ReadAsStringAsync()}");
    }

    /// <summary>POST /v1/functions/{name}/invoke with <paramref name="input"/> as UTF-8.</summary>
    public Task<Invocation> InvokeAsync(string name, string input) => InvokeAsync(name, Encoding.UTF8.GetBytes(input));

    /// <summary>POST /v1/functions/{name}/invoke with <paramref name="input"/> as the body.</summary>
    public async Task<Invocation> InvokeAsync(string name, byte[] input)
        => await Invocation.ReadAsync(await http.PostAsync($"/v1/functions/{name}/invoke", new ByteArrayContent(input)));

    /// <summary>POST /v1/functions/{name}/scale-to-zero, asserting 200 OK.</summary>
    public async Task ScaleToZeroAsync(string name)
    {
        using var r = await http.PostAsync($"/v1/functions/{name}/scale-to-zero", null);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }

    /// <summary>One worker's entry in GET /v1/cluster.</summary>
    public async Task<JsonElement> WorkerAsync(string node)
        => JsonDocument.Parse(await http.GetStringAsync("/v1/cluster")).RootElement.GetProperty("workers").EnumerateArray()
            .Single(w => w.GetProperty("node").GetString() == node);

    private static string Query(string query) => query.Length == 0 || query[0] == '?' ? query : "?" + query;
}

/// <summary>An invocation's answer: its status, its body, and the X-TrEnv-* headers that say how it ran.</summary>
public sealed record Invocation(HttpStatusCode Status, string Body, HttpResponseMessage Response)
{
    /// <summary>X-TrEnv-Start: cold, warm or template.</summary>
    public string Start => Header("X-TrEnv-Start");

    /// <summary>X-TrEnv-Sandbox: new, reused or repurposed.</summary>
    public string Sandbox => Header("X-TrEnv-Sandbox");

    /// <summary>X-TrEnv-Node: the worker that answered.</summary>
    public string Node => Header("X-TrEnv-Node");

    /// <summary>The single value of a response header, or "" when it is absent.</summary>
    public string Header(string name) => Response.Headers.TryGetValues(name, out var v) ? v.Single() : "";

    /// <summary>Reads an answer to an invocation sent some other way (say, with headers of its own).</summary>
    public static async Task<Invocation> ReadAsync(HttpResponseMessage response)
        => new(response.StatusCode, await response.Content.ReadAsStringAsync(), response);
}
