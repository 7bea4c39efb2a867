using TrEnv.Contracts;
using TrEnv.Coordinator.Sessions;

namespace TrEnv.Tests;

public sealed class SessionStateTests
{
    private static readonly DateTimeOffset T0 = DateTimeOffset.UnixEpoch;
    private static readonly FunctionVersion Version = new(2, new string('a', 64), 10, new FunctionLimits(128, 500, 4, new Dictionary<string, string>()), T0);
    private static readonly TemplateInfo Template = new("f@2", "f", 2, new string('a', 64), new PoolRegion(0, 8192), 2, 65536, "w1", T0, [1]);

    private static SessionState Active() => SessionState.Empty("s-1")
        .Apply(new SessionEvents.Created("s-1", "f", Version, 60, T0))
        .Apply(new SessionEvents.Activated("s-1", "w1", "akka://a", Template, 65536, 3.0, T0));

    private static SessionDelta Delta(int n) => new($"session-s-1-{n}", new PoolRegion(8192 * n, 4096), [9], Template, 4096, 131072, T0.AddSeconds(n));

    [Fact]
    public void A_session_moves_through_active_paused_and_active_again_counting_pauses_and_resumes()
    {
        var s = Active();
        Assert.Equal((SessionStates.Active, "w1", 0, 0), (s.Status, s.Node, s.Pauses, s.Resumes));
        Assert.Equal("session-s-1-1", s.NextDeltaOwner);
        s = s.Apply(new SessionEvents.Paused("s-1", Delta(1), "api", 4.0));
        Assert.Equal((SessionStates.Paused, 1, 4096L, 131072L), (s.Status, s.Pauses, s.ToInfo().StoredBytes, s.MemoryBytes));
        Assert.Equal("session-s-1-2", s.NextDeltaOwner); // a new region per pause: the durable one is never overwritten
        s = s.Apply(new SessionEvents.Activated("s-1", "w2", "akka://b", Template, 131072, 7.5, T0));
        var info = s.ToInfo();
        Assert.Equal((SessionStates.Active, "w2", 1, 7.5, 8192L), (info.State, info.Node, info.Resumes, info.LastResumeMs, info.TemplateBytes));
    }

