namespace TrEnv.Worker.Placement;

/// <summary>What the pool needs to know of a sandbox process; the production one is an isolated host process.</summary>
public interface IPooledSandbox
{
    int Pid { get; }

    /// <summary>Keeps the node's network (a function deployed with <c>network: true</c>); fixed at start.</summary>
    bool Network { get; }

    bool IsAlive { get; }
}

/// <summary>How a reset of an idle sandbox ended.</summary>
public enum ResetOutcome
{
    /// <summary>Empty and ready for any function.</summary>
    Done,

    /// <summary>The reset failed but the process lives and its instance is gone: usable after another reset.</summary>
    InstanceLost,

    /// <summary>The process is gone or in an unknown state: destroy it.</summary>
    SandboxLost,
}

/// <summary>Starts, resets and destroys sandboxes for the <see cref="SandboxPool{TSandbox}"/>: the only I/O it does.</summary>
public interface ISandboxFactory<TSandbox>
    where TSandbox : class, IPooledSandbox
{
    /// <summary>Starts one and returns once it answers; throws when it cannot start.</summary>
    Task<TSandbox> StartAsync(bool network);

    /// <summary>Drops its instance and what the guest left behind.</summary>
    Task<ResetOutcome> ResetAsync(TSandbox sandbox, CancellationToken ct);

    Task DestroyAsync(TSandbox sandbox);
}
