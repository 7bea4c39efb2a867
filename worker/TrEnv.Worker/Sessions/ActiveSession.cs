using TrEnv.Contracts;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Placement;

namespace TrEnv.Worker.Sessions;

/// <summary>A session live on this worker: its sandbox, the template its state is a delta over, and its idle clock.</summary>
public sealed class ActiveSession(string id, SandboxSlot<IsolatedSandbox> slot, string function, FunctionVersion version, TemplateInfo? baseTemplate, int idleTimeoutSeconds)
{
    private static readonly TimeSpan ReportAgain = TimeSpan.FromSeconds(30);
    private readonly Lock _idle = new();
    private DateTimeOffset _lastUsed = DateTimeOffset.UtcNow;
    private DateTimeOffset? _reportedIdleAt;

    public string Id { get; } = id;
    public SandboxSlot<IsolatedSandbox> Slot { get; } = slot;
    public string Function { get; } = function;
    public FunctionVersion Version { get; } = version;
    public TemplateInfo? Base { get; } = baseTemplate;

    /// <summary>Serializes the session's calls, pause and release.</summary>
    public SemaphoreSlim Gate { get; } = new(1, 1);

    public void Used()
    {
        lock (_idle)
        {
            _lastUsed = DateTimeOffset.UtcNow;
            _reportedIdleAt = null;
        }
    }

    /// <summary>Idle past its timeout and not reported in the last 30 s; marks it reported.</summary>
    public bool ShouldReportIdle(DateTimeOffset now)
    {
        lock (_idle)
        {
            if (idleTimeoutSeconds <= 0 || now - _lastUsed < TimeSpan.FromSeconds(idleTimeoutSeconds) || (_reportedIdleAt is { } at && now - at < ReportAgain))
                return false;
            _reportedIdleAt = now;
            return true;
        }
    }
}
