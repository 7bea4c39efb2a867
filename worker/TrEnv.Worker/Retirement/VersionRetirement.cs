using TrEnv.Contracts;
using TrEnv.Worker.Artifacts;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Placement;
using TrEnv.Worker.Reporting;
using TrEnv.Worker.Templates;

namespace TrEnv.Worker.Retirement;

/// <summary>
/// What a deleted or replaced function version leaves on this node goes away: warm instances (idle ones now,
/// busy ones as they finish), template headers, and the modules and layers the forget names.
/// </summary>
public sealed class VersionRetirement(SandboxPool<IsolatedSandbox> pool, LocalTemplates templates, ArtifactStore artifacts, TemplateMappings mappings)
{
    // Files waiting until no sandbox runs a forgotten version (a busy call may still read its module or layer).
    private readonly List<WorkerForget> _purges = [];

    /// <summary>Returns how many warm instances went back to generic sandboxes.</summary>
    public async Task<int> ForgetAsync(WorkerForget forget, CancellationToken ct)
    {
        var victims = pool.Forget(forget.Function, forget.BelowVersion);
        templates.Forget(pool.IsForgotten);
        lock (_purges)
            _purges.Add(forget);
        await pool.ResetToGenericAsync(victims, ct);
        PurgeDue();
        mappings.Report();
        return victims.Count;
    }

    /// <summary>A call that ran a version forgotten meanwhile: its sandbox goes back to the pool instead of staying warm.</summary>
    public async Task ReclaimAsync(SandboxSlot<IsolatedSandbox> slot)
    {
        await pool.ResetToGenericAsync([slot], CancellationToken.None);
        PurgeDue();
        mappings.Report();
    }

    /// <summary>Deletes the files of forgets whose function no call is running in a forgotten version any more.</summary>
    public void PurgeDue()
    {
        List<WorkerForget> due;
        lock (_purges)
        {
            due = [.. _purges.Where(p => !pool.IsServingForgotten(p.Function))];
            foreach (var p in due)
                _purges.Remove(p);
        }
        foreach (var forget in due)
            artifacts.Delete(forget);
    }
}
