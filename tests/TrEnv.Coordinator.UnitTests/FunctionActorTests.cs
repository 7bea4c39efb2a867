using Akka.Actor;
using Akka.TestKit.Xunit2;
using TrEnv.Contracts;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Tests;

/// <summary>The persistent function entity over the TestKit's in-memory journal: it persists, replies, and recovers.</summary>
public sealed class FunctionActorTests() : TestKit("akka.persistence.journal.plugin = \"akka.persistence.journal.inmem\"")
{
    [Fact]
    public void A_deploy_is_persisted_and_recovered_by_a_new_incarnation()
    {
        var sha = new string('d', 64);
        var first = Sys.ActorOf(Props.Create(() => new FunctionActor("f")));
        first.Tell(new FunctionCommands.Deploy("f", sha, 5, FunctionLimits.Default));
        ExpectMsg<FunctionReplies.Deployed>(d => d.Version == 1 && d.Created);
        Watch(first);
        first.Tell(PoisonPill.Instance);
        ExpectTerminated(first);

        var second = Sys.ActorOf(Props.Create(() => new FunctionActor("f")));
        second.Tell(new FunctionCommands.Get("f"));
        var view = ExpectMsg<FunctionReplies.View>();
        Assert.Equal(sha, view.Current!.Sha256);
        second.Tell(new FunctionCommands.Deploy("f", sha, 5, FunctionLimits.Default));
        ExpectMsg<FunctionReplies.Deployed>(d => d.Version == 1 && !d.Created);
    }
}
