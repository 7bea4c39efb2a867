using TrEnv.Sandbox;
using TrEnv.Worker.Placement;

namespace TrEnv.Worker.Isolation;

/// <summary>A sandbox host process in its namespaces, root and cgroup, as the pool holds it.</summary>
/// <param name="HasPool">False: started before the pool file existed, so it cannot map it.</param>
/// <param name="BoundPool">The pool file bound into its root (device:inode): a pool created again later is not visible inside.</param>
public sealed record IsolatedSandbox(SandboxProcess Process, bool Network, bool HasPool, string? BoundPool) : IPooledSandbox
{
    public int Pid => Process.Pid;

    public bool IsAlive => Process.IsAlive;

    /// <param name="poolIdentity">The pool file's identity now (<see cref="TrEnv.MemoryPool.PoolDevice.Identity"/>).</param>
    public bool SeesPool(string? poolIdentity) => HasPool && (BoundPool is null || BoundPool == poolIdentity);
}
