using TrEnv.Chaos;
using Xunit.Abstractions;

namespace TrEnv.Tests;

/// <summary>
/// The short chaos scenario of ./test.sh: compose's topology as local processes under checked load, one worker
/// killed with SIGKILL and restarted, then one coordinator killed with SIGKILL and restarted. The long soak is
/// ./chaos.sh (README).
/// </summary>
public sealed class ShortChaosTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_worker_then_a_coordinator_killed_with_SIGKILL_lose_nothing_answer_right_and_recover_within_5_s()
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        var runner = new ChaosRunner(new ChaosOptions
        {
            Rounds = 2,
            Kill = ["worker", "coordinator"],
            Signal = 9,
            Restart = true,
            Clients = 3,
            SettleSeconds = 2,
            ObserveSeconds = 6,
            DeployEverySeconds = 2,
            RunDirectory = "/tmp/trenv-chaos-test",
            Database = "trenv_chaos_test",
            BasePort = 4400,
            Command = "ShortChaosTests (./test.sh)",
        }, line => output.WriteLine($"[{started.Elapsed.TotalSeconds,6:0.0}s] {line}"));
        var summary = await runner.RunAsync();
        var json = ChaosRunner.ToJson(summary);
        var file = Path.Combine(ChaosRunner.RepoRoot(), "artifacts", "chaos-test-summary.json");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        await File.WriteAllTextAsync(file, json);
        output.WriteLine(json);

        Assert.True(summary.Ok, "invariants violated:\n" + string.Join("\n", summary.Violations));
        Assert.Equal(["kill-worker", "kill-coordinator"], summary.Rounds.Select(r => r.Fault));
        Assert.All(summary.Rounds, r =>
        {
            Assert.True(r.Restarted);
            Assert.InRange(r.RecoverySeconds, 0, 5);
            Assert.NotNull(r.MembershipConvergedSeconds);
            Assert.True(r.Succeeded > 50, $"round {r.Round} completed only {r.Succeeded} invocations");
        });
        Assert.Equal(0, summary.WrongAnswers);
        Assert.Equal(0, summary.Hung);
        Assert.Equal(0, summary.LostDeploys);
        Assert.Equal(0, summary.LostTemplates);
        // The invariants were exercised, not vacuous: deploys kept landing and templates were captured.
        Assert.True(summary.DeploysAcknowledged >= 6, $"{summary.DeploysAcknowledged} deploys acknowledged");
        Assert.True(summary.TemplatesSeen >= 3, $"{summary.TemplatesSeen} templates seen");
    }
}
