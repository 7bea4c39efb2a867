using TrEnv.Contracts;
using TrEnv.Worker.Placement;

namespace TrEnv.Worker.UnitTests;

public sealed class SandboxPoolTests
{
    private static readonly FunctionVersionKey A = new("a", 1), B = new("b", 1), C = new("c", 1);

    private readonly FakeFactory _factory = new();
    private readonly ManualClock _clock = new();

    private SandboxPool<FakeSandbox> Pool(int max = 4) => new(_factory, max, _clock);

    // A call of key: acquire, load when the slot does not hold it, release warm; the clock moves on.
    private async Task<Acquisition<FakeSandbox>> CallAsync(SandboxPool<FakeSandbox> pool, FunctionVersionKey key, bool atMemoryBound = false)
    {
        var acquired = await pool.AcquireAsync(key, network: false, atMemoryBound: () => atMemoryBound);
        var slot = acquired.Slot ?? throw new InvalidOperationException($"refused: {acquired.Refused}");
        if (slot.Instance?.Key != key)
        {
            pool.BeginLoad(slot);
            pool.CompleteLoad(slot, new LoadedInstance(key, 1 << 20, null, 0));
        }
        Assert.True(pool.Release(slot));
        _clock.Advance(TimeSpan.FromSeconds(1));
        return acquired;
    }

    [Fact]
    public async Task A_warm_instance_of_the_same_version_is_reused_without_a_start_or_a_load()
    {
        var pool = Pool();
        var first = await CallAsync(pool, A);
        var second = await pool.AcquireAsync(A, network: false);

        Assert.Equal(SandboxOrigin.New, first.Origin);
        Assert.Equal(SandboxOrigin.Reused, second.Origin);
        Assert.Same(first.Slot, second.Slot);
        Assert.Equal(A, second.Slot!.Instance!.Key);
        Assert.Single(_factory.Started);
    }

    [Fact]
    public async Task The_memory_bound_is_read_only_when_no_warm_instance_is_there_to_reuse()
    {
        var pool = Pool();
        var reads = 0;
        bool Bound()
        {
            reads++;
            return false;
        }
        await CallAsync(pool, A);
        var reused = await pool.AcquireAsync(A, network: false, atMemoryBound: Bound);
        Assert.Equal((SandboxOrigin.Reused, 0), (reused.Origin, reads));
        // Busy is not warm: a second call of A, a call of B and a session all ask.
        Assert.Equal(SandboxOrigin.New, (await pool.AcquireAsync(A, network: false, atMemoryBound: Bound)).Origin);
        Assert.Equal(1, reads);
        Assert.True(pool.Release(reused.Slot!));
        await pool.AcquireAsync(B, network: false, atMemoryBound: Bound);
        await pool.AcquireAsync(A, network: false, reuse: false, atMemoryBound: Bound);
        Assert.Equal(3, reads);
    }

    [Fact]
    public async Task A_pre_started_generic_sandbox_serves_as_new_and_needs_no_reset()
    {
        var pool = Pool();
        Assert.Equal(2, pool.ReservePrestart(target: 2, returning: 0));
        await pool.PrestartAsync();
        await pool.PrestartAsync();
        Assert.Equal(2, pool.IdleGenericCount);

        var acquired = await pool.AcquireAsync(A, network: false);

        Assert.Equal(SandboxOrigin.New, acquired.Origin);
        Assert.False(pool.BeginLoad(acquired.Slot!));
        Assert.Equal(2, _factory.Started.Count);
        Assert.Equal(1, pool.IdleGenericCount);
    }

    [Fact]
    public async Task A_reset_sandbox_is_repurposed_for_another_function_without_a_second_reset()
    {
        var pool = Pool();
        var a = await CallAsync(pool, A);
        await pool.ResetToGenericAsync(pool.TakeWarm(_ => true), CancellationToken.None);

        var b = await pool.AcquireAsync(B, network: false);

        Assert.Same(a.Slot, b.Slot);
        Assert.Equal(SandboxOrigin.Repurposed, b.Origin);
        Assert.False(pool.BeginLoad(b.Slot!)); // reset already when it went back to generic
        Assert.Single(_factory.Reset);
    }

    [Fact]
    public async Task Below_the_sandbox_bound_a_new_sandbox_starts_rather_than_switching_a_warm_one()
    {
        var pool = Pool(max: 2);
        var a = await CallAsync(pool, A);

        var b = await pool.AcquireAsync(B, network: false);

        Assert.Equal(SandboxOrigin.New, b.Origin);
        Assert.NotSame(a.Slot, b.Slot);
        Assert.Equal(2, _factory.Started.Count);
    }

