using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Primitives;
using TrEnv.Chaos;
using TrEnv.Cluster;

namespace TrEnv.Tests;

/// <summary>
/// compose/docker-compose.yml checked without a Docker engine: services, health-gated start order, privileges,
/// profiles, and that compose and the local-process topology share NodeSettings as their one schema.
/// </summary>
public sealed partial class ComposeFileTests
{
    private static readonly string Root = ChaosRunner.RepoRoot();
    private static readonly string ComposePath = Path.Combine(Root, "compose", "docker-compose.yml");
    private static readonly ComposeFile Compose = ComposeFile.Load(ComposePath);
    private static readonly string[] CxlNodes = ["memory-pool", "coordinator-1", "coordinator-2", "worker-1", "worker-2", "worker-3"];
    private static readonly string[] RdmaWorkers = ["rdma-worker-1", "rdma-worker-2", "rdma-worker-3"];

    private static LocalTopologyOptions Local(bool netns) => new(Root, "/tmp/trenv-compose-test", "/dev/shm/trenv-compose-test", netns, 4300, "Host=127.0.0.1;Port=5432;Username=trenv;Password=trenv;Database=trenv_chaos");

    [Fact]
    public void The_default_profile_is_postgres_the_pool_two_coordinators_and_three_cxl_workers()
    {
        Assert.Equal(["cxl"], Compose.DefaultProfiles);
        Assert.Equal(["postgres", .. CxlNodes], Compose.Active(Compose.DefaultProfiles).Select(s => s.Name));
        Assert.Equal(["postgres", "memory-pool", "coordinator-1", "coordinator-2", .. RdmaWorkers], Compose.Active(["rdma"]).Select(s => s.Name));
        var pg = Compose.Service("postgres");
        Assert.Equal("postgres:15", pg.Image);
        Assert.Contains(pg.Healthcheck!, part => part.Contains("pg_isready", StringComparison.Ordinal));
    }

    [Fact]
    public void Start_order_is_gated_by_health_checks_that_exist()
    {
        foreach (var s in Compose.Services)
        {
            foreach (var (dependency, condition) in s.DependsOn)
            {
                Assert.Equal("service_healthy", condition);
                Assert.NotNull(Compose.Service(dependency).Healthcheck);
            }
            if (s.Name != "postgres")
                Assert.Equal("unless-stopped", s.Restart);
        }
        Assert.Equal(["postgres"], Compose.Service("coordinator-1").DependsOn.Keys);
        Assert.Equal(["postgres"], Compose.Service("memory-pool").DependsOn.Keys);
        foreach (var w in new[] { "worker-1", "rdma-worker-3" })
            Assert.Equal(["coordinator-1", "memory-pool"], Compose.Service(w).DependsOn.Keys.Order());
        // Both coordinators seed, so either one restarting joins the other instead of forming its own cluster.
        var seeds = Compose.Service("worker-2").Environment["TRENV_SEEDS"].Split(',');
        Assert.Equal(["akka.tcp://trenv@coordinator-1:4053", "akka.tcp://trenv@coordinator-2:4053"], seeds);
    }

    [Fact]
    public void Both_coordinators_publish_the_http_api_and_journal_in_postgres()
    {
        Assert.Equal(["8080:8080"], Compose.Service("coordinator-1").Ports);
        Assert.Equal(["8081:8080"], Compose.Service("coordinator-2").Ports);
        foreach (var name in new[] { "coordinator-1", "coordinator-2", "memory-pool" })
            Assert.StartsWith("Host=postgres:5432;", Compose.Service(name).Environment["TRENV_DB"], StringComparison.Ordinal);
        // Workers hold no persistent entities and get no database password.
        Assert.DoesNotContain("TRENV_DB", Compose.Service("worker-1").Environment.Keys);
    }

