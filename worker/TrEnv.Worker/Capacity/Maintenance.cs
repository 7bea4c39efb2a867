using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Sandbox;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Placement;
using TrEnv.Worker.Reporting;
using TrEnv.Worker.Retirement;
using TrEnv.Worker.Sessions;

namespace TrEnv.Worker.Capacity;

/// <summary>
/// The worker's once-a-second upkeep: instances idle past the keep-alive go back to generic (scale to zero),
/// crashed or pool-blind sandboxes are replaced, the memory bound is enforced, generic sandboxes are pre-started
/// up to TRENV_PRESTART_SANDBOXES, and idle sessions are reported.
/// </summary>
public sealed class Maintenance(
    NodeSettings settings,
    SandboxPool<IsolatedSandbox> pool,
    string poolPath,
    MemoryBound bound,
    VersionRetirement retirement,
    SessionHost sessions,
    TemplateMappings mappings,
    ILogger log)
{
    /// <summary>
    /// Scale to zero now: idle warm instances (of one function, or all) become generic sandboxes, or with
    /// <paramref name="destroy"/> those sandboxes shut down; returns how many.
    /// </summary>
    public async Task<int> ReclaimAsync(string? function, bool destroy, CancellationToken ct)
    {
        var victims = pool.TakeWarm(key => function is null || key.Name == function);
        if (destroy)
            await pool.DestroyAsync(victims);
        else
            await pool.ResetToGenericAsync(victims, ct);
        mappings.Report();
        return victims.Count;
    }

    public async Task RunAsync(CancellationToken ct)
    {
        var expired = pool.TakeWarmIdleSince(DateTimeOffset.UtcNow.AddSeconds(-settings.KeepAliveSeconds));
        // Crashed or killed while idle, or blind to the pool as it is now (started before it existed, or bound
        // to one that was since lost and created again): replace them.
        var poolNow = TrEnv.MemoryPool.PoolDevice.Identity(poolPath);
        pool.DestroyIdleWhere(s => !s.IsAlive || (poolNow is not null && !s.SeesPool(poolNow)));
        var missing = pool.ReservePrestart(settings.PrestartSandboxes, expired.Count(s => !s.Sandbox.Network));
        await pool.ResetToGenericAsync(expired, ct);
        retirement.PurgeDue();
        sessions.ReportIdle();
        await bound.EnforceAsync();
        var fits = bound.Fitting(missing);
        pool.CancelReservations(missing - fits);
        for (var i = 0; i < fits; i++)
        {
            try
            {
                await pool.PrestartAsync();
            }
            catch (Exception e) when (e is SandboxException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                log.LogWarning("worker {Node}: could not pre-start a sandbox: {Error}", settings.Name, e.Message);
            }
        }
        mappings.Report();
    }
}