    [Fact]
    public void Commands_are_refused_by_state_with_their_error_kind()
    {
        var none = SessionState.Empty("s-1");
        Assert.Null(none.Refusal(new SessionCommands.Create("s-1", "f", 60, "i")));
        Assert.Equal("not_found", none.Refusal(new SessionCommands.Invoke("s-1", "i", []))?.Kind);
        Assert.Equal("conflict", Active().Refusal(new SessionCommands.Create("s-1", "f", 60, "i"))?.Kind);
        Assert.Null(Active().Refusal(new SessionCommands.Invoke("s-1", "i", [])));
        var lost = Active().Apply(new SessionEvents.Lost("s-1", "Its worker died.", T0));
        Assert.Equal(ErrorKinds.SessionLost, lost.Refusal(new SessionCommands.Invoke("s-1", "i", []))?.Kind);
        Assert.Contains("Its worker died.", lost.Refusal(new SessionCommands.Resume("s-1", "i", null))?.Message, StringComparison.Ordinal);
        Assert.Null(lost.Refusal(new SessionCommands.Delete("s-1"))); // a lost session can still be deleted
        // Back to its last pause only when it has one, and only when asked for explicitly.
        Assert.Equal(ErrorKinds.SessionLost, lost.Refusal(new SessionCommands.Resume("s-1", "i", null, FromLastPause: true))?.Kind);
        var lostAfterPause = Active().Apply(new SessionEvents.Paused("s-1", Delta(1), "api", 1))
            .Apply(new SessionEvents.Activated("s-1", "w2", "akka://b", null, 131072, 2, T0))
            .Apply(new SessionEvents.Lost("s-1", "Its worker died.", T0));
        Assert.Null(lostAfterPause.Refusal(new SessionCommands.Resume("s-1", "i", null, FromLastPause: true)));
        Assert.Contains("fromLastPause=true", lostAfterPause.Refusal(new SessionCommands.Resume("s-1", "i", null))?.Message, StringComparison.Ordinal);
        Assert.Equal(SessionStates.Active, lostAfterPause.Apply(new SessionEvents.Activated("s-1", "w1", "akka://a", null, 131072, 2, T0)).Status);
        var deleted = lost.Apply(new SessionEvents.Deleted("s-1", T0));
        Assert.Equal("not_found", deleted.Refusal(new SessionCommands.Get("s-1"))?.Kind);
        Assert.Equal("not_found", deleted.Refusal(new SessionCommands.Delete("s-1"))?.Kind);
    }
    [Fact]
    public void A_checkpoint_stores_the_state_and_keeps_the_session_active_and_counts_calls_since()
    {
        var s = Active().Called(T0).Called(T0);
        Assert.Equal((2L, 2L), (s.Invocations, s.CallsSinceSaved));
        Assert.False(s.CanRecover);
        s = s.Apply(new SessionEvents.Checkpointed("s-1", Delta(1), "api", 2.5));
        Assert.Equal((SessionStates.Active, 1, 0, 0L, 2.5), (s.Status, s.Checkpoints, s.Pauses, s.CallsSinceSaved, s.LastCheckpointMs));
        Assert.Equal(Delta(1).PausedAt, s.LastCheckpointAt);
        Assert.True(s.CanRecover);
        // Each stored state gets its own region: pauses and checkpoints share one sequence.
        Assert.Equal("session-s-1-2", s.NextDeltaOwner);
        s = s.Called(T0).Apply(new SessionEvents.Paused("s-1", Delta(2), "api", 1));
        Assert.Equal("session-s-1-3", s.NextDeltaOwner);
        Assert.Equal(0L, s.ToInfo().CallsSinceSaved);

        // Read back from the journal while active, the calls since the checkpoint are not known.
        var replayed = Active().Apply(new SessionEvents.Checkpointed("s-1", Delta(1), "api", 2.5)).Recovered();
        Assert.Null(replayed.CallsSinceSaved);
        Assert.Null(replayed.Called(T0).CallsSinceSaved);
        Assert.Equal(0L, replayed.Apply(new SessionEvents.Checkpointed("s-1", Delta(2), "periodic", 1)).CallsSinceSaved);
    }

    [Fact]
    public void A_recovery_is_recorded_with_what_it_lost_and_the_session_is_active_again()
    {
        var s = Active().Apply(new SessionEvents.Checkpointed("s-1", Delta(1), "api", 1)).Called(T0).Called(T0).Called(T0)
            .Apply(new SessionEvents.Lost("s-1", "Its worker died.", T0));
        var recovery = new SessionRecovery(T0.AddSeconds(9), s.LastSavedAt!.Value, s.CallsSinceSaved, s.Error!, "w1");
        s = s.Apply(new SessionEvents.Recovered("s-1", recovery)).Apply(new SessionEvents.Activated("s-1", "w2", "akka://b", null, 131072, 4, T0.AddSeconds(9)));
        var info = s.ToInfo();
        Assert.Equal((SessionStates.Active, "w2", 1, 1), (info.State, info.Node, info.Recoveries, info.Resumes));
        Assert.Equal(3L, info.LastRecovery!.LostCalls);
        Assert.Equal(Delta(1).PausedAt, info.LastRecovery.CheckpointAt);
        Assert.Null(info.Error);
    }

    [Fact]
    public void A_forked_child_starts_paused_at_its_parents_delta_and_releases_it_rather_than_freeing_it()
    {
        var shared = Delta(1) with { Owner = "session-s-1-fork-ab" };
        var child = SessionState.Empty("s-2").Apply(new SessionEvents.Forked("s-2", "s-1", "f", Version, 30, 5, shared, T0));
        var info = child.ToInfo();
        Assert.Equal((SessionStates.Paused, "s-1", 30, 5), (info.State, info.ForkedFrom, info.IdleTimeoutSeconds, info.CheckpointEveryS));
        Assert.Equal("session-s-2-1", child.NextDeltaOwner); // its own pauses go to regions of its own
        Assert.Equal(new PoolCommands.Release(PoolCommands.DefaultPool, "session-s-1-fork-ab", "s-2"), child.LetGo(shared));
        var own = Delta(2) with { Owner = "session-s-2-1" };
        Assert.Equal(new PoolCommands.Free(PoolCommands.DefaultPool, "session-s-2-1"), child.LetGo(own));
        Assert.Equal("conflict", child.Refusal(new SessionCommands.CreateFork("s-2", "s-1", "f", Version, shared, 30, 5))?.Kind);
        Assert.Null(SessionState.Empty("s-3").Refusal(new SessionCommands.CreateFork("s-3", "s-1", "f", Version, shared, 30, 5)));
        Assert.Null(Active().Refusal(new SessionCommands.Fork("s-1", "o")));
        Assert.Equal(ErrorKinds.SessionLost, Active().Apply(new SessionEvents.Lost("s-1", "x", T0)).Refusal(new SessionCommands.Fork("s-1", "o"))?.Kind);
    }

