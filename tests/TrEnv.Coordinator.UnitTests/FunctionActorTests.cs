using Akka.Actor;
using Akka.TestKit.Xunit2;
using TrEnv.Contracts;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Tests;

/// <summary>The persistent function entity over the TestKit's in-memory journal: it persists, replies, and recovers.</summary>
public sealed class FunctionActorTests() : TestKit("akka.persistence.journal.plugin = \"akka.persistence.journal.inmem\"")
{
    // Generous deadlines: the first persist pays actor-system and journal start-up on a busy 2-core machine.
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public void A_deploy_is_persisted_and_recovered_by_a_new_incarnation()
    {
        var sha = new string('d', 64);
        var first = Sys.ActorOf(Props.Create(() => new FunctionActor("f")));
        first.Tell(new FunctionCommands.Deploy("f", sha, 5, FunctionLimits.Default));
        ExpectMsg<FunctionReplies.Deployed>(d => d.Version == 1 && d.Created, Deadline);
        Watch(first);
        first.Tell(PoisonPill.Instance);
        ExpectTerminated(first, Deadline);

        var second = Sys.ActorOf(Props.Create(() => new FunctionActor("f")));
        second.Tell(new FunctionCommands.Get("f"));
        var view = ExpectMsg<FunctionReplies.View>(Deadline);
        Assert.Equal(sha, view.Current!.Sha256);
        second.Tell(new FunctionCommands.Deploy("f", sha, 5, FunctionLimits.Default));
        ExpectMsg<FunctionReplies.Deployed>(d => d.Version == 1 && !d.Created, Deadline);
    }
}
