using System.CommandLine;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;

namespace TrEnv.Cli;

/// <summary>
/// <c>trenv up</c> and <c>trenv down</c>: what ./run.sh does (build, start the nodes as local processes, wait for
/// them to join, deploy the sample functions), with progress, from a checkout of the repository; with
/// <c>--compose</c> the same for compose/docker-compose.yml on a Docker engine (LocalClusterCommands.Compose.cs).
/// </summary>
internal sealed partial class LocalClusterCommands(TextWriter stdout, TextWriter stderr)
{
    private static readonly (string Name, string Query)[] Samples =
        [("hello", ""), ("heavy", ""), ("trap", ""), ("loop", "?timeoutMs=1000"), ("membomb", "?memoryMb=64"), ("escape", ""), ("notebook", "")];

    public Command Up(Option<string?> token)
    {
        var port = new Option<int>("--http-port") { Description = "The coordinator's HTTP port (TRENV_HTTP_PORT; 8080)", DefaultValueFactory = _ => EnvInt("TRENV_HTTP_PORT", 8080) };
        var workers = new Option<int>("--workers") { Description = "Worker nodes (TRENV_WORKERS; 2)", DefaultValueFactory = _ => EnvInt("TRENV_WORKERS", 2) };
        var basePort = new Option<int>("--base-port") { Description = "First Akka port; the pool's gRPC port is the one below (4053)", DefaultValueFactory = _ => EnvInt("TRENV_BASE_PORT", 4053) };
        var dir = new Option<string?>("--dir") { Description = "Node data, logs and pids (TRENV_CLUSTER_DIR; .trenv in the checkout)" };
        var pool = new Option<string?>("--pool-path") { Description = "The shared pool file (TRENV_POOL_PATH; /dev/shm/trenv/pool)" };
        var detach = new Option<bool>("--detach") { Description = "Return once ready and leave the nodes running (trenv down stops them)" };
        var noBuild = new Option<bool>("--no-build") { Description = "Use what is built already" };
        var compose = new Option<bool>("--compose") { Description = "Run compose/docker-compose.yml on a Docker engine instead (started or installed when missing); returns once ready" };
        var profile = new Option<string>("--profile") { Description = "With --compose: cxl (workers map the shared pool) or rdma (workers fetch pages over gRPC)", DefaultValueFactory = _ => "cxl" };
        var command = new Command("up", "Build and start a local cluster (one coordinator, workers, the memory pool) with the sample functions deployed")
        {
            port, workers, basePort, dir, pool, detach, noBuild, compose, profile,
        };
        command.SetAction(async (p, ct) =>
        {
            if (Checkout() is not { } root)
                return Usage("trenv up runs from a checkout of TrEnv.Cluster (no TrEnv.Cluster.sln above this directory).");
            if (p.GetValue(compose))
                return await ComposeUp(root, p.GetValue(profile)!, p.GetValue(token), p.GetValue(noBuild), ct);
            var url = $"http://127.0.0.1:{p.GetValue(port)}";
            var clusterDir = p.GetValue(dir) ?? Environment.GetEnvironmentVariable("TRENV_CLUSTER_DIR") ?? Path.Combine(root, ".trenv");
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            if (await Answers(http, url + "/healthz"))
                return Usage($"Something already serves {url}; stop it (trenv down) or pick --http-port.");
            if (!p.GetValue(noBuild))
            {
                stdout.WriteLine("building (scripts/bootstrap.sh, scripts/build.sh, scripts/build-python.sh)…");
                if (await Run(root, "scripts/bootstrap.sh", [], ct) is not 0 || await Run(root, "scripts/build.sh", [("CONFIGURATION", "Release")], ct) is not 0
                    || await Run(root, "scripts/build-python.sh", [], ct) is not 0 || await Run(root, "scripts/fetch-ruby.sh", [], ct) is not 0)
                    return Fail("the build failed; its output is above.");
            }
            var env = new List<(string, string)>
            {
                ("TRENV_HTTP_PORT", p.GetValue(port).ToString(System.Globalization.CultureInfo.InvariantCulture)),
                ("TRENV_WORKERS", p.GetValue(workers).ToString(System.Globalization.CultureInfo.InvariantCulture)),
                ("TRENV_BASE_PORT", p.GetValue(basePort).ToString(System.Globalization.CultureInfo.InvariantCulture)),
                ("TRENV_CLUSTER_DIR", clusterDir),
            };
            if (p.GetValue(pool) is { } poolPath)
                env.Add(("TRENV_POOL_PATH", poolPath));
            stdout.WriteLine($"starting the memory pool, a coordinator and {p.GetValue(workers)} worker(s); logs in {clusterDir}");
            if (await Run(root, "scripts/cluster.sh", env, ct) is not 0)
                return Fail("scripts/cluster.sh could not start the nodes.");
            var pids = await Pids(clusterDir);

            // Progress while nodes join: report each change, fail fast if a node exits.
            var deadline = DateTimeOffset.UtcNow + TimeSpan.FromMinutes(4);
            var last = "";
            while (true)
            {
                if (pids.FirstOrDefault(pid => !Alive(pid)) is var dead && dead != 0)
                    return await StopAndFail(pids, $"node {dead} exited; see {clusterDir}/*.log");
                var (joined, workersUp, poolUp, ready) = await Progress(http, url);
                var line = $"nodes joined {joined}/{p.GetValue(workers) + 2}, workers reporting {workersUp}/{p.GetValue(workers)}, pool {(poolUp ? "answering" : "not yet")}";
                if (line != last)
                    stdout.WriteLine(line);
                last = line;
                // Every node up as a member too: readiness alone can precede the last member's Up.
                if (ready && joined >= p.GetValue(workers) + 2 && workersUp >= p.GetValue(workers) && poolUp)
                    break;
                if (DateTimeOffset.UtcNow > deadline)
                    return await StopAndFail(pids, $"the cluster was not ready within 4 minutes; see {clusterDir}/*.log");
                await Task.Delay(500, ct);
            }
            if (await DeploySamples(http, url, p.GetValue(token), Path.Combine(root, "guests", "build"), Path.Combine(root, "guests"), ct) is { } failed)
                return await StopAndFail(pids, failed);
            stdout.WriteLine($"TrEnv ready: {url}");
            stdout.WriteLine($"  trenv invoke hello -d world --url {url}");
            if (p.GetValue(detach))
                return ExitCodes.Ok;
            stdout.WriteLine("Ctrl-C stops it.");
            try
            {
                while (pids.All(Alive))
                    await Task.Delay(1000, ct);
                return await StopAndFail(pids, $"a node exited; see {clusterDir}/*.log");
            }
            catch (OperationCanceledException)
            {
                await Stop(pids);
                stdout.WriteLine("stopped");
                return ExitCodes.Ok;
            }
        });
        return command;
    }