    [Fact]
    public void Periodic_checkpoints_follow_calls_at_most_once_per_interval()
    {
        var s = SessionState.Empty("s-1").Apply(new SessionEvents.Created("s-1", "f", Version, 60, T0, CheckpointEverySeconds: 10))
            .Apply(new SessionEvents.Activated("s-1", "w1", "akka://a", Template, 65536, 3.0, T0));
        Assert.Null(SessionCheckpoints.Delay(s, T0)); // nothing ran yet
        s = s.Called(T0);
        Assert.Equal(TimeSpan.Zero, SessionCheckpoints.Delay(s, T0)); // the first call is stored at once
        s = s.Apply(new SessionEvents.Checkpointed("s-1", Delta(1), SessionCheckpoints.Periodic, 1)); // captured at T0 + 1 s
        Assert.Null(SessionCheckpoints.Delay(s, T0.AddSeconds(2)));
        s = s.Called(T0.AddSeconds(2));
        Assert.Equal(TimeSpan.FromSeconds(9), SessionCheckpoints.Delay(s, T0.AddSeconds(2)));
        Assert.Equal(TimeSpan.Zero, SessionCheckpoints.Delay(s, T0.AddSeconds(30)));
        // Paused, lost or without an interval: none.
        Assert.Null(SessionCheckpoints.Delay(s.Apply(new SessionEvents.Paused("s-1", Delta(2), "api", 1)), T0.AddSeconds(30)));
        Assert.Null(SessionCheckpoints.Delay(s.Apply(new SessionEvents.Lost("s-1", "x", T0)), T0.AddSeconds(30)));
        Assert.Null(SessionCheckpoints.Delay(Active().Called(T0), T0));
        // Unknown calls since (read back from the journal) count as changed.
        Assert.Equal(TimeSpan.Zero, SessionCheckpoints.Delay(s.Apply(new SessionEvents.Checkpointed("s-1", Delta(2), "api", 1)).Recovered(), T0.AddSeconds(30)));
    }

    private static SessionState InState(string state) => state switch
    {
        "none" => SessionState.Empty("s-1"),
        "active" => Active(),
        "paused" => Active().Apply(new SessionEvents.Paused("s-1", Delta(1), "api", 1)),
        "lost" => Active().Apply(new SessionEvents.Lost("s-1", "Its worker died.", T0)),
        "lost-after-pause" => Active().Apply(new SessionEvents.Paused("s-1", Delta(1), "api", 1))
            .Apply(new SessionEvents.Activated("s-1", "w2", "akka://b", null, 131072, 2, T0))
            .Apply(new SessionEvents.Lost("s-1", "Its worker died.", T0)),
        "deleted" => Active().Apply(new SessionEvents.Deleted("s-1", T0)),
        "lost-after-checkpoint" => Active().Apply(new SessionEvents.Checkpointed("s-1", Delta(1), "api", 1))
            .Apply(new SessionEvents.Lost("s-1", "Its worker died.", T0)),
        _ => throw new ArgumentOutOfRangeException(nameof(state)),
    };

