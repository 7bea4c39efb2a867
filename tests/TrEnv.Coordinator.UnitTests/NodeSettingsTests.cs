using TrEnv.Cluster;

namespace TrEnv.Tests;

public sealed class NodeSettingsTests
{
    [Fact]
    public void Defaults_are_the_documented_ones()
    {
        var s = NodeSettings.FromEnvironment(new Dictionary<string, string?>());
        Assert.Equal(8080, s.HttpPort);
        Assert.Equal("/dev/shm/trenv/pool", s.PoolPath);
        Assert.Null(s.DatabaseConnection);
    }

    [Fact]
    public void Overrides_win_and_lists_do_not_append_to_defaults()
    {
        var s = NodeSettings.FromEnvironment(new Dictionary<string, string?>
        {
            ["ROLES"] = "worker",
            ["HTTP_PORT"] = "9000",
            ["SEEDS"] = "akka.tcp://trenv@a:1, akka.tcp://trenv@b:2",
            ["DB"] = "Host=pg",
        });
        Assert.Equal(["worker"], s.Roles);
        Assert.Equal(9000, s.HttpPort);
        Assert.Equal(["akka.tcp://trenv@a:1", "akka.tcp://trenv@b:2"], s.Seeds);
        Assert.Equal("Host=pg", s.DatabaseConnection);
    }

    [Fact]
    public void Bad_values_are_refused_with_the_variable_named()
    {
        var e = Assert.Throws<ArgumentException>(() => NodeSettings.FromEnvironment(new Dictionary<string, string?> { ["HTTP_PORT"] = "eighty" }));
        Assert.Contains("TRENV_HTTP_PORT", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => NodeSettings.FromEnvironment(new Dictionary<string, string?> { ["ROLES"] = "boss" }));
        Assert.Contains("boss", e.Message, StringComparison.Ordinal);
    }
    [Fact]
    public void Choices_read_as_typed_values_in_any_case_and_refuse_others_naming_every_choice()
    {
        var s = NodeSettings.FromEnvironment(new Dictionary<string, string?> { ["POOL_MODE"] = "RDMA", ["POOL_FETCH"] = "prefetch", ["SANDBOX_ISOLATION"] = "process" });
        Assert.Equal((PoolMode.Rdma, PoolFetch.Prefetch, SandboxIsolation.Process), (s.PoolMode, s.PoolFetch, s.SandboxIsolation));
        var d = NodeSettings.FromEnvironment(new Dictionary<string, string?>());
        Assert.Equal((PoolMode.Cxl, PoolFetch.Lazy, SandboxIsolation.Auto), (d.PoolMode, d.PoolFetch, d.SandboxIsolation));
        var e = Assert.Throws<ArgumentException>(() => NodeSettings.FromEnvironment(new Dictionary<string, string?> { ["POOL_FETCH"] = "sometimes" }));
        Assert.Equal("TRENV_POOL_FETCH must be eager, lazy or prefetch, not \"sometimes\".", e.Message);
        e = Assert.Throws<ArgumentException>(() => NodeSettings.FromEnvironment(new Dictionary<string, string?> { ["POOL_MODE"] = "nvme" }));
        Assert.Equal("TRENV_POOL_MODE must be cxl or rdma, not \"nvme\".", e.Message);
    }
}
