using Akka.Actor;
using TrEnv.Contracts;
using TrEnv.Coordinator.Placement;

namespace TrEnv.Tests;

public sealed class WorkerDirectoryTests
{
    private static readonly WorkerStatus Status = new("w1", "akka.tcp://trenv@10.0.0.1:4053", MaxSandboxes: 1, Busy: 0, IdleGeneric: 1,
        WarmIdle: new Dictionary<string, int>(), Sandboxes: [], Isolation: "process", At: DateTimeOffset.UnixEpoch, Sequence: 5);

    [Fact]
    public void A_status_snapshot_taken_during_an_invocation_never_overrides_the_result_that_freed_the_sandbox()
    {
        var directory = new WorkerDirectory();
        directory.Update(Status, ActorRefs.Nobody);
        var worker = directory.Workers.Single();

        worker.ApplyBusy(0, sequence: 7); // the invocation ended: nothing busy
        directory.Update(Status with { Busy = 1, IdleGeneric = 0, Sequence = 6 }, ActorRefs.Nobody); // snapshot from mid-invocation, delivered late
        Assert.Equal(0, worker.Status.Busy);
        Assert.Same(worker, directory.Choose("f@1"));

        directory.Update(Status with { Busy = 1, IdleGeneric = 0, Sequence = 8 }, ActorRefs.Nobody); // a newer snapshot wins
        Assert.Equal(1, worker.Status.Busy);
        Assert.Null(directory.Choose("f@1"));
    }

    [Fact]
    public void A_leaving_worker_gets_no_new_invocations_and_a_removed_one_fails_what_it_held()
    {
        var directory = new WorkerDirectory();
        directory.Update(Status, ActorRefs.Nobody);
        var worker = directory.Workers.Single();
        directory.SetLeaving(Status.Address);
        Assert.Null(directory.Choose("f@1"));
        directory.Remove(Status.Address);
        Assert.True(worker.Gone.IsCancellationRequested);
        Assert.Empty(directory.Workers);
    }
}
