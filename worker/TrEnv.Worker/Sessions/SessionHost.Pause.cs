using System.Diagnostics;
using TrEnv.Cluster;
using Microsoft.Extensions.Logging;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Worker.Sessions;

/// <summary>
/// Pausing a session: its pages that differ from its base template are captured into a pool region of their
/// own, made durable, and the sandbox is reset for anyone. Until every step succeeds the session stays active.
/// A checkpoint is the same capture with the session left running; its calls wait only while it captures.
/// </summary>
public sealed partial class SessionHost
{
    public async Task<WorkerSessionReplies.Paused> PauseAsync(WorkerSessionCommands.Pause pause, CancellationToken ct)
    {
        using var span = NodeTelemetry.Worker.StartActivity(pause.KeepActive ? "trenv.worker.session.checkpoint" : "trenv.worker.session.pause",
            ActivityKind.Server, NodeTelemetry.ParentOf(pause.TraceParent));
        span?.SetTag("trenv.session", pause.SessionId);
        var paused = await PauseCoreAsync(pause, ct);
        span?.SetTag("trenv.stored_bytes", paused.Delta?.StoredBytes);
        if (!paused.Ok)
            span?.SetStatus(ActivityStatusCode.Error, paused.ErrorKind);
        return paused;
    }

    private async Task<WorkerSessionReplies.Paused> PauseCoreAsync(WorkerSessionCommands.Pause pause, CancellationToken ct)
    {
        if (Find(pause.SessionId) is not { } session)
            return new(pause.SessionId, false, null, 0, ErrorKinds.SessionLost, $"Worker {settings.Name} holds no instance of session {pause.SessionId}.", true);
        await session.Gate.WaitAsync(ct);
        var started = Stopwatch.GetTimestamp();
        var header = templates.Scratch($"session-{pause.SessionId}", "dlt");
        var what = pause.KeepActive ? "checkpoint" : "pause";
        var allocated = false;
        try
        {
            if (Find(pause.SessionId) != session)
                return new(pause.SessionId, false, null, 0, ErrorKinds.SessionLost, $"Session {pause.SessionId} was paused or ended meanwhile.", true);
            var sandbox = session.Slot.Sandbox.Process;
            var baseTemplate = pause.Base ?? session.Base;
            var basePath = baseTemplate is null ? null : templates.HeaderFile(baseTemplate);
            var maxFiles = settings.SessionMaxFilesMb * 1024L * 1024L;
            var capture = new Capture(poolPath, 0, 0, header, settings.Name, basePath, Delta: true, MaxFilesBytes: maxFiles);
            var done = await sandbox.CaptureAsync(capture, ct);
            if (done.FilesBytes > maxFiles)
                return new(pause.SessionId, false, null, 0, ErrorKinds.InputTooLarge,
                    $"The session's files under /tmp come to {done.FilesBytes / (1024.0 * 1024):F1} MiB, over TRENV_SESSION_MAX_FILES_MB ({settings.SessionMaxFilesMb}); " +
                    $"it stays active. Remove some and {what} again.", false);
            // The /tmp archive follows the pages in the region.
            var filesAt = done.RequiredBytes - done.FilesBytes;
            var region = new PoolRegion(0, 0);
            if (!done.Written)
            {
                var answer = await registry.AllocateAsync(pause.Owner, done.RequiredBytes, ct);
                if (answer is PoolReplies.Full { Quota: true } quota)
                    return new(pause.SessionId, false, null, 0, ErrorKinds.PoolQuota, $"The session stays active: {quota.Message}", false);
                if (answer is not PoolReplies.Allocated { Region: var r })
                    return new(pause.SessionId, false, null, 0, ErrorKinds.NoCapacity, $"The pool has no room for the session's {done.RequiredBytes >> 10} KiB: {(answer as PoolReplies.Full)?.Message}", false);
                allocated = true;
                region = r;
                done = await sandbox.CaptureAsync(capture with { RegionOffset = r.Offset, RegionLength = r.Length }, ct);
                if (!done.Written)
                    throw new IOException($"the session's delta grew to {done.RequiredBytes} bytes after its region was allocated");
                var written = TemplateHeader.Read(header);
                if (mirror is not null) // the sandbox wrote into the mirror
                    await mirror.UploadAsync(pause.Owner, written, ct, done.FilesBytes > 0 ? (filesAt, done.FilesBytes) : null);
                if (pause.Durable)
                {
                    var durable = await registry.SaveDurableAsync(pause.Owner, ct);
                    if (!durable.Ok)
                        throw new IOException(durable.Error ?? "the pool could not make the delta durable");
                }
            }
            var bytes = await File.ReadAllBytesAsync(header, ct);
            var delta = new SessionDelta(pause.Owner, region, bytes, baseTemplate, done.RequiredBytes, done.MemoryBytes, DateTimeOffset.UtcNow,
                done.DirtyPages * TemplateHeader.PageSize, filesAt, done.FilesBytes, done.FilesSha256);
            if (!pause.KeepActive)
            {
                Drop(session);
                await FreeSandboxAsync(session, ct);
            }
            var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            log.LogInformation("Session {SessionId} {Stored}: {StoredKiB} KiB stored of {MemoryKiB} KiB memory in {PauseUs} µs", pause.SessionId,
                pause.KeepActive ? "checkpointed" : "paused", done.RequiredBytes >> 10, done.MemoryBytes >> 10, micros);
            return new(pause.SessionId, true, delta, micros, null, null, false);
        }
        catch (SandboxException e)
        {
            if (allocated)
                registry.FreeRegion(pause.Owner);
            if (!e.InstanceDiscarded)
                return new(pause.SessionId, false, null, 0, e.Kind, $"The {what} failed: {e.Message}", false);
            Drop(session);
            pool.Discard(session.Slot, instanceGone: true);
            return new(pause.SessionId, false, null, 0, e.Kind, $"The session's instance failed while pausing: {e.Message}", true);
        }
        catch (Exception e) when (e is IOException or Akka.Actor.AskTimeoutException or TimeoutException or Grpc.Core.RpcException or TemplateInvalidException)
        {
            // The instance is intact: the session stays active here and the caller may pause again later.
            if (allocated)
                registry.FreeRegion(pause.Owner);
            return new(pause.SessionId, false, null, 0, ErrorKinds.Internal,
                $"The {what} failed, the session stays active on {settings.Name}: {e.Message}", false);
        }
        finally
        {
            session.Gate.Release();
            if (File.Exists(header))
                File.Delete(header);
        }
    }
}
