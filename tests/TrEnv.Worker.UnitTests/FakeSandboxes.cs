using TrEnv.Worker.Placement;

namespace TrEnv.Worker.UnitTests;

/// <summary>A sandbox that is only an object: the pool's policy is tested without processes.</summary>
internal sealed class FakeSandbox(int pid, bool network) : IPooledSandbox
{
    public int Pid { get; } = pid;
    public bool Network { get; } = network;
    public bool IsAlive { get; set; } = true;
}

internal sealed class FakeFactory : ISandboxFactory<FakeSandbox>
{
    private int _next;

    public List<FakeSandbox> Started { get; } = [];
    public List<FakeSandbox> Reset { get; } = [];
    public List<FakeSandbox> Destroyed { get; } = [];

    /// <summary>What the next reset answers.</summary>
    public ResetOutcome NextReset { get; set; } = ResetOutcome.Done;

    public Task<FakeSandbox> StartAsync(bool network)
    {
        var sandbox = new FakeSandbox(Interlocked.Increment(ref _next), network);
        lock (Started)
            Started.Add(sandbox);
        return Task.FromResult(sandbox);
    }

    public Task<ResetOutcome> ResetAsync(FakeSandbox sandbox, CancellationToken ct)
    {
        Reset.Add(sandbox);
        return Task.FromResult(NextReset);
    }

    public Task DestroyAsync(FakeSandbox sandbox)
    {
        sandbox.IsAlive = false;
        lock (Destroyed)
            Destroyed.Add(sandbox);
        return Task.CompletedTask;
    }
}

/// <summary>A clock the test moves by hand, so "least recently used" is exact.</summary>
internal sealed class ManualClock : TimeProvider
{
    public DateTimeOffset Now { get; set; } = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public override DateTimeOffset GetUtcNow() => Now;

    public void Advance(TimeSpan by) => Now += by;
}
