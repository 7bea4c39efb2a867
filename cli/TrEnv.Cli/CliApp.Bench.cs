using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;

namespace TrEnv.Cli;

public sealed partial class CliApp
{
    /// <summary>One request of a bench run as the client saw it.</summary>
    private sealed record Sample(string Start, string Sandbox, bool Ok, string? ErrorKind, double LatencyMs, long StartupUs, long ExecUs);

    private Command Bench()
    {
        var name = new Argument<string>("name") { Description = "Function name" };
        var data = new Option<string?>("--data", "-d") { Description = "The input of every request: text, @FILE, or - for standard input" };
        var requests = new Option<int>("--requests", "-n") { Description = "Requests in all (default 200)", DefaultValueFactory = _ => 200 };
        var concurrency = new Option<int>("--concurrency", "-c") { Description = "Requests in flight at once (default 4)", DefaultValueFactory = _ => 4 };
        var fresh = new Option<bool>("--fresh") { Description = "Scale the function to zero first, so the run starts from its template (or cold)" };
        var zeroEvery = new Option<int>("--scale-to-zero-every")
        {
            Description = "Also scale to zero after every N requests, to measure template starts repeatedly (0: never)",
        };
        var command = new Command("bench", "Invoke a function many times and report latency by start kind (client side), throughput and errors")
        {
            name, data, requests, concurrency, fresh, zeroEvery,
        };
        command.SetAction(async (p, ct) =>
        {
            var (n, c, every) = (p.GetValue(requests), p.GetValue(concurrency), p.GetValue(zeroEvery));
            if (n < 1 || c < 1 || c > 1024 || every < 0)
                return Usage("--requests must be at least 1, --concurrency between 1 and 1024, and --scale-to-zero-every 0 or more.");
            var (input, missing) = await ReadInputAsync(p.GetValue(data), ct);
            if (input is null)
                return Usage($"{missing} does not exist.");
            var fn = Uri.EscapeDataString(p.GetValue(name)!);
            using var client = Client(p);
            // Fails fast on an unknown name or an unreachable coordinator instead of N times.
            var probe = await client.GetAsync($"v1/functions/{fn}", ct);
            if (!probe.Ok)
                return Fail(probe);
            if (p.GetValue(fresh) && await ScaleToZero(client, fn, ct) is { } failed)
                return Fail(failed);

            var samples = new Sample[n];
            var next = -1;
            var gate = new SemaphoreSlim(1, 1);
            var clock = Stopwatch.StartNew();
            async Task Loop()
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < n)
                {
                    if (every > 0 && i > 0 && i % every == 0)
                    {
                        // Between batches; requests still in flight keep their instances, so the next starts mix template and warm.
                        await gate.WaitAsync(ct);
                        try
                        {
                            await ScaleToZero(client, fn, ct);
                        }
                        finally
                        {
                            gate.Release();
                        }
                    }
                    using var content = new ByteArrayContent(input);
                    var started = Stopwatch.GetTimestamp();
                    var answer = await client.SendAsync(HttpMethod.Post, $"v1/functions/{fn}/invoke", content, ct);
                    var ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                    samples[i] = new Sample(answer.Header("X-TrEnv-Start") ?? "none", answer.Header("X-TrEnv-Sandbox") ?? "-", answer.Ok,
                        answer.Ok ? null : answer.ErrorKind ?? (answer.Status == 0 ? "unreachable" : $"http_{answer.Status}"), ms,
                        long.TryParse(answer.Header("X-TrEnv-Startup-Us"), CultureInfo.InvariantCulture, out var s) ? s : 0,
                        long.TryParse(answer.Header("X-TrEnv-Exec-Us"), CultureInfo.InvariantCulture, out var e) ? e : 0);
                }
            }
            await Task.WhenAll(Enumerable.Range(0, Math.Min(c, n)).Select(_ => Task.Run(Loop, ct)));
            var elapsed = clock.Elapsed.TotalSeconds;
            Report(p.GetValue(name)!, samples, n, c, elapsed, Json(p));
            var errors = samples.Where(x => !x.Ok).GroupBy(x => x.ErrorKind!).OrderByDescending(g => g.Count()).FirstOrDefault();
            return errors is null ? ExitCodes.Ok : errors.Key == "unreachable" ? ExitCodes.Unreachable : ExitCodes.For(0, errors.Key);
        });
        return command;
    }

    private static async Task<ApiAnswer?> ScaleToZero(TrEnvClient client, string fn, CancellationToken ct)
    {
        var answer = await client.SendAsync(HttpMethod.Post, $"v1/functions/{fn}/scale-to-zero", null, ct);
        return answer.Ok ? null : answer;
    }

    private static double Percentile(IReadOnlyList<double> sorted, double q)
        => sorted.Count == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];

    private void Report(string function, Sample[] samples, int n, int concurrency, double seconds, bool json)
    {
        var kinds = samples.Where(x => x.Ok).GroupBy(x => x.Start).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g =>
        {
            var sorted = g.Select(x => x.LatencyMs).Order().ToList();
            return new
            {
                start = g.Key,
                count = sorted.Count,
                p50Ms = Percentile(sorted, 0.50),
                p90Ms = Percentile(sorted, 0.90),
                p99Ms = Percentile(sorted, 0.99),
                maxMs = sorted[^1],
                meanStartupMs = g.Average(x => x.StartupUs) / 1000,
                meanExecMs = g.Average(x => x.ExecUs) / 1000,
            };
        }).ToList();
        var errors = samples.Where(x => !x.Ok).GroupBy(x => x.ErrorKind!).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var ok = samples.Count(x => x.Ok);
        var all = samples.Select(x => x.LatencyMs).Order().ToList();
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(new
            {
                function,
                requests = n,
                concurrency,
                ok,
                seconds,
                perSecond = n / seconds,
                p50Ms = Percentile(all, 0.50),
                p99Ms = Percentile(all, 0.99),
                byStart = kinds,
                errors,
            }));
            return;
        }
        var table = new Table().AddColumns("start", "count", "p50 ms", "p90 ms", "p99 ms", "max ms", "startup ms (mean)", "exec ms (mean)");
        foreach (var k in kinds)
        {
            table.AddRow(k.start, k.count.ToString(CultureInfo.InvariantCulture), Ms(k.p50Ms), Ms(k.p90Ms), Ms(k.p99Ms), Ms(k.maxMs), Ms(k.meanStartupMs), Ms(k.meanExecMs));
        }
        _console.Write(table);
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{function}: {n} requests, {concurrency} at a time, in {seconds:F2} s ({n / seconds:F1}/s); {ok} ok; p50 {Percentile(all, 0.5):F2} ms, p99 {Percentile(all, 0.99):F2} ms"));
        foreach (var (kind, count) in errors.OrderByDescending(e => e.Value))
            stdout.WriteLine($"  {count} failed: {kind}");
    }

    private static string Ms(double v) => v.ToString(v < 10 ? "F3" : "F1", CultureInfo.InvariantCulture);
}