    [Fact]
    public async Task At_the_sandbox_bound_the_least_recently_used_warm_instance_is_switched_and_reset_at_its_load()
    {
        var pool = Pool(max: 2);
        var a = await CallAsync(pool, A);
        var b = await CallAsync(pool, B);
        await CallAsync(pool, A); // A is now the most recently used

        var c = await pool.AcquireAsync(C, network: false);

        Assert.Equal(SandboxOrigin.Repurposed, c.Origin);
        Assert.Same(b.Slot, c.Slot);
        Assert.True(pool.BeginLoad(c.Slot!)); // it still holds B's instance
        Assert.Null(c.Slot!.Instance);
        Assert.Equal(2, _factory.Started.Count);
        Assert.Equal(SandboxOrigin.Reused, (await pool.AcquireAsync(A, network: false)).Origin);
        Assert.NotSame(a.Slot, c.Slot);
    }

    [Fact]
    public async Task At_the_sandbox_bound_with_every_sandbox_busy_the_call_is_refused_and_nothing_starts()
    {
        var pool = Pool(max: 1);
        Assert.NotNull((await pool.AcquireAsync(A, network: false)).Slot);

        var refused = await pool.AcquireAsync(B, network: false);

        Assert.Null(refused.Slot);
        Assert.Equal(NoRoom.Sandboxes, refused.Refused);
        Assert.Single(_factory.Started);
        Assert.Equal(1, pool.Busy);
    }

    [Fact]
    public async Task At_the_memory_bound_a_warm_instance_is_switched_and_without_one_the_call_is_refused()
    {
        var pool = Pool(max: 8);
        var a = await CallAsync(pool, A);

        var b = await pool.AcquireAsync(B, network: false, atMemoryBound: () => true);
        var c = await pool.AcquireAsync(C, network: false, atMemoryBound: () => true);

        Assert.Same(a.Slot, b.Slot);
        Assert.Equal(SandboxOrigin.Repurposed, b.Origin);
        Assert.Null(c.Slot);
        Assert.Equal(NoRoom.Memory, c.Refused);
        Assert.Single(_factory.Started);
    }

    [Fact]
    public async Task Eviction_takes_idle_sandboxes_least_recently_used_first_until_under_the_bound_and_never_busy_ones()
    {
        var pool = Pool();
        var a = await CallAsync(pool, A);
        var b = await CallAsync(pool, B);
        var c = await CallAsync(pool, C);
        var busy = await pool.AcquireAsync(new FunctionVersionKey("d", 1), network: false);
        var charged = pool.All().ToDictionary(s => s, _ => 100L);

        var victims = pool.TakeForEviction(charged, bound: 250);

        Assert.Equal([a.Slot!, b.Slot!], victims);
        Assert.DoesNotContain(busy.Slot!, victims);
        Assert.Equal(2, pool.All().Count);
        Assert.Equal(SandboxOrigin.Reused, (await pool.AcquireAsync(C, network: false)).Origin);
    }

    [Fact]
    public async Task A_session_never_takes_a_warm_instance_and_its_sandbox_is_never_switched_evicted_or_reclaimed()
    {
        var pool = Pool(max: 2);
        var warm = await CallAsync(pool, A);

        var session = await pool.AcquireAsync(A, network: false, reuse: false);
        pool.BindSession(session.Slot!, "s1");
        pool.BeginLoad(session.Slot!);
        pool.CompleteLoad(session.Slot!, new LoadedInstance(A, 1 << 20, null, 0)); // it holds A too, yet is no one's warm A

        Assert.NotSame(warm.Slot, session.Slot);
        Assert.Equal(SandboxOrigin.New, session.Origin);
        Assert.Equal(SlotState.Session, session.Slot!.State);
        var switched = await pool.AcquireAsync(B, network: false); // at the bound: the warm instance is switched, never the session
        Assert.Same(warm.Slot, switched.Slot);
        Assert.Null((await pool.AcquireAsync(A, network: false)).Slot); // not even for a call of the version it holds
        Assert.Empty(pool.TakeForEviction(pool.All().ToDictionary(s => s, _ => 1L << 30), bound: 0));
        Assert.Empty(pool.TakeWarm(key => key == A));
        Assert.Equal("session", pool.View().Slots.Single(s => s.Slot == session.Slot).State);

        await pool.ResetToGenericAsync([session.Slot!], CancellationToken.None);
        Assert.Null(session.Slot!.Session);
        Assert.Equal(SlotState.Idle, session.Slot.State);
    }

