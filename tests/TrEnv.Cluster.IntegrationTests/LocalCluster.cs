using System.Diagnostics;
using System.Text.Json;

namespace TrEnv.Tests;

/// <summary>
/// A real cluster of node processes on loopback (coordinator, memory-pool, workers), each started from
/// its build output with TRENV_* settings, as scripts/cluster.sh does. Waits are polls with deadlines.
/// </summary>
public sealed class LocalCluster : IAsyncDisposable
{
    private static readonly string Configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
    private readonly Dictionary<string, Process> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _ports = new(StringComparer.Ordinal);
    private readonly TempDir _dir = new("trenv-cluster");

    public LocalCluster(string? database = null)
    {
        Database = database;
        SeedPort = FreePort();
        HttpPort = FreePort();
        PoolGrpcPort = FreePort();
        PoolPath = Path.Combine("/dev/shm", $"trenv-test-{Guid.NewGuid():N}", "pool");
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{HttpPort}"), Timeout = TimeSpan.FromSeconds(120) };
        Api = new TrEnvApi(Http);
    }

    public string? Database { get; }

    /// <summary>Extra TRENV_* settings for every node started after they are set.</summary>
    public Dictionary<string, string> Environment { get; } = new(StringComparer.Ordinal);
    public int SeedPort { get; }
    public int HttpPort { get; }
    public int PoolGrpcPort { get; }
    public string PoolPath { get; }
    public HttpClient Http { get; }

    /// <summary>The function calls of the HTTP API, through <see cref="Http"/>.</summary>
    public TrEnvApi Api { get; }
    public string Directory => _dir.Path;

    public void StartCoordinator(string name = "coordinator-1")
        => Start(name, "coordinator/TrEnv.Coordinator", "trenv-coordinator.dll", name == "coordinator-1" ? SeedPort : FreePort(), ("TRENV_HTTP_PORT", HttpPort.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>Starts another coordinator with an HTTP port of its own and returns a client for it.</summary>
    public HttpClient StartCoordinatorWithOwnHttp(string name, params (string Key, string Value)[] env)
    {
        var http = FreePort();
        Start(name, "coordinator/TrEnv.Coordinator", "trenv-coordinator.dll", FreePort(), [("TRENV_HTTP_PORT", http.ToString(System.Globalization.CultureInfo.InvariantCulture)), .. env]);
        return new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}"), Timeout = TimeSpan.FromSeconds(120) };
    }

    /// <summary>Starts the memory-pool node; <paramref name="newPort"/> restarts it under a fresh Akka address (its gRPC port and data stay).</summary>
    public void StartMemoryPool(bool newPort = false)
    {
        if (newPort)
            _ports.Remove("memory-pool");
        Start("memory-pool", "memory-pool/TrEnv.MemoryPool.Node", "trenv-memory-pool.dll", FreePort());
    }

    /// <summary>Starts a worker; <paramref name="newPort"/> restarts one under a fresh address (its data directory stays).</summary>
    public void StartWorker(string name, bool newPort = false, params (string Key, string Value)[] env)
    {
        if (newPort)
            _ports.Remove(name);
        Start(name, "worker/TrEnv.Worker", "trenv-worker.dll", FreePort(), [("TRENV_PRESTART_SANDBOXES", "1"), .. env]);
    }

    /// <summary>Starts a coordinator, the memory-pool node and the named workers (none is fine), and waits for them.</summary>
    public async Task StartAllAsync(params string[] workers)
    {
        StartCoordinator();
        StartMemoryPool();
        foreach (var w in workers)
            StartWorker(w);
        await WaitReadyAsync(workers);
    }

    /// <summary>Starts a worker under a command prefix (say, <c>ip netns exec NS ...</c>) that execs <c>dotnet worker.dll</c>.</summary>
    public void StartWorkerUnder(string name, string[] prefix, params (string Key, string Value)[] env)
        => Start(name, "worker/TrEnv.Worker", "trenv-worker.dll", FreePort(), prefix, [("TRENV_PRESTART_SANDBOXES", "1"), .. env]);

    private void Start(string name, string project, string dll, int port, params (string Key, string Value)[] extra)
        => Start(name, project, dll, port, [], extra);

    private void Start(string name, string project, string dll, int port, string[] prefix, (string Key, string Value)[] extra)
    {
        var path = Path.Combine(TestGuests.RepoRoot, project, "bin", Configuration, "net10.0", dll);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Node executable {path} is missing; build the solution first.");
        _ports[name] = _ports.GetValueOrDefault(name, port);
        var psi = prefix.Length == 0
            ? new ProcessStartInfo("dotnet", [path])
            : new ProcessStartInfo(prefix[0], [.. prefix[1..], "dotnet", path]);
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.UseShellExecute = false;
        psi.Environment["TRENV_NODE_NAME"] = name;
        psi.Environment["TRENV_PORT"] = _ports[name].ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment["TRENV_SEEDS"] = $"akka.tcp://trenv@127.0.0.1:{SeedPort}";
        psi.Environment["TRENV_DATA_DIR"] = Path.Combine(_dir.Path, name);
        psi.Environment["TRENV_POOL_PATH"] = PoolPath;
        psi.Environment["TRENV_COMPILE_CACHE_DIR"] = Path.Combine(_dir.Path, "compile-cache");
        psi.Environment["TRENV_POOL_SIZE_MB"] = "1024";
        psi.Environment["TRENV_POOL_GRPC_PORT"] = PoolGrpcPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment["TRENV_POOL_URL"] = $"http://127.0.0.1:{PoolGrpcPort}";
        if (Database is not null)
            psi.Environment["TRENV_DB"] = Database;
        foreach (var (k, v) in Environment.Select(kv => (kv.Key, kv.Value)).Concat(extra))
            psi.Environment[k] = v;
        var process = Process.Start(psi)!;
        var log = new StreamWriter(Path.Combine(_dir.Path, name + ".log"), append: true) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _nodes[name] = process;
    }

    public int Pid(string name) => _nodes[name].Id;

    /// <summary>kill -9 of the node process alone: its children (sandboxes) are left to fend for themselves.</summary>
    public void KillOnly(string name)
    {
        if (_nodes.Remove(name, out var p))
        {
            p.Kill(entireProcessTree: false);
            p.WaitForExit(10_000);
        }
    }

    /// <summary>SIGTERM: the node shuts down gracefully.</summary>
    public void Stop(string name)
    {
        if (!_nodes.Remove(name, out var p))
            return;
        using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            kill.WaitForExit();
        if (!p.WaitForExit(30_000))
            throw new TimeoutException($"{name} did not stop within 30 s of SIGTERM");
    }

    /// <summary>kill -9 of one node.</summary>
    public void Kill(string name)
    {
        if (_nodes.Remove(name, out var p))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit(10_000);
        }
    }

