using System.Diagnostics;
using System.Globalization;

namespace TrEnv.Chaos;

/// <summary>
/// The compose project on a Docker engine, as the chaos runner uses it: images prepared by scripts/images.sh,
/// the project started fresh (its own name, coordinators published on their own host ports), one
/// <see cref="ContainerNode"/> per TrEnv service, and the split between workers (iptables rules in Docker's
/// DOCKER-USER chain that drop traffic from each worker to every other, and nothing else). Removed with its
/// volumes at the end unless kept.
/// </summary>
public sealed class DockerCluster : IAsyncDisposable
{
    public const string Project = "trenv-chaos";
    private readonly string _root;
    private readonly Dictionary<string, string> _env;
    private readonly List<string[]> _splitRules = [];
    private readonly bool _keep;
    private readonly Action<string> _log;

    private DockerCluster(string root, Dictionary<string, string> env, bool keep, Action<string> log)
    {
        _root = root;
        _env = env;
        _keep = keep;
        _log = log;
    }

    public List<ContainerNode> Nodes { get; } = [];

    public static async Task<DockerCluster> StartAsync(string root, ComposeFile compose, IReadOnlyList<string> profiles, ChaosOptions o, Action<string> log, CancellationToken ct)
    {
        var env = new Dictionary<string, string>(o.Set, StringComparer.Ordinal)
        {
            ["COMPOSE_PROJECT_NAME"] = Project,
            ["COMPOSE_PROFILES"] = string.Join(',', profiles),
            ["TRENV_HTTP_PUBLISH"] = o.HttpPort.ToString(CultureInfo.InvariantCulture),
            ["TRENV_HTTP_PUBLISH_2"] = (o.HttpPort + 1).ToString(CultureInfo.InvariantCulture),
        };
        var cluster = new DockerCluster(root, env, o.Keep, log);
        try
        {
            log("images: scripts/images.sh (engine, base images, TrEnv images)");
            await cluster.ScriptAsync("scripts/images.sh", [], ct);
            await cluster.ScriptAsync("scripts/compose.sh", ["down", "-v", "--remove-orphans", "--timeout", "5"], ct);
            log($"compose up: project {Project}, profiles {string.Join(',', profiles)}");
            await cluster.ScriptAsync("scripts/compose.sh", ["up", "-d", "--no-build"], ct);
            var network = $"{Project}_default";
            foreach (var s in compose.Active(profiles))
            {
                NodeKind? kind = s.BuildTarget switch { "coordinator" => NodeKind.Coordinator, "worker" => NodeKind.Worker, "memory-pool" => NodeKind.MemoryPool, _ => null };
                if (kind is null)
                    continue;
                var id = (await cluster.ScriptAsync("scripts/compose.sh", ["ps", "-q", s.Name], ct)).Trim();
                if (id.Length == 0)
                    throw new InvalidOperationException($"compose started no container for {s.Name}.");
                string? http = null;
                if (kind == NodeKind.Coordinator)
                {
                    var published = (await Docker.CheckAsync("port", id, $"{s.Environment["TRENV_HTTP_PORT"]}/tcp")).Split('\n')[0].Trim();
                    http = $"http://127.0.0.1:{published[(published.LastIndexOf(':') + 1)..]}";
                }
                var node = new LocalNode(s.Name, kind.Value, s.Environment.TryGetValue("TRENV_PUBLIC_HOSTNAME", out var h) ? h : s.Name, null, 0, s.Environment, "", http);
                var container = new ContainerNode(node, id, network, log);
                await container.InitAsync();
                cluster.Nodes.Add(container);
            }
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Cuts every worker off from every other worker (or heals it); coordinators and the pool still reach all.</summary>
    public async Task SplitWorkersAsync(bool cut)
    {
        if (cut)
        {
            var workers = Nodes.Where(n => n.Node.Kind == NodeKind.Worker).ToList();
            var addresses = new List<string>();
            foreach (var w in workers)
                addresses.Add(await w.AddressAsync());
            foreach (var from in addresses)
                foreach (var to in addresses.Where(a => a != from))
                {
                    string[] rule = ["DOCKER-USER", "-s", from, "-d", to, "-j", "DROP"];
                    await Iptables(["-I", .. rule]);
                    _splitRules.Add(rule);
                }
        }
        else
        {
            foreach (var rule in _splitRules)
                await Iptables(["-D", .. rule]);
            _splitRules.Clear();
        }
    }

    private static async Task Iptables(string[] args)
    {
        var info = new ProcessStartInfo("iptables") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var error = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"iptables {string.Join(' ', args)} failed: {error.Trim()}");
    }

    /// <summary>Saves every container's log beside the summary's run directory.</summary>
    public async Task SaveLogsAsync(string directory)
    {
        Directory.CreateDirectory(directory);
        foreach (var n in Nodes)
        {
            var (_, output, error) = await Docker.RunAsync("logs", "--timestamps", n.Container);
            await File.WriteAllTextAsync(Path.Combine(directory, n.Node.Service + ".log"), output + "\n" + error);
        }
    }

    private async Task<string> ScriptAsync(string script, string[] args, CancellationToken ct)
    {
        var info = new ProcessStartInfo(Path.Combine(_root, script)) { WorkingDirectory = _root, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            info.ArgumentList.Add(a);
        foreach (var (k, v) in _env)
            info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync(ct);
        var error = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{script} {string.Join(' ', args)} failed ({p.ExitCode}): {(await error).Trim()}");
        return await output;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_splitRules.Count > 0)
                await SplitWorkersAsync(false);
            foreach (var n in Nodes)
                await Docker.RunAsync("unpause", n.Container); // a run stopped mid-pause
            if (!_keep)
                await ScriptAsync("scripts/compose.sh", ["down", "-v", "--remove-orphans", "--timeout", "10"], CancellationToken.None);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            _log($"cleaning up the compose project failed: {e.Message}");
        }
    }
}
