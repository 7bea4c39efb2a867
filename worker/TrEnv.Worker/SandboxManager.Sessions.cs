using System.Diagnostics;
using Microsoft.Extensions.Logging;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Worker;

/// <summary>
/// Agent sessions on this worker: a sandbox bound to one session until it pauses (captured as a delta over
/// the function's template into the pool, made durable, then the sandbox is reset for anyone) or ends.
/// Every operation on one session runs under its own gate, so calls never overlap inside the instance.
/// </summary>
public sealed partial class SandboxManager
{
    private readonly Dictionary<string, SessionSlot> _sessions = new(StringComparer.Ordinal);

    /// <summary>This worker's cluster address, reported with idle sessions.</summary>
    public string Address { get; set; } = "";

    private sealed class SessionSlot(string id, Slot slot, string function, FunctionVersion version, TemplateInfo? baseTemplate, int idleTimeoutSeconds)
    {
        public string Id { get; } = id;
        public Slot Slot { get; } = slot;
        public string Function { get; } = function;
        public FunctionVersion Version { get; } = version;
        public TemplateInfo? Base { get; } = baseTemplate;
        public int IdleTimeoutSeconds { get; } = idleTimeoutSeconds;
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public DateTimeOffset LastUsed = DateTimeOffset.UtcNow;
        public DateTimeOffset? ReportedIdleAt;
    }