    [Fact]
    public async Task A_failed_instance_goes_back_to_generic_while_its_process_lives_and_is_destroyed_otherwise()
    {
        var pool = Pool();
        var first = (await pool.AcquireAsync(A, network: false)).Slot!;
        var second = (await pool.AcquireAsync(B, network: false)).Slot!;
        pool.BeginLoad(first);
        pool.BeginLoad(second);

        pool.Discard(first, instanceGone: true);
        second.Sandbox.IsAlive = false;
        pool.Discard(second, instanceGone: true);

        Assert.Equal(1, pool.IdleGenericCount);
        Assert.Equal([second.Sandbox], _factory.Destroyed);
        var again = await pool.AcquireAsync(C, network: false);
        Assert.Same(first, again.Slot);
        Assert.True(pool.BeginLoad(first)); // dirty: reset with its next load
    }

    [Fact]
    public async Task A_failed_reset_discards_the_sandbox_or_keeps_it_generic_when_only_its_instance_was_lost()
    {
        var pool = Pool();
        var a = await CallAsync(pool, A);
        var b = await CallAsync(pool, B);

        _factory.NextReset = ResetOutcome.SandboxLost;
        await pool.ResetToGenericAsync(pool.TakeWarm(k => k == A), CancellationToken.None);
        _factory.NextReset = ResetOutcome.InstanceLost;
        await pool.ResetToGenericAsync(pool.TakeWarm(k => k == B), CancellationToken.None);

        Assert.Equal([a.Slot!.Sandbox], _factory.Destroyed);
        Assert.Single(pool.All());
        Assert.Equal(1, pool.IdleGenericCount);
        Assert.Same(b.Slot, (await pool.AcquireAsync(C, network: false)).Slot);
    }

    [Fact]
    public async Task A_forgotten_version_loses_its_warm_instances_and_a_call_of_it_running_meanwhile_does_not_stay_warm()
    {
        var pool = Pool();
        await CallAsync(pool, A);
        var running = (await pool.AcquireAsync(new FunctionVersionKey("a", 1), network: false)).Slot!; // reuses A's instance
        var other = await CallAsync(pool, new FunctionVersionKey("a", 2));

        var taken = pool.Forget("a", belowVersion: 2);

        Assert.Empty(taken); // A's only instance is busy
        Assert.True(pool.IsServingForgotten("a"));
        Assert.False(pool.Release(running));
        Assert.False(pool.IsForgotten(new FunctionVersionKey("a", 2)));
        Assert.Equal(SandboxOrigin.Reused, (await pool.AcquireAsync(new FunctionVersionKey("a", 2), network: false)).Origin);
        Assert.NotSame(other.Slot, running);
    }

    [Fact]
    public async Task Sandboxes_with_the_network_and_without_never_stand_in_for_each_other()
    {
        var pool = Pool();
        pool.ReservePrestart(target: 1, returning: 0);
        await pool.PrestartAsync();

        var networked = await pool.AcquireAsync(A, network: true);

        Assert.Equal(SandboxOrigin.New, networked.Origin);
        Assert.True(networked.Slot!.Sandbox.Network);
        Assert.Equal(2, _factory.Started.Count);
        Assert.Equal(1, pool.IdleGenericCount);
    }

    [Fact]
    public async Task Reading_the_pool_never_changes_its_sequence_and_a_result_advances_it()
    {
        var pool = Pool();
        await CallAsync(pool, A);
        var before = pool.View().Sequence;

        pool.View();
        var (busy, sequence) = pool.Advance();

        Assert.Equal(before, pool.View().Sequence - 1);
        Assert.Equal(before + 1, sequence);
        Assert.Equal(0, busy);
        Assert.Equal(new Dictionary<string, int> { ["a@1"] = 1 }, pool.View().WarmIdle);
    }

    [Fact]
    public async Task Instances_idle_past_the_keep_alive_are_taken_and_the_rest_stay_warm()
    {
        var pool = Pool();
        var old = await CallAsync(pool, A);
        _clock.Advance(TimeSpan.FromMinutes(10));
        var recent = await CallAsync(pool, B);

        var expired = pool.TakeWarmIdleSince(_clock.GetUtcNow() - TimeSpan.FromMinutes(5));

        Assert.Equal([old.Slot!], expired);
        Assert.Equal(SandboxOrigin.Reused, (await pool.AcquireAsync(B, network: false)).Origin);
        Assert.NotSame(recent.Slot, old.Slot);
    }
}
