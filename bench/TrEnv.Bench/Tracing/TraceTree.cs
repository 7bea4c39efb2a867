using System.Diagnostics;
using System.Security.Cryptography;

namespace TrEnv.Bench.Tracing;

/// <summary>
/// trenv-bench trace: receives the cluster's spans over OTLP (its nodes export to <see cref="OtlpSink"/> on the given
/// port), deploys hello, starts it cold, scales it to zero, invokes it once more (a template start) under a trace of
/// its own, and prints that trace as a span tree with each span's service, offset and duration.
/// </summary>
internal static class TraceTree
{
    public static async Task<int> RunAsync(string url, int sinkPort, string module)
    {
        using var sink = new OtlpSink(sinkPort);
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        var deploy = await http.PutAsync("/v1/functions/trace-hello", new ByteArrayContent(await File.ReadAllBytesAsync(module)));
        if (!deploy.IsSuccessStatusCode)
        {
            Console.Error.WriteLine($"deploy failed: {(int)deploy.StatusCode} {await deploy.Content.ReadAsStringAsync()}");
            return 1;
        }
        (await http.PostAsync("/v1/functions/trace-hello/invoke", new StringContent("first"))).EnsureSuccessStatusCode();
        (await http.PostAsync("/v1/functions/trace-hello/scale-to-zero", null)).EnsureSuccessStatusCode();
        var traceId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/functions/trace-hello/invoke") { Content = new StringContent("traced") };
        request.Headers.Add("traceparent", $"00-{traceId}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}-01");
        var watch = Stopwatch.StartNew();
        using var answer = await http.SendAsync(request);
        var millis = watch.Elapsed.TotalMilliseconds;
        var start = answer.Headers.TryGetValues("X-TrEnv-Start", out var s) ? s.First() : "?";
        Console.WriteLine($"POST /v1/functions/trace-hello/invoke: {(int)answer.StatusCode}, start {start}, {millis:F2} ms at the client; trace {traceId}");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        IReadOnlyList<OtlpSpan> trace = [];
        while (DateTime.UtcNow < deadline)
        {
            trace = sink.Trace(traceId);
            if (trace.Any(x => x.Name == "trenv.guest.call") && trace.Any(x => x.Service == "trenv-coordinator" && x.Name.StartsWith("POST", StringComparison.Ordinal)))
            {
                await Task.Delay(500); // the last batches
                trace = sink.Trace(traceId);
                break;
            }
            await Task.Delay(100);
        }
        Console.Write(OtlpSink.Render(trace));
        return trace.Count > 0 ? 0 : 1;
    }
}
