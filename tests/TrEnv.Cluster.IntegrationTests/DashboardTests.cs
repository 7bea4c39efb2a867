using System.Net;
using System.Net.Http.Headers;

namespace TrEnv.Tests;

/// <summary>The dashboard at / in headless Chromium, against a running local cluster.</summary>
public sealed class DashboardTests
{
    [Fact]
    public async Task The_dashboard_shows_the_nodes_and_updates_live_after_an_invocation()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        var wasm = new ByteArrayContent(TestGuests.Bytes("hello"));
        wasm.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
        Assert.Equal(HttpStatusCode.Created, (await c.Http.PutAsync("/v1/functions/hello", wasm)).StatusCode);

        await using var browser = await HeadlessChromium.LaunchAsync();
        await browser.NavigateAsync($"http://127.0.0.1:{c.HttpPort}/");
        Assert.Equal("TrEnv cluster", await browser.EvaluateAsync<string>("document.title"));
        string Text(string id) => $"document.getElementById('{id}').textContent";

        // The coordinator, the memory pool and two workers, each worker with its sandboxes drawn.
        await Poll.UntilAsync(async () => await browser.EvaluateAsync<string>(Text("node-count")) == "4"
                && await browser.EvaluateAsync<int>("document.querySelectorAll('#workers .worker').length") == 2
                && await browser.EvaluateAsync<int>("document.querySelectorAll('#nodes .badge.up').length") == 4,
            TimeSpan.FromSeconds(20), () => "the page to show 4 nodes up and 2 workers; page says " + browser.EvaluateAsync<string>("document.body.innerText").Result);
        Assert.Equal("0", await browser.EvaluateAsync<string>(Text("invocation-total")));
        Assert.Contains("No template yet", await browser.EvaluateAsync<string>(Text("templates")), StringComparison.Ordinal);

        // One invocation through the HTTP API: the open page picks it up by itself (no reload).
        var invoked = await c.Http.PostAsync("/v1/functions/hello/invoke", new StringContent("dashboard"));
        Assert.Equal(HttpStatusCode.OK, invoked.StatusCode);
        var node = invoked.Headers.GetValues("X-TrEnv-Node").Single();
        await Poll.UntilAsync(async () => await browser.EvaluateAsync<string>(Text("invocation-total")) == "1"
                && (await browser.EvaluateAsync<string>(Text("invocations")))!.Contains("hello", StringComparison.Ordinal)
                && await browser.EvaluateAsync<int>($"[...document.querySelectorAll('#workers .worker[data-node=\"{node}\"] .tile.warm')].filter(t => t.textContent.includes('hello@1')).length") == 1
                && await browser.EvaluateAsync<string>(Text("template-count")) == "1"
                && (await browser.EvaluateAsync<string>(Text("templates")))!.Contains("hello@1", StringComparison.Ordinal),
            TimeSpan.FromSeconds(20), () => "the page to show the invocation, hello's warm sandbox and its template; page says "
                + browser.EvaluateAsync<string>("document.body.innerText").Result);
        Assert.Contains("cold", await browser.EvaluateAsync<string>(Text("by-start")), StringComparison.Ordinal);
        Assert.Contains("cold", await browser.EvaluateAsync<string>(Text("histograms")), StringComparison.Ordinal);

        var png = await browser.ScreenshotAsync();
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        Assert.True(png.Length > 20_000, $"a {png.Length}-byte screenshot is too small to show the dashboard");
        var shots = Path.Combine(TestGuests.RepoRoot, "artifacts", "screenshots");
        Directory.CreateDirectory(shots);
        await File.WriteAllBytesAsync(Path.Combine(shots, "dashboard.png"), png);
    }
}
