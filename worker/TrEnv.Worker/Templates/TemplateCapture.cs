using Microsoft.Extensions.Logging;
using TrEnv.Contracts;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Worker.Templates;

/// <summary>
/// Captures a freshly initialised instance as its version's template, before its first invocation changes it.
/// The registry grants one capture per version cluster-wide (a lease); a capture that fails hands the lease back.
/// </summary>
public sealed class TemplateCapture(string node, string poolPath, IRegistryClient registry, PoolCache? mirror, LocalTemplates templates, ILogger log)
{
    /// <summary>The sealed template, or null when another worker holds or sealed it, or the capture failed (the call still runs cold).</summary>
    public async Task<TemplateInfo?> TryCaptureAsync(SandboxProcess sandbox, FunctionVersionKey key, FunctionVersion version, CancellationToken ct)
    {
        var header = templates.Scratch(key.ToString(), "tpl");
        var name = key.ToString();
        using var span = TrEnv.Cluster.NodeTelemetry.Worker.StartActivity("trenv.template.capture");
        span?.SetTag("trenv.template", name);
        try
        {
            var probe = await sandbox.CaptureAsync(new Capture(poolPath, 0, 0, header, node), ct);
            var answer = await registry.BeginCaptureAsync(new TemplateCommands.BeginCapture(name, key.Name, key.Version, version.Sha256, probe.RequiredBytes, node), ct);
            if (answer is TemplateReplies.CaptureRefused { Sealed: { } existing })
            {
                templates.Remember(existing);
                return null;
            }
            if (answer is not TemplateReplies.CaptureGranted granted)
                return null;
            try
            {
                var done = await sandbox.CaptureAsync(new Capture(poolPath, granted.Region.Offset, granted.Region.Length, header, node), ct);
                if (mirror is not null)
                    await mirror.UploadAsync(name, TrEnv.Engine.Templates.TemplateHeader.Read(header), ct); // the sandbox wrote into the mirror
                var sealedReply = await registry.SealAsync(new TemplateCommands.Seal(name, node, done.NonZeroPages, done.MemoryBytes, await File.ReadAllBytesAsync(header, ct)), ct);
                if (sealedReply is not TemplateReplies.Sealed { Template: var info })
                    return null;
                mirror?.MarkPresent(info);
                templates.Sealed(info, TrEnv.MemoryPool.PoolDevice.Identity(poolPath));
                File.Move(header, templates.HeaderPath(info), overwrite: true);
                return info;
            }
            catch (Exception e) when (e is SandboxException or IOException or Grpc.Core.RpcException)
            {
                registry.AbortCapture(new TemplateCommands.AbortCapture(name, node, e.Message));
                // The instance survived a failed capture (say, an unwritable pool): serve the invocation cold anyway.
                if (e is SandboxException { InstanceDiscarded: false } or IOException or Grpc.Core.RpcException)
                {
                    log.LogWarning("worker {Node}: capture of {Key} failed, serving cold: {Error}", node, name, e.Message);
                    return null;
                }
                throw;
            }
        }
        catch (Exception e) when (e is IOException or Akka.Actor.AskTimeoutException or TimeoutException)
        {
            // The function still runs cold; the next cold start tries to capture again. A lease granted after
            // we stopped waiting is handed back, so another worker need not wait for it to expire.
            registry.AbortCapture(new TemplateCommands.AbortCapture(name, node, e.Message));
            log.LogWarning("worker {Node}: capture of {Key} failed: {Error}", node, name, e.Message);
            return null;
        }
        finally
        {
            if (File.Exists(header))
                File.Delete(header);
        }
    }
}