    public async Task<WorkerSessionReplies.Started> StartSessionAsync(WorkerSessionCommands.Start start, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var key = TemplateCommands.KeyOf(start.Function, start.Version.Version);
        lock (_gate)
        {
            if (_sessions.TryGetValue(start.SessionId, out var existing))
                return new(start.SessionId, true, _settings.Name, "active", 0, 0, existing.Base, null, null, null); // a retried start
        }
        var (layer, runtime, unprepared) = await PrepareAsync(start.Function, start.Version, ct);
        if (unprepared is { } why)
            return StartFailed(start, why.Kind, why.Message);
        var (slot, sandbox) = await AcquireAsync(key, start.Version.Limits.Network, reuse: false);
        if (slot is null)
            return StartFailed(start, ErrorKinds.NoCapacity, NoRoom(sandbox));
        slot.Serving = key;
        slot.Session = start.SessionId;
        try
        {
            var request = new WorkerInvoke(start.InvocationId, start.Function, start.Version, start.Template, []);
            var (kind, captured) = await LoadAsync(slot, request, key, layer, runtime, ct, start.Delta);
            // The template this instance's state is compared against when it pauses.
            var baseTemplate = kind switch
            {
                "resume" => start.Delta!.Base,
                _ => captured ?? start.Template ?? LocalTemplate(key),
            };
            var session = new SessionSlot(start.SessionId, slot, start.Function, start.Version, baseTemplate, start.IdleTimeoutSeconds);
            lock (_gate)
                _sessions[start.SessionId] = session;
            var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            _log.LogInformation("Session {SessionId} of {Function} v{Version}: {Start} start in {Sandbox} sandbox {Pid}, {StartupUs} µs",
                start.SessionId, start.Function, start.Version.Version, kind, sandbox, slot.Process.Pid, micros);
            return new(start.SessionId, true, _settings.Name, kind, micros, slot.LoadedMemoryBytes, baseTemplate, captured, null, null);
        }
        catch (SandboxException e)
        {
            Logs.Append(start.Function, start.Version.Version, e.Stdout, e.Stderr);
            slot.Session = null;
            Discard(slot, e);
            return StartFailed(start, e.Kind, e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or Grpc.Core.RpcException or TemplateInvalidException)
        {
            slot.Session = null;
            slot.Process.Kill();
            Discard(slot, null);
            return StartFailed(start, e is Grpc.Core.RpcException ? ErrorKinds.NoCapacity : ErrorKinds.Internal,
                $"Worker {_settings.Name} could not start the session: {e.Message}");
        }
    }

    public async Task<WorkerSessionReplies.Invoked> InvokeSessionAsync(WorkerSessionCommands.Invoke invoke, CancellationToken ct)
    {
        var session = Find(invoke.SessionId);
        if (session is null)
            return new(SessionResult(invoke.InvocationId, false, [], 0, ErrorKinds.SessionLost, $"Worker {_settings.Name} holds no instance of session {invoke.SessionId}."), true);
        await session.Gate.WaitAsync(ct);
        try
        {
            if (Find(invoke.SessionId) != session)
                return new(SessionResult(invoke.InvocationId, false, [], 0, ErrorKinds.SessionLost, $"Session {invoke.SessionId} was paused or ended meanwhile."), true);
            try
            {
                var result = await session.Slot.Process.InvokeAsync(invoke.Input, TimeSpan.FromMilliseconds(session.Version.Limits.TimeoutMs), ct, invoke.InvocationId);
                Logs.Append(session.Function, session.Version.Version, result.Stdout, result.Stderr);
                session.LastUsed = DateTimeOffset.UtcNow;
                session.ReportedIdleAt = null;
                return new(SessionResult(invoke.InvocationId, true, result.Output, result.ExecMicros, null, null), false);
            }
            catch (SandboxException e)
            {
                Logs.Append(session.Function, session.Version.Version, e.Stdout, e.Stderr);
                session.LastUsed = DateTimeOffset.UtcNow;
                if (e.Kind == ErrorKinds.Exception && !e.InstanceDiscarded)
                    return new(SessionResult(invoke.InvocationId, false, [], 0, e.Kind, e.Message), false); // the script raised; its state is intact
                Drop(session);
                session.Slot.Session = null;
                Discard(session.Slot, e);
                return new(SessionResult(invoke.InvocationId, false, [], 0, e.Kind, e.Message), true);
            }
        }
        finally
        {
            session.Gate.Release();
        }
    }

    public async Task<WorkerSessionReplies.Paused> PauseSessionAsync(WorkerSessionCommands.Pause pause, CancellationToken ct)
    {
        var session = Find(pause.SessionId);
        if (session is null)
            return new(pause.SessionId, false, null, 0, ErrorKinds.SessionLost, $"Worker {_settings.Name} holds no instance of session {pause.SessionId}.", true);
        await session.Gate.WaitAsync(ct);
        var started = Stopwatch.GetTimestamp();
        var header = Path.Combine(_templates, $"session-{pause.SessionId}.{Guid.NewGuid():N}.dlt");
        var allocated = false;
        try
        {
            if (Find(pause.SessionId) != session)
                return new(pause.SessionId, false, null, 0, ErrorKinds.SessionLost, $"Session {pause.SessionId} was paused or ended meanwhile.", true);
            var baseTemplate = pause.Base ?? session.Base;
            var basePath = baseTemplate is null ? null : TemplateFile(baseTemplate);
            var capture = new Capture(_poolPath, 0, 0, header, _settings.Name, basePath, Delta: true);
            var done = await session.Slot.Process.CaptureAsync(capture, ct);
            var region = new PoolRegion(0, 0);
            if (!done.Written)
            {
                var answer = await _registry.AllocateAsync(pause.Owner, done.RequiredBytes, ct);
                if (answer is PoolReplies.Full { Quota: true } quota)
                    return new(pause.SessionId, false, null, 0, ErrorKinds.PoolQuota, $"The session stays active: {quota.Message}", false);
                if (answer is not PoolReplies.Allocated { Region: var r })
                    return new(pause.SessionId, false, null, 0, ErrorKinds.NoCapacity, $"The pool has no room for the session's {done.RequiredBytes >> 10} KiB: {(answer as PoolReplies.Full)?.Message}", false);
                allocated = true;
                region = r;
                done = await session.Slot.Process.CaptureAsync(capture with { RegionOffset = r.Offset, RegionLength = r.Length }, ct);
                if (!done.Written)
                    throw new IOException($"the session's delta grew to {done.RequiredBytes} bytes after its region was allocated");
                var written = TemplateHeader.Read(header);
                if (_cache is not null)
                    await _cache.UploadAsync(pause.Owner, written, ct); // the sandbox wrote into the mirror
                var durable = await _registry.SaveDurableAsync(pause.Owner, ct);
                if (!durable.Ok)
                    throw new IOException(durable.Error ?? "the pool could not make the delta durable");
            }
            var bytes = await File.ReadAllBytesAsync(header, ct);
            var delta = new SessionDelta(pause.Owner, region, bytes, baseTemplate, done.RequiredBytes, done.MemoryBytes, DateTimeOffset.UtcNow,
                done.DirtyPages * TemplateHeader.PageSize);
            Drop(session);
            await FreeSessionSlotAsync(session, ct);
            var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            _log.LogInformation("Session {SessionId} paused: {StoredKiB} KiB stored of {MemoryKiB} KiB memory in {PauseUs} µs", pause.SessionId, done.RequiredBytes >> 10, done.MemoryBytes >> 10, micros);
            return new(pause.SessionId, true, delta, micros, null, null, false);
        }
        catch (SandboxException e)
        {
            if (allocated)
                _registry.FreeRegion(pause.Owner);
            if (!e.InstanceDiscarded)
                return new(pause.SessionId, false, null, 0, e.Kind, $"The pause failed: {e.Message}", false);
            Drop(session);
            session.Slot.Session = null;
            Discard(session.Slot, e);
            return new(pause.SessionId, false, null, 0, e.Kind, $"The session's instance failed while pausing: {e.Message}", true);
        }
        catch (Exception e) when (e is IOException or Akka.Actor.AskTimeoutException or TimeoutException or Grpc.Core.RpcException or TemplateInvalidException)
        {
            // The instance is intact: the session stays active here and the caller may pause again later.
            if (allocated)
                _registry.FreeRegion(pause.Owner);
            return new(pause.SessionId, false, null, 0, ErrorKinds.Internal, $"The pause failed, the session stays active on {_settings.Name}: {e.Message}", false);
        }
        finally
        {
            session.Gate.Release();
            if (File.Exists(header))
                File.Delete(header);
        }
    }

    public async Task<WorkerSessionReplies.Released> ReleaseSessionAsync(WorkerSessionCommands.Release release, CancellationToken ct)
    {
        var session = Find(release.SessionId);
        if (session is null)
            return new(release.SessionId, false);
        await session.Gate.WaitAsync(ct);
        try
        {
            if (Find(release.SessionId) != session)
                return new(release.SessionId, false);
            Drop(session);
            await FreeSessionSlotAsync(session, ct);
            return new(release.SessionId, true);
        }
        finally
        {
            session.Gate.Release();
        }
    }

    // Sessions idle past their timeout are reported to their entity (which pauses them), again every 30 s until it does.
    private void ReportIdleSessions()
    {
        var now = DateTimeOffset.UtcNow;
        List<SessionSlot> idle;
        lock (_gate)
        {
            idle = _sessions.Values.Where(s => s.IdleTimeoutSeconds > 0 && now - s.LastUsed >= TimeSpan.FromSeconds(s.IdleTimeoutSeconds)
                && (s.ReportedIdleAt is null || now - s.ReportedIdleAt >= TimeSpan.FromSeconds(30))).ToList();
            foreach (var s in idle)
                s.ReportedIdleAt = now;
        }
        foreach (var s in idle)
            _registry.SessionIdle(new SessionCommands.IdleExpired(s.Id, _settings.Name, Address));
    }

    private SessionSlot? Find(string id)
    {
        lock (_gate)
            return _sessions.GetValueOrDefault(id);
    }

    private void Drop(SessionSlot session)
    {
        lock (_gate)
        {
            if (_sessions.GetValueOrDefault(session.Id) == session)
                _sessions.Remove(session.Id);
        }
    }

    private async Task FreeSessionSlotAsync(SessionSlot session, CancellationToken ct)
    {
        session.Slot.Session = null;
        await ResetToGenericAsync([session.Slot], ct);
        ReportMappings();
    }

    private async Task<(LoadSource Source, string? TemplatePath, bool Verify, string DeltaPath)> PrepareResumeAsync(SessionDelta delta, string? poolIdentity, CancellationToken ct)
    {
        var source = delta.Base is null ? LoadSource.CopyTemplate : LoadSource.MapTemplate;
        var verify = false;
        if (delta.Base is { } baseTemplate)
        {
            lock (_gate)
                verify = _verified.Add($"{baseTemplate.Key}/{baseTemplate.SealedAt.ToUnixTimeMilliseconds()}/{poolIdentity}");
            if (_cache?.PageSocket is not null)
            {
                await _cache.PrepareLazyAsync(baseTemplate, _settings.PoolFetch == "prefetch", ct);
                source = LoadSource.LazyTemplate;
                verify = false;
            }
            else if (_cache is not null)
            {
                await _cache.EnsureAsync(baseTemplate, ct);
            }
        }
        // The delta's own pages: fetched whole (they are the session's, nobody shares them), checked on copy-in.
        if (_cache is not null && delta.Region.Length > 0)
            await _cache.EnsureAsync(new TemplateInfo(delta.Owner, "", 0, "", delta.Region, 0, delta.MemoryBytes, "", delta.PausedAt, delta.Header), ct);
        var deltaPath = Path.Combine(_templates, $"resume-{Guid.NewGuid():N}.dlt");
        await File.WriteAllBytesAsync(deltaPath, delta.Header, ct);
        return (source, delta.Base is null ? null : TemplateFile(delta.Base), verify, deltaPath);
    }

    private WorkerInvokeResult SessionResult(string invocationId, bool ok, byte[] output, long execMicros, string? kind, string? message)
        => new(invocationId, ok, output, "warm", "session", _settings.Name, 0, execMicros, kind, message, null);

    private WorkerSessionReplies.Started StartFailed(WorkerSessionCommands.Start start, string kind, string message)
    {
        LogFailed(_log, start.InvocationId, start.Function, start.Version.Version, kind, start.Delta is null ? "session" : "resume", message);
        return new(start.SessionId, false, _settings.Name, start.Delta is null ? "cold" : "resume", 0, 0, null, null, kind, message);
    }
}
