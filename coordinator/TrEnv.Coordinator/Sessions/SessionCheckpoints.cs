using TrEnv.Contracts;

namespace TrEnv.Coordinator.Sessions;

/// <summary>
/// When a session created with a checkpoint interval is checkpointed by itself: after calls changed its state,
/// at most once per interval, the first time right after its first call.
/// </summary>
public static class SessionCheckpoints
{
    public const string Periodic = "periodic";

    /// <summary>The longest interval: the entity (and its timer) may passivate after 10 minutes without messages.</summary>
    public const int MaxEverySeconds = 300;

    /// <summary>How long until the next periodic checkpoint is due (zero: now), or null when none is needed.</summary>
    public static TimeSpan? Delay(SessionState st, DateTimeOffset now)
    {
        if (st.CheckpointEverySeconds <= 0 || st.Status != SessionStates.Active || st.CallsSinceSaved == 0)
            return null;
        if (st.LastCheckpointAt is not { } last)
            return TimeSpan.Zero;
        var due = last + TimeSpan.FromSeconds(st.CheckpointEverySeconds) - now;
        return due > TimeSpan.Zero ? due : TimeSpan.Zero;
    }
}