    private static SessionCommands.ISessionCommand Command(string command) => command switch
    {
        "create" => new SessionCommands.Create("s-1", "f", 60, "i"),
        "invoke" => new SessionCommands.Invoke("s-1", "i", []),
        "pause" => new SessionCommands.Pause("s-1", "api"),
        "resume" => new SessionCommands.Resume("s-1", "i", null),
        "resume-from-last-pause" => new SessionCommands.Resume("s-1", "i", null, FromLastPause: true),
        "get" => new SessionCommands.Get("s-1"),
        "delete" => new SessionCommands.Delete("s-1"),
        "idle-expired" => new SessionCommands.IdleExpired("s-1", "w1", "akka://a"),
        "checkpoint" => new SessionCommands.Checkpoint("s-1", "api"),
        _ => throw new ArgumentOutOfRangeException(nameof(command)),
    };

    // Every command in every state: null is "runs", otherwise the error kind it is refused with.
    [Theory]
    [InlineData("none", "create", null)]
    [InlineData("none", "invoke", "not_found")]
    [InlineData("none", "pause", "not_found")]
    [InlineData("none", "resume", "not_found")]
    [InlineData("none", "resume-from-last-pause", "not_found")]
    [InlineData("none", "get", "not_found")]
    [InlineData("none", "delete", "not_found")]
    [InlineData("none", "idle-expired", "not_found")]
    [InlineData("active", "create", "conflict")]
    [InlineData("active", "invoke", null)]
    [InlineData("active", "pause", null)]
    [InlineData("active", "resume", null)]
    [InlineData("active", "resume-from-last-pause", null)]
    [InlineData("active", "get", null)]
    [InlineData("active", "delete", null)]
    [InlineData("active", "idle-expired", null)]
    [InlineData("paused", "create", "conflict")]
    [InlineData("paused", "invoke", null)]
    [InlineData("paused", "pause", null)]
    [InlineData("paused", "resume", null)]
    [InlineData("paused", "resume-from-last-pause", null)]
    [InlineData("paused", "get", null)]
    [InlineData("paused", "delete", null)]
    [InlineData("paused", "idle-expired", null)]
    [InlineData("lost", "create", "conflict")]
    [InlineData("lost", "invoke", ErrorKinds.SessionLost)]
    [InlineData("lost", "pause", ErrorKinds.SessionLost)]
    [InlineData("lost", "resume", ErrorKinds.SessionLost)]
    [InlineData("lost", "resume-from-last-pause", ErrorKinds.SessionLost)]
    [InlineData("lost", "get", null)]
    [InlineData("lost", "delete", null)]
    [InlineData("lost", "idle-expired", null)]
    [InlineData("lost-after-pause", "invoke", ErrorKinds.SessionLost)]
    [InlineData("lost-after-pause", "resume", ErrorKinds.SessionLost)]
    [InlineData("lost-after-pause", "resume-from-last-pause", null)]
    [InlineData("lost-after-pause", "delete", null)]
    [InlineData("none", "checkpoint", "not_found")]
    [InlineData("active", "checkpoint", null)]
    [InlineData("paused", "checkpoint", null)]
    [InlineData("lost", "checkpoint", ErrorKinds.SessionLost)]
    [InlineData("lost-after-pause", "checkpoint", ErrorKinds.SessionLost)]
    [InlineData("lost-after-checkpoint", "invoke", null)]
    [InlineData("lost-after-checkpoint", "resume", null)]
    [InlineData("lost-after-checkpoint", "resume-from-last-pause", null)]
    [InlineData("lost-after-checkpoint", "pause", ErrorKinds.SessionLost)]
    [InlineData("lost-after-checkpoint", "checkpoint", ErrorKinds.SessionLost)]
    [InlineData("lost-after-checkpoint", "delete", null)]
    [InlineData("deleted", "checkpoint", "not_found")]
    [InlineData("deleted", "create", "conflict")]
    [InlineData("deleted", "invoke", "not_found")]
    [InlineData("deleted", "pause", "not_found")]
    [InlineData("deleted", "resume", "not_found")]
    [InlineData("deleted", "resume-from-last-pause", "not_found")]
    [InlineData("deleted", "get", "not_found")]
    [InlineData("deleted", "delete", "not_found")]
    [InlineData("deleted", "idle-expired", "not_found")]
    public void Each_command_runs_or_is_refused_by_the_state_it_meets(string state, string command, string? refusedAs)
        => Assert.Equal(refusedAs, InState(state).Refusal(Command(command))?.Kind);
}
