using TrEnv.Contracts;
using TrEnv.Coordinator.Registry;
using static TrEnv.Contracts.TemplateCommands;
using static TrEnv.Contracts.TemplateReplies;

namespace TrEnv.Tests;

public sealed class TemplateStateTests
{
    private static readonly DateTimeOffset T0 = DateTimeOffset.UnixEpoch;
    private static readonly PoolRegion Region = new(4096, 8192);

    private static TemplateState Capturing(string worker = "w1")
        => TemplateState.Empty("f@1").Apply(new TemplateEvents.CaptureStarted("f@1", "f", 1, new string('a', 64), worker, Region, T0));

    private static BeginCapture Begin(string worker, long bytes = 8192) => new("f@1", "f", 1, new string('a', 64), bytes, worker);

    [Fact]
    public void Only_one_capture_lease_is_granted_at_a_time()
    {
        Assert.Null(TemplateState.Empty("f@1").Decide(Begin("w1"), T0));
        var s = Capturing();
        Assert.IsType<CaptureRefused>(s.Decide(Begin("w2"), T0.AddSeconds(5)));
        Assert.Equal(new CaptureGranted("f@1", Region), s.Decide(Begin("w1"), T0.AddSeconds(5)));
    }

    [Fact]
    public void An_expired_lease_can_be_taken_over()
        => Assert.Null(Capturing().Decide(Begin("w2"), T0 + TemplateState.LeaseTimeout + TimeSpan.FromSeconds(1)));

    [Fact]
    public void Only_the_lease_holder_can_seal_and_then_no_one_captures_again()
    {
        var s = Capturing();
        Assert.Null(s.Process(new Seal("f@1", "w2", 2, 65536, [1]), T0).Event);
        var (reply, e) = s.Process(new Seal("f@1", "w1", 2, 65536, [1, 2]), T0);
        var sealedInfo = Assert.IsType<Sealed>(reply).Template;
        Assert.Equal(Region, sealedInfo.Region);
        s = s.Apply(e!);
        Assert.Equal(TemplateStatus.Sealed, s.Status);
        Assert.Equal(sealedInfo, Assert.IsType<CaptureRefused>(s.Decide(Begin("w3"), T0)).Sealed);
    }

    [Fact]
    public void A_retired_template_is_freed_only_when_nothing_maps_it()
    {
        var s = Capturing();
        s = s.Apply(s.Process(new Seal("f@1", "w1", 2, 65536, [1]), T0).Event!);
        s = s.WithMappings("w1", 2).WithMappings("w2", 1);
        s = s.Apply(s.Process(new Retire("f@1"), T0).Event!);
        Assert.False(s.ShouldFree);
        s = s.WithMappings("w1", 0);
        Assert.False(s.ShouldFree);
        s = s.WithMappings("w2", 0);
        Assert.True(s.ShouldFree);
        s = s.Apply(new TemplateEvents.Freed("f@1", Region));
        Assert.False(s.ShouldFree);
        Assert.IsType<CaptureRefused>(s.Decide(Begin("w1"), T0));
    }

    [Fact]
    public void An_aborted_capture_releases_the_lease()
    {
        var s = Capturing();
        var (_, e) = s.Process(new AbortCapture("f@1", "w1", "boom"), T0);
        s = s.Apply(e!);
        Assert.Equal(TemplateStatus.None, s.Status);
        Assert.Null(s.Decide(Begin("w2"), T0));
    }

    [Fact]
    public void A_template_held_by_a_session_is_not_freed_until_released()
    {
        var s = Capturing();
        var (_, sealedEvent) = s.Process(new Seal("f@1", "w1", 2, 65536, [1]), T0);
        s = s.Apply(sealedEvent!);
        var (ack, held) = s.Process(new Hold("f@1", "s-1"), T0);
        Assert.IsType<Ack>(ack);
        s = s.Apply(held!);
        Assert.Null(s.Process(new Hold("f@1", "s-1"), T0).Event); // holding twice changes nothing
        s = s.Apply(s.Process(new Retire("f@1"), T0).Event!);
        Assert.False(s.ShouldFree);
        var (_, unheld) = s.Process(new Unhold("f@1", "s-1"), T0);
        s = s.Apply(unheld!);
        Assert.True(s.ShouldFree);
        s = s.Apply(new TemplateEvents.Freed("f@1", Region));
        Assert.IsType<CaptureRefused>(s.Process(new Hold("f@1", "s-2"), T0).Reply);
    }

    [Fact]
    public void A_forks_children_hold_the_template_in_one_event_and_each_lets_it_go_alone()
    {
        var s = Capturing();
        s = s.Apply(s.Process(new Seal("f@1", "w1", 2, 65536, [1]), T0).Event!);
        s = s.Apply(s.Process(new Hold("f@1", "s-1"), T0).Event!);
        var (ack, held) = s.Process(new HoldAll("f@1", ["s-1", "s-2", "s-3", "s-3"]), T0);
        Assert.IsType<Ack>(ack);
        Assert.Equal(["s-2", "s-3"], Assert.IsType<TemplateEvents.HeldAll>(held).Holders); // only who was not holding it yet
        s = s.Apply(held!);
        Assert.Null(s.Process(new HoldAll("f@1", ["s-2"]), T0).Event);
        s = s.Apply(s.Process(new Retire("f@1"), T0).Event!);
        foreach (var holder in new[] { "s-1", "s-2" })
            s = s.Apply(s.Process(new Unhold("f@1", holder), T0).Event!);
        Assert.False(s.ShouldFree);
        s = s.Apply(s.Process(new Unhold("f@1", "s-3"), T0).Event!);
        Assert.True(s.ShouldFree);
        s = s.Apply(new TemplateEvents.Freed("f@1", Region));
        Assert.IsType<CaptureRefused>(s.Process(new HoldAll("f@1", ["s-4"]), T0).Reply);
    }
}