    public void KillAll()
    {
        foreach (var name in _nodes.Keys.ToList())
            Kill(name);
    }

    /// <summary>Waits until the coordinator is ready and the named workers appear in its directory.</summary>
    public async Task WaitReadyAsync(params string[] workers)
    {
        await Poll.UntilAsync(async () =>
        {
            // A node that exited while starting will not become ready: say which and why now, not after the deadline.
            foreach (var (name, p) in _nodes)
                if (p.HasExited)
                    throw new InvalidOperationException($"{name} exited with code {p.ExitCode} while the cluster started; its log:\n{string.Join("\n", File.ReadLines(Path.Combine(_dir.Path, name + ".log")).TakeLast(40))}");
            try
            {
                if (!(await Http.GetAsync("/readyz")).IsSuccessStatusCode)
                    return false;
                var cluster = JsonDocument.Parse(await Http.GetStringAsync("/v1/cluster")).RootElement;
                var known = cluster.GetProperty("workers").EnumerateArray().Select(w => w.GetProperty("node").GetString()).ToHashSet();
                return workers.All(known.Contains) && cluster.GetProperty("pool").ValueKind == JsonValueKind.Object;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(60), () => $"the cluster to be ready with workers {string.Join(", ", workers)}; logs in {_dir.Path}: {Tail()}");
    }

    public string Tail()
        => string.Join("\n", System.IO.Directory.GetFiles(_dir.Path, "*.log").Select(f => $"--- {Path.GetFileName(f)}\n{string.Join("\n", File.ReadLines(f).TakeLast(15))}"));

    private static int FreePort() => TestPorts.Next();

    public async ValueTask DisposeAsync()
    {
        KillAll();
        Http.Dispose();
        try
        {
            System.IO.Directory.Delete(Path.GetDirectoryName(PoolPath)!, recursive: true);
        }
        catch (IOException)
        {
        }
        await Task.CompletedTask;
        _dir.Dispose();
    }
}

public static class Poll
{
    /// <summary>Polls until true or the deadline passes; the failure says what was awaited.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan deadline, Func<string> what)
    {
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < deadline)
        {
            if (await condition())
                return;
            await Task.Delay(200);
        }
        throw new TimeoutException($"Waited {deadline.TotalSeconds:0} s for {what()}");
    }
}
