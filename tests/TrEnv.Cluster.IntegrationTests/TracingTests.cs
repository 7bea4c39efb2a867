using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using TrEnv.Bench.Tracing;

namespace TrEnv.Tests;

/// <summary>Traces over OTLP: one template start followed from the caller's span through the coordinator, the worker and the sandbox host.</summary>
public sealed class TracingTests
{
    [Fact]
    public async Task One_trace_follows_a_template_start_through_the_coordinator_the_worker_and_the_sandbox_host()
    {
        using var sink = new OtlpSink(FreePort());
        await using var c = new LocalCluster();
        foreach (var (key, value) in sink.Environment)
            c.Environment[key] = value;
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("hello", "hello");
        Assert.Equal("cold", (await c.Api.InvokeAsync("hello", "x")).Start);
        await c.Api.ScaleToZeroAsync("hello");

        // The caller's own trace continues through the cluster, and the answer names the coordinator's span in it.
        var traceId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var callerSpan = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/functions/hello/invoke") { Content = new StringContent("traced") };
        request.Headers.Add("traceparent", $"00-{traceId}-{callerSpan}-01");
        using var answer = await c.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal("template", answer.Headers.GetValues("X-TrEnv-Start").Single());
        var echoed = answer.Headers.GetValues("traceparent").Single().Split('-');
        Assert.Equal(traceId, echoed[1]);

        IReadOnlyList<OtlpSpan> trace = [];
        await Poll.UntilAsync(() =>
        {
            trace = sink.Trace(traceId);
            return Task.FromResult(new[] { "trenv.guest.call", "trenv.sandbox.restore", "trenv.worker.invoke" }.All(n => trace.Any(s => s.Name == n))
                && trace.Any(s => s.ParentSpanId == callerSpan));
        }, TimeSpan.FromSeconds(30), () => "the trace's spans at the receiver; so far:\n" + OtlpSink.Render(trace));

        OtlpSpan Only(string name, string service, OtlpSpan parent)
        {
            var span = Assert.Single(trace, s => s.Name == name);
            Assert.True((span.Service, span.ParentSpanId) == (service, parent.SpanId), $"{name}: {span.Service} under {span.ParentSpanId}\n{OtlpSink.Render(trace)}");
            Assert.True(span.StartNanos >= parent.StartNanos - 1_000_000 && span.EndNanos <= parent.EndNanos + 1_000_000, $"{name} outside {parent.Name}\n{OtlpSink.Render(trace)}");
            return span;
        }
        var server = Assert.Single(trace, s => s.ParentSpanId == callerSpan);
        Assert.Equal(("trenv-coordinator", echoed[2]), (server.Service, server.SpanId));
        Only("trenv.place", "trenv-coordinator", server);
        var call = Only("trenv.worker.call", "trenv-coordinator", server);
        var invoke = Only("trenv.worker.invoke", "trenv-worker", call);
        Assert.Equal(("template", "hello"), (invoke.Attributes["trenv.start"], invoke.Attributes["faas.name"]));
        Only("trenv.sandbox.acquire", "trenv-worker", invoke);
        var load = Only("trenv.worker.load", "trenv-worker", invoke);
        var hostLoad = Only("trenv.sandbox.load", "trenv-sandbox-host", load);
        Assert.Equal("template", hostLoad.Attributes["trenv.start"]);
        Only("trenv.sandbox.instantiate", "trenv-sandbox-host", hostLoad);
        Only("trenv.sandbox.restore", "trenv-sandbox-host", hostLoad);
        var sandboxCall = Only("trenv.sandbox.call", "trenv-worker", invoke);
        Only("trenv.guest.call", "trenv-sandbox-host", sandboxCall);

        // A session's pause and resume: the entity's operation, the worker's, and the host's load of the delta.
        using var created = await c.Http.PostAsync("/v1/sessions", new StringContent("{\"function\":\"hello\"}"));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var session = System.Text.Json.JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        async Task<(string TraceId, string Caller)> TracedPost(string path)
        {
            var (id, caller) = (Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)), Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)));
            using var post = new HttpRequestMessage(HttpMethod.Post, path);
            post.Headers.Add("traceparent", $"00-{id}-{caller}-01");
            using var done = await c.Http.SendAsync(post);
            Assert.True(done.IsSuccessStatusCode, await done.Content.ReadAsStringAsync());
            return (id, caller);
        }
        var paused = await TracedPost($"/v1/sessions/{session}/pause");
        var resumed = await TracedPost($"/v1/sessions/{session}/resume");
        await Poll.UntilAsync(() =>
        {
            trace = sink.Trace(resumed.TraceId);
            return Task.FromResult(trace.Any(s => s.Name == "trenv.sandbox.restore") && sink.Trace(paused.TraceId).Any(s => s.Name == "trenv.worker.session.pause")
                && trace.Any(s => s.Name == "trenv.session.resume"));
        }, TimeSpan.FromSeconds(30), () => "the session's spans; resume so far:\n" + OtlpSink.Render(trace) + "pause:\n" + OtlpSink.Render(sink.Trace(paused.TraceId)));
        var resumeRequest = Assert.Single(trace, s => s.ParentSpanId == resumed.Caller);
        var entity = Only("trenv.session.resume", "trenv-coordinator", resumeRequest);
        var workerResume = Only("trenv.worker.session.resume", "trenv-worker", entity);
        Assert.Equal("resume", workerResume.Attributes["trenv.start"]);
        var deltaLoad = Only("trenv.sandbox.load", "trenv-sandbox-host", workerResume);
        Only("trenv.sandbox.restore", "trenv-sandbox-host", deltaLoad);
        trace = sink.Trace(paused.TraceId);
        var pauseEntity = Only("trenv.session.pause", "trenv-coordinator", Assert.Single(trace, s => s.ParentSpanId == paused.Caller));
        Only("trenv.worker.session.pause", "trenv-worker", pauseEntity);

        // OTEL_PROPAGATORS=none governs the HTTP edge: a coordinator so configured neither continues the caller's trace
        // nor answers with a traceparent, yet its own trace (one it starts: flags 03, sampled and random) still runs whole
        // through the worker and the sandbox host.
        using var edge = c.StartCoordinatorWithOwnHttp("coordinator-2", ("OTEL_PROPAGATORS", "none"));
        await Poll.UntilAsync(async () => (await Probe(edge, "/readyz")) == HttpStatusCode.OK, TimeSpan.FromSeconds(60), () => "coordinator-2 to be ready");
        var ignored = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        using var untraced = new HttpRequestMessage(HttpMethod.Post, "/v1/functions/hello/invoke") { Content = new StringContent("edge") };
        untraced.Headers.Add("traceparent", $"00-{ignored}-{callerSpan}-01");
        using var edgeAnswer = await edge.SendAsync(untraced);
        Assert.Equal(HttpStatusCode.OK, edgeAnswer.StatusCode);
        Assert.False(edgeAnswer.Headers.Contains("traceparent"));
        var edgeInvocation = edgeAnswer.Headers.GetValues("X-TrEnv-Invocation-Id").Single();
        OtlpSpan? edgeCall = null;
        await Poll.UntilAsync(() =>
        {
            edgeCall = sink.Spans.FirstOrDefault(s => s.Name == "trenv.worker.invoke" && s.Attributes.GetValueOrDefault("faas.invocation_id") == edgeInvocation);
            return Task.FromResult(edgeCall is not null && sink.Trace(edgeCall.TraceId) is var t
                && t.Any(s => s.Name == "trenv.guest.call") && t.Any(s => s.Service == "trenv-coordinator" && IsRoot(s)));
        }, TimeSpan.FromSeconds(30), () => $"coordinator-2's invocation {edgeInvocation} at the receiver; its trace so far: "
            + (edgeCall is null ? "none" : OtlpSink.Render(sink.Trace(edgeCall.TraceId))));
        Assert.Empty(sink.Trace(ignored));
        trace = sink.Trace(edgeCall!.TraceId);
        var edgeRequest = Assert.Single(trace, IsRoot);
        Assert.Equal("trenv-coordinator", edgeRequest.Service);
        Only("trenv.worker.invoke", "trenv-worker", Only("trenv.worker.call", "trenv-coordinator", edgeRequest));
        Only("trenv.guest.call", "trenv-sandbox-host", Only("trenv.sandbox.call", "trenv-worker", edgeCall));
    }

    private static bool IsRoot(OtlpSpan span) => span.ParentSpanId.Length == 0 || span.ParentSpanId.All(ch => ch == '0');

    private static async Task<HttpStatusCode?> Probe(HttpClient http, string path)
    {
        try
        {
            using var answer = await http.GetAsync(path);
            return answer.StatusCode;
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