    /// <summary>Deploys the sample guests (NAME.wasm in <paramref name="wasm"/>) and scripts (python/, ruby/ in <paramref name="scripts"/>); the failure, or null.</summary>
    private async Task<string?> DeploySamples(HttpClient status, string url, string? token, string wasm, string scripts, CancellationToken ct)
    {
        // A deploy compiles the module first (ruby.wasm takes tens of seconds on a busy machine): not the status polls' 5 s.
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
        foreach (var (name, query) in Samples)
        {
            using var content = new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(wasm, name + ".wasm"), ct));
            content.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
            using var request = new HttpRequestMessage(HttpMethod.Put, $"{url}/v1/functions/{name}{query}") { Content = content };
            if (token is { Length: > 0 })
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await http.SendAsync(request, ct);
            if (!response.IsSuccessStatusCode)
                return $"deploying the sample {name} failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}";
            stdout.WriteLine($"deployed {name}");
        }
        // The Python and Ruby sample tools, from source, when their runtimes are installed (scripts/build-python.sh, fetch-ruby.sh).
        var files = new[] { ("python", "*.py"), ("ruby", "*.rb") }
            .SelectMany(r => Directory.Exists(Path.Combine(scripts, r.Item1))
                ? Directory.GetFiles(Path.Combine(scripts, r.Item1), r.Item2).Order(StringComparer.Ordinal).Select(f => (Runtime: r.Item1, File: f))
                : []).ToArray();
        foreach (var (runtime, file) in files)
        {
            var name = Path.GetFileNameWithoutExtension(file).Replace('_', '-');
            using var content = new ByteArrayContent(await File.ReadAllBytesAsync(file, ct));
            using var request = new HttpRequestMessage(HttpMethod.Put, $"{url}/v1/functions/{name}?runtime={runtime}") { Content = content };
            if (token is { Length: > 0 })
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await http.SendAsync(request, ct);
            if (response.StatusCode == System.Net.HttpStatusCode.ServiceUnavailable)
            {
                stdout.WriteLine($"skipped {name}: {await response.Content.ReadAsStringAsync(ct)}");
                continue;
            }
            if (!response.IsSuccessStatusCode)
                return $"deploying the sample {name} failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}";
            stdout.WriteLine($"deployed {name} ({runtime})");
        }
        return null;
    }

    public Command Down()
    {
        var dir = new Option<string?>("--dir") { Description = "The cluster directory trenv up used (TRENV_CLUSTER_DIR; .trenv in the checkout)" };
        var compose = new Option<bool>("--compose") { Description = "Remove the compose cluster trenv up --compose started: containers, networks and volumes" };
        var command = new Command("down", "Stop the nodes a detached trenv up started") { dir, compose };
        command.SetAction(async (p, ct) =>
        {
            if (p.GetValue(compose))
                return Checkout() is { } checkout ? await ComposeDown(checkout, ct) : Usage("trenv down --compose runs from a checkout of TrEnv.Cluster.");
            var clusterDir = p.GetValue(dir) ?? Environment.GetEnvironmentVariable("TRENV_CLUSTER_DIR") ?? (Checkout() is { } root ? Path.Combine(root, ".trenv") : ".trenv");
            if (!File.Exists(Path.Combine(clusterDir, "pids")))
                return Usage($"No cluster was started in {clusterDir} (no pids file).");
            var pids = await Pids(clusterDir);
            var alive = pids.Count(Alive);
            await Stop(pids);
            stdout.WriteLine($"stopped {alive} node(s)");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static async Task<(int Joined, int Workers, bool Pool, bool Ready)> Progress(HttpClient http, string url)
    {
        try
        {
            using var doc = JsonDocument.Parse(await http.GetStringAsync(url + "/v1/cluster"));
            var joined = doc.RootElement.GetProperty("nodes").EnumerateArray().Count(n => n.GetProperty("status").GetString() == "up");
            var workers = doc.RootElement.GetProperty("workers").GetArrayLength();
            var pool = doc.RootElement.GetProperty("pool").ValueKind == JsonValueKind.Object;
            return (joined, workers, pool, await Answers(http, url + "/readyz"));
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException)
        {
            return (0, 0, false, false);
        }
    }

    private static async Task<bool> Answers(HttpClient http, string url)
    {
        try
        {
            using var r = await http.GetAsync(url);
            return r.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    private async Task<int> StopAndFail(IReadOnlyList<int> pids, string sentence)
    {
        await Stop(pids);
        return Fail(sentence);
    }

    private static async Task Stop(IReadOnlyList<int> pids)
    {
        foreach (var pid in pids.Where(Alive))
            Signal(pid, 15);
        for (var i = 0; i < 100 && pids.Any(Alive); i++)
            await Task.Delay(100);
        foreach (var pid in pids.Where(Alive))
            Signal(pid, 9);
    }

    private static void Signal(int pid, int signal)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("kill", [$"-{signal}", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { RedirectStandardError = true });
            p?.WaitForExit();
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
    }

    private static bool Alive(int pid) => Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal);

    private static async Task<List<int>> Pids(string dir)
        => (await File.ReadAllLinesAsync(Path.Combine(dir, "pids"))).Select(l => int.TryParse(l.Trim(), out var pid) ? pid : 0).Where(p => p > 0).ToList();

    private async Task<int> Run(string root, string script, IEnumerable<(string Key, string Value)> env, CancellationToken ct)
    {
        var info = new ProcessStartInfo(Path.Combine(root, script)) { WorkingDirectory = root, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (k, v) in env)
            info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync(ct);
        var error = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        if (p.ExitCode != 0)
        {
            stderr.Write(await output);
            stderr.Write(await error);
        }
        return p.ExitCode;
    }

    private static string? Checkout()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "TrEnv.Cluster.sln")))
                    return d.FullName;
        return null;
    }

    private static int EnvInt(string name, int fallback)
        => int.TryParse(Environment.GetEnvironmentVariable(name), out var v) ? v : fallback;

    private int Usage(string sentence)
    {
        stderr.WriteLine($"error: {sentence}");
        return ExitCodes.Usage;
    }

    private int Fail(string sentence)
    {
        stderr.WriteLine($"error: {sentence}");
        return ExitCodes.Failed;
    }
}
