using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace TrEnv.Bench;

/// <summary>
/// A coordinator restarted while clients keep calling: the steady rate of one client loop per connection, then the
/// coordinator is stopped (SIGTERM) and started again exactly as it ran (its command line, environment and directory, read
/// from /proc), and the same load goes on. Reports the rate per second after the new process started and how long
/// it took to serve at 80% of the steady rate again.
/// </summary>
internal static class RestartUnderLoad
{
    private static readonly TimeSpan Bucket = TimeSpan.FromMilliseconds(100);

    /// <summary>trenv-bench restart URL: hello deployed and warmed (10 s of load), then <see cref="MeasureAsync"/> alone.</summary>
    public static async Task<int> RunAsync(BenchOptions o, Uri url)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 32 }) { BaseAddress = url, Timeout = TimeSpan.FromMinutes(2) };
        await E2eBenchmark.DeployAsync(http, "hello", await File.ReadAllBytesAsync(Path.Combine(o.Guests, "hello.wasm")), "");
        await E2eBenchmark.ThroughputAsync(http, "hello", 16, TimeSpan.FromSeconds(3));
        return await MeasureAsync(http, "hello", 16) is null ? 1 : 0;
    }

    public static async Task<JsonObject?> MeasureAsync(HttpClient http, string function, int concurrency)
    {
        var dir = Environment.GetEnvironmentVariable("TRENV_CLUSTER_DIR");
        if (dir is null || !File.Exists(Path.Combine(dir, "pids")))
        {
            Console.WriteLine("restart under load: skipped (no TRENV_CLUSTER_DIR/pids: the bench did not start this cluster)");
            return null;
        }
        var pids = File.ReadAllLines(Path.Combine(dir, "pids"));
        var pid = int.Parse(pids[0], CultureInfo.InvariantCulture); // scripts/cluster.sh starts the coordinator first
        var command = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
        var environment = File.ReadAllText($"/proc/{pid}/environ").Split('\0', StringSplitOptions.RemoveEmptyEntries)
            .Select(kv => kv.Split('=', 2)).Where(kv => kv.Length == 2).ToDictionary(kv => kv[0], kv => kv[1]);
        var workingDirectory = Directory.ResolveLinkTarget($"/proc/{pid}/cwd", returnFinalTarget: true)?.FullName ?? Environment.CurrentDirectory;
        var log = Path.Combine(dir, (environment.GetValueOrDefault("TRENV_NODE_NAME") ?? "coordinator-1") + ".log");

        var input = "benchmark"u8.ToArray();
        var counts = new long[4096];
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var load = Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await http.PostAsync($"/v1/functions/{function}/invoke", new ByteArrayContent(input), stop.Token);
                    await response.Content.ReadAsByteArrayAsync(stop.Token);
                    if (response.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref counts[Math.Min(counts.Length - 1, (int)(clock.Elapsed / Bucket))]);
                        continue;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                {
                }
                await Task.Delay(50); // refused while the coordinator is down: try again shortly, as a client with a short back-off would
            }
        })).ToArray();

        // Steady: after a warm-up the loop has had already (the throughput run), five seconds at full rate.
        await Task.Delay(TimeSpan.FromSeconds(2));
        var steadyFrom = Buckets(clock.Elapsed);
        await Task.Delay(TimeSpan.FromSeconds(5));
        var steadyTo = Buckets(clock.Elapsed);
        var steady = Rate(counts, steadyFrom, steadyTo);

        // A restart as `docker restart` does it: SIGTERM (the coordinator drains and leaves the cluster), then a start.
        using (var kill = Process.Start("kill", ["-TERM", pid.ToString(CultureInfo.InvariantCulture)]))
            await kill.WaitForExitAsync();
        // Not the bench's child: gone once /proc shows it dead (a zombie until its parent reaps it).
        for (var i = 0; i < 600 && Alive(pid); i++)
            await Task.Delay(50);
        // The bucket the old process ended in still holds its last answers.
        var restarted = Buckets(clock.Elapsed) + 1;
        var psi = new ProcessStartInfo("/bin/sh", ["-c", "exec \"$@\" >>\"$0\" 2>&1", log, .. command]) { WorkingDirectory = workingDirectory, UseShellExecute = false };
        psi.Environment.Clear();
        foreach (var (k, v) in environment)
            psi.Environment[k] = v;
        using var fresh = Process.Start(psi)!;
        pids[0] = fresh.Id.ToString(CultureInfo.InvariantCulture);
        await File.WriteAllLinesAsync(Path.Combine(dir, "pids"), pids); // the bench's cleanup stops the new one

        await Task.Delay(TimeSpan.FromSeconds(20));
        stop.Cancel();
        await Task.WhenAll(load);

        // Rate over each second after the start (a sliding one-second window, stepped by 100 ms).
        var perSecond = new JsonArray();
        double? at80 = null;
        double? firstAnswer = null;
        for (var b = restarted; b + 10 <= restarted + 200; b++)
        {
            var rate = Rate(counts, b, b + 10);
            if (firstAnswer is null && counts[b] > 0)
                firstAnswer = (b - restarted) * Bucket.TotalSeconds;
            if (at80 is null && rate >= 0.8 * steady)
                at80 = (b + 10 - restarted) * Bucket.TotalSeconds;
            if ((b - restarted) % 10 == 0)
                perSecond.Add(Math.Round(rate, 0));
        }
        Console.WriteLine($"coordinator restart under load (concurrency {concurrency}, HttpClient loops): steady {steady:F0}/s; first answer {Show(firstAnswer)} s and 80% of steady {Show(at80)} s after the new process started");
        Console.WriteLine($"  rate per second after the start: {string.Join(' ', perSecond.Select(n => n!.ToString()))}");
        return new JsonObject
        {
            ["client"] = $"{concurrency} HttpClient loops in the bench process",
            ["steady_rps"] = Math.Round(steady, 0),
            ["first_answer_s"] = firstAnswer is { } f ? Math.Round(f, 1) : null,
            ["to_80pct_s"] = at80 is { } a ? Math.Round(a, 1) : null,
            ["rps_by_second"] = perSecond,
        };
    }

    private static bool Alive(int pid)
    {
        try
        {
            return !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static string Show(double? seconds) => seconds is { } s ? s.ToString("F1", CultureInfo.InvariantCulture) : "never (in 20)";

    private static int Buckets(TimeSpan t) => (int)(t / Bucket);

    private static double Rate(long[] counts, int from, int to)
    {
        long sum = 0;
        for (var b = from; b < to && b < counts.Length; b++)
            sum += Interlocked.Read(ref counts[b]);
        return sum / ((to - from) * Bucket.TotalSeconds);
    }
}