    [Fact]
    public void Workers_get_the_least_privileges_sandboxes_need_and_rdma_workers_mount_no_pool()
    {
        var pool = Compose.Volumes.Single(v => v.Name == "pool");
        Assert.True(pool.Tmpfs);
        Assert.Contains("size=", pool.Options, StringComparison.Ordinal);
        foreach (var w in new[] { "worker-1", "worker-2", "worker-3" }.Concat(RdmaWorkers))
        {
            var s = Compose.Service(w);
            Assert.Equal(["SYS_ADMIN", "SYS_PTRACE", "DAC_OVERRIDE"], s.CapAdd);
            Assert.Equal(["apparmor=unconfined", "seccomp=worker-seccomp.json"], s.SecurityOpt);
            Assert.Equal("worker", s.BuildTarget);
            // The machine's workers share one compile cache, so a runtime compiles once, one compile at a time.
            Assert.Contains(("compile-cache", s.Environment["TRENV_COMPILE_CACHE_DIR"]), s.NamedMounts);
        }
        foreach (var w in new[] { "worker-1", "worker-2", "worker-3", "memory-pool" })
        {
            var s = Compose.Service(w);
            Assert.Contains(("pool", "/pool"), s.NamedMounts);
            Assert.StartsWith("/pool/", s.Environment["TRENV_POOL_PATH"], StringComparison.Ordinal);
            Assert.NotEqual("rdma", s.Environment.GetValueOrDefault("TRENV_POOL_MODE"));
        }
        foreach (var w in RdmaWorkers)
        {
            var s = Compose.Service(w);
            Assert.DoesNotContain(s.NamedMounts, m => m.Volume == "pool");
            Assert.Equal("rdma", s.Environment["TRENV_POOL_MODE"]);
            Assert.Equal("http://memory-pool:4070", s.Environment["TRENV_POOL_URL"]);
        }
        Assert.DoesNotMatch(new Regex("(?m)^\\s*privileged:"), File.ReadAllText(ComposePath));

        // The seccomp profile (relative to the compose file's directory, as compose resolves it) admits what
        // sandboxes need and still refuses what no worker needs.
        using var profile = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "compose", "worker-seccomp.json")));
        Assert.Equal("SCMP_ACT_ALLOW", profile.RootElement.GetProperty("defaultAction").GetString());
        var denied = profile.RootElement.GetProperty("syscalls").EnumerateArray()
            .Where(r => r.GetProperty("action").GetString() != "SCMP_ACT_ALLOW")
            .SelectMany(r => r.GetProperty("names").EnumerateArray().Select(n => n.GetString())).ToHashSet();
        foreach (var needed in new[] { "pivot_root", "userfaultfd", "mount", "umount2", "unshare", "setns", "clone", "clone3" })
            Assert.DoesNotContain(needed, denied);
        foreach (var refused in new[] { "kexec_load", "init_module", "finit_module", "reboot", "bpf", "ptrace", "swapon" })
            Assert.Contains(refused, denied);
    }

    [Fact]
    public void Every_variable_the_compose_file_sets_is_a_node_setting_and_binds()
    {
        foreach (var s in Compose.Services.Where(s => s.BuildTarget is not null))
        {
            var unknown = s.Environment.Keys.Where(k => !NodeSettings.Variables.Contains(k)).ToList();
            Assert.True(unknown.Count == 0, $"{s.Name} sets {string.Join(", ", unknown)}, which no node reads (NodeSettings.Variables).");
            var settings = Bind(s.Environment);
            Assert.Equal(s.Environment["TRENV_NODE_NAME"], settings.Name);
            Assert.Equal(4053, settings.Port);
        }
    }

    [Theory]
    [InlineData("cxl", true)]
    [InlineData("cxl", false)]
    [InlineData("rdma", true)]
    public void The_local_topology_runs_the_same_services_with_the_same_keys(string profile, bool netns)
    {
        var nodes = LocalTopology.From(Compose, [profile], Local(netns));
        var services = Compose.Active([profile]).Where(s => s.BuildTarget is not null).ToList();
        Assert.Equal(services.Select(s => s.Name), nodes.Select(n => n.Service));
        foreach (var (service, node) in services.Zip(nodes))
        {
            Assert.Equal(service.Environment.Keys.Order(), node.Environment.Keys.Order());
            foreach (var (key, value) in service.Environment.Where(kv => !LocalTopology.RewrittenKeys.Contains(kv.Key)))
                Assert.Equal(value, node.Environment[key]);
            var settings = Bind(node.Environment);
            Assert.Equal(node.Address, settings.Hostname);
            Assert.Equal(netns && node.Kind == NodeKind.Worker, node.Namespace is not null);
        }
        // Every address and port a node is told about is one some node listens on.
        var listening = nodes.SelectMany(n => LocalTopology.PortKeys.Where(n.Environment.ContainsKey).Select(k => $"{n.Address}:{n.Environment[k]}")).ToHashSet();
        Assert.Equal(listening.Count, nodes.Sum(n => LocalTopology.PortKeys.Count(n.Environment.ContainsKey)));
        foreach (var n in nodes)
        {
            foreach (var seed in Bind(n.Environment).Seeds)
                Assert.Contains(new Uri(seed.Replace("akka.tcp", "tcp", StringComparison.Ordinal)).Authority, listening);
            Assert.Contains(new Uri(n.Environment["TRENV_POOL_URL"]).Authority, listening);
        }
        var pool = nodes.Single(n => n.Kind == NodeKind.MemoryPool).Environment["TRENV_POOL_PATH"];
        Assert.StartsWith("/dev/shm/trenv-compose-test/pool/", pool, StringComparison.Ordinal);
        foreach (var w in nodes.Where(n => n.Kind == NodeKind.Worker))
            Assert.Equal(profile == "cxl", w.Environment["TRENV_POOL_PATH"] == pool);
    }

    [Fact]
    public void NodeSettings_Variables_is_exactly_what_the_binder_reads()
    {
        var recorder = new RecordingConfiguration();
        _ = NodeSettings.From(recorder);
        Assert.Equal(NodeSettings.Variables.Order(), recorder.Read.Select(k => "TRENV_" + k).Distinct().Order());
    }

    [Fact]
    public void The_local_scripts_use_the_same_schema()
    {
        // scripts/cluster.sh starts nodes with TRENV_* variables; the rest are the script's own knobs.
        string[] scriptKnobs = ["TRENV_WORKERS", "TRENV_CLUSTER_DIR", "TRENV_BASE_PORT", "TRENV_NODES_DIR"];
        var used = TrEnvVariable().Matches(File.ReadAllText(Path.Combine(Root, "scripts", "cluster.sh"))).Select(m => m.Value).Distinct().ToList();
        Assert.NotEmpty(used);
        var unknown = used.Where(v => !NodeSettings.Variables.Contains(v) && !scriptKnobs.Contains(v)).ToList();
        Assert.True(unknown.Count == 0, $"scripts/cluster.sh uses {string.Join(", ", unknown)}, which no node reads.");
    }

    [Fact]
    public void The_dockerfile_builds_each_target_the_compose_file_names_with_an_aot_sandbox_host()
    {
        var dockerfile = File.ReadAllText(Path.Combine(Root, "compose", "Dockerfile"));
        foreach (var target in Compose.Services.Select(s => s.BuildTarget).OfType<string>().Distinct())
            Assert.Matches(new Regex($"(?im)^FROM .+ AS {Regex.Escape(target)}$"), dockerfile);
        Assert.Contains("PublishAot=true", dockerfile, StringComparison.Ordinal);
        Assert.Contains("dotnet publish", dockerfile, StringComparison.Ordinal);
        Assert.Contains("/app/sandbox-host", dockerfile, StringComparison.Ordinal);
        Assert.Equal("/app/sandbox-host", Compose.Service("worker-1").Environment["TRENV_SANDBOX_HOST"]);
    }

    [Fact]
    public void Docker_compose_config_accepts_the_file_where_the_client_is_installed()
    {
        if (!CommandExists("docker"))
            return; // no Docker client on this machine: the checks above stand in for it
        var info = new ProcessStartInfo("docker", ["compose", "-f", ComposePath, "config", "--services"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEnd();
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (error.Contains("is not a docker command", StringComparison.Ordinal) || error.Contains("unknown shorthand flag", StringComparison.Ordinal))
            return; // a client without the compose plugin
        Assert.True(p.ExitCode == 0, error);
        Assert.Equal(CxlNodes.Append("postgres").Order(), output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Order());
    }

    [Theory]
    [InlineData("${A}", "a")]
    [InlineData("${MISSING:-fallback}", "fallback")]
    [InlineData("${EMPTY:-fallback}", "fallback")]
    [InlineData("${EMPTY-fallback}", "")]
    [InlineData("$A/$$B", "a/$B")]
    [InlineData("x${A}y${MISSING}z", "xayz")]
    public void Interpolation_follows_compose(string text, string expected)
        => Assert.Equal(expected, ComposeFile.Interpolate(text, new Dictionary<string, string> { ["A"] = "a", ["EMPTY"] = "" }));

    [Fact]
    public void A_required_variable_that_is_missing_is_refused_with_its_message()
    {
        var e = Assert.Throws<FormatException>(() => ComposeFile.Interpolate("${SECRET:?set it in .env}", new Dictionary<string, string>()));
        Assert.Contains("set it in .env", e.Message, StringComparison.Ordinal);
    }

    private static NodeSettings Bind(IReadOnlyDictionary<string, string> environment)
        => NodeSettings.From(new ConfigurationBuilder().AddInMemoryCollection(
            environment.Where(kv => kv.Key.StartsWith("TRENV_", StringComparison.Ordinal)).Select(kv => new KeyValuePair<string, string?>(kv.Key["TRENV_".Length..], kv.Value))).Build());

    private static bool CommandExists(string name)
        => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, name)));

    [GeneratedRegex("TRENV_[A-Z_]+[A-Z]")]
    private static partial Regex TrEnvVariable();

    /// <summary>An empty configuration that remembers every key asked of it.</summary>
    private sealed class RecordingConfiguration : IConfiguration
    {
        public List<string> Read { get; } = [];

        public string? this[string key]
        {
            get
            {
                Read.Add(key);
                return null;
            }
            set { }
        }

        public IEnumerable<IConfigurationSection> GetChildren() => [];
        public IChangeToken GetReloadToken() => new CancellationChangeToken(CancellationToken.None);
        public IConfigurationSection GetSection(string key) => throw new NotSupportedException();
    }
}
