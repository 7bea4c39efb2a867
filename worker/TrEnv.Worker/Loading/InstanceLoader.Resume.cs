using TrEnv.Contracts;
using TrEnv.Sandbox;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Placement;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Worker.Loading;

/// <summary>A paused session back into a sandbox: its base template mapped, its delta's pages copied over it, its /tmp changes applied.</summary>
public sealed partial class InstanceLoader
{
    /// <summary>Never falls back to a cold start: that would silently drop the session's state.</summary>
    public async Task ResumeAsync(SandboxSlot<IsolatedSandbox> slot, FunctionLoad load, SessionDelta delta, CancellationToken ct)
    {
        var target = Begin(slot, load.Version.Limits);
        var poolIdentity = TrEnv.MemoryPool.PoolDevice.Identity(poolPath);
        if (!slot.Sandbox.SeesPool(poolIdentity))
            throw new SandboxException(ErrorKinds.TemplateInvalid, $"Worker {settings.Name}'s sandbox cannot see the pool {poolPath}, which holds the session.", false);
        var basePages = delta.Base is { } baseTemplate
            ? await FetchTemplateAsync(baseTemplate, templates.NeedsVerification(baseTemplate, poolIdentity), ct)
            : null;
        // The delta's own pages: fetched whole (they are the session's, nobody shares them), checked on copy-in.
        if (mirror is not null && delta.Region.Length > 0)
            await mirror.EnsureAsync(new TemplateInfo(delta.Owner, "", 0, "", delta.Region, 0, delta.MemoryBytes, "", delta.PausedAt, delta.Header), ct,
                delta.FilesBytes > 0 ? (delta.FilesOffset, delta.FilesBytes) : null);
        var deltaPath = templates.Scratch("resume", "dlt");
        await File.WriteAllBytesAsync(deltaPath, delta.Header, ct);
        try
        {
            await SendAsync(target, load, new LoadSession(Spec(load), basePages, poolPath, deltaPath,
                delta.Region.Offset + delta.FilesOffset, delta.FilesBytes, delta.FilesSha256), delta.Base, ct);
        }
        catch (SandboxException e) when (e.Kind == ErrorKinds.TemplateInvalid && delta.Base is { } failedBase)
        {
            // Checked again next time (a pool being rebuilt from its durable copies is not ready yet).
            templates.Unverify(failedBase, poolIdentity);
            throw;
        }
        finally
        {
            File.Delete(deltaPath);
        }
    }
}
