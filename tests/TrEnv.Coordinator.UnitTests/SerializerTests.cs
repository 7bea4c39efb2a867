using Akka.Actor;
using Akka.Configuration;
using TrEnv.Cluster.Serialization;
using TrEnv.Contracts;

namespace TrEnv.Tests;

public sealed class SerializerTests : IDisposable
{
    private readonly ActorSystem _system = ActorSystem.Create("ser", ConfigurationFactory.Empty);
    private readonly TrEnvSerializer _serializer;

    public SerializerTests() => _serializer = new TrEnvSerializer((ExtendedActorSystem)_system);

    private static readonly FunctionLimits Limits = new(128, 500, 4, new Dictionary<string, string> { ["A"] = "b" });
    private static readonly FunctionVersion Version = new(3, new string('c', 64), 1234, Limits, DateTimeOffset.UnixEpoch.AddDays(1));
    private static readonly FunctionVersion Sandboxed = Version with { Limits = Limits with { CpuMillicores = 500, Network = true, Layer = new string('d', 64), Runtime = "python", InitTimeoutMs = 2500, TmpMb = 64 } };
    private static readonly TemplateInfo Template = new("f@3", "f", 3, new string('c', 64), new PoolRegion(4096, 8192), 2, 65536, "w1", DateTimeOffset.UnixEpoch, [1, 2, 3]);

    public static TheoryData<object> Messages() =>
    [
        new FunctionCommands.Deploy("f", new string('c', 64), 1234, Limits),
        new FunctionCommands.Delete("f"),
        new FunctionCommands.Get("f"),
        new FunctionReplies.Deployed("f", 3, new string('c', 64), true),
        new FunctionReplies.Deleted("f", true),
        new FunctionReplies.View("f", Version, [Version], false),
        new FunctionEvents.VersionAdded("f", Version),
        new FunctionEvents.Deleted("f", DateTimeOffset.UnixEpoch),
        new ModuleCommands.Store(new string('c', 64), [0, 97, 115, 109]),
        new ModuleCommands.Fetch(new string('c', 64)),
        new ModuleReplies.Stored(new string('c', 64), 4),
        new ModuleReplies.Content(new string('c', 64), [1, 2]),
        new ModuleReplies.Content(new string('c', 64), null),
        new ModuleEvents.Added(new string('c', 64), [9]),
        new ModuleEvents.Referenced(new string('c', 64), DateTimeOffset.UnixEpoch),
        new ModuleEvents.Dropped(new string('c', 64), DateTimeOffset.UnixEpoch),
        new ModuleCommands.Remove(new string('c', 64), DateTimeOffset.UnixEpoch),
        new ModuleReplies.Removed(new string('c', 64), true, "removed"),
        new TemplateCommands.BeginCapture("f@3", "f", 3, new string('c', 64), 8192, "w1"),
        new TemplateCommands.Seal("f@3", "w1", 2, 65536, [1]),
        new TemplateCommands.AbortCapture("f@3", "w1", "why"),
        new TemplateCommands.Retire("f@3"),
        new TemplateCommands.Mappings("f@3", "w1", 2),
        new TemplateCommands.Get("f@3"),
        new TemplateReplies.CaptureGranted("f@3", new PoolRegion(0, 4096)),
        new TemplateReplies.CaptureRefused("f@3", "busy", Template),
        new TemplateReplies.Sealed(Template),
        new TemplateReplies.State("f@3", "sealed", Template, 1, new Dictionary<string, int> { ["w1"] = 1 }),
        new TemplateReplies.Ack("f@3"),
        new TemplateEvents.CaptureStarted("f@3", "f", 3, new string('c', 64), "w1", new PoolRegion(0, 4096), DateTimeOffset.UnixEpoch),
        new TemplateEvents.CaptureAborted("f@3", "w1", "why"),
        new TemplateEvents.Sealed(Template),
        new TemplateEvents.Retired("f@3", DateTimeOffset.UnixEpoch),
        new TemplateEvents.Freed("f@3", new PoolRegion(0, 4096)),
        new PoolCommands.Allocate("default", "f@3", 100),
        new PoolCommands.Free("default", "f@3"),
        new PoolCommands.Stats("default"),
        new PoolReplies.Allocated("f@3", new PoolRegion(0, 4096)),
        new PoolReplies.Full("f@3", "full"),
        new PoolReplies.Freed("f@3", true),
        new PoolReplies.Usage("default", 1 << 20, 4096, 1, 1 << 19),
        new PoolEvents.Allocated("f@3", new PoolRegion(0, 4096)),
        new PoolEvents.Freed("f@3", new PoolRegion(0, 4096)),
        new PoolCommands.Hold("default", "session-s-1-fork-1", ["s-2", "s-3"]),
        new PoolCommands.Release("default", "session-s-1-fork-1", "s-2"),
        new PoolReplies.Held("session-s-1-fork-1", true),
        new PoolEvents.Held("session-s-1-fork-1", ["s-2", "s-3"]),
        new PoolEvents.Released("session-s-1-fork-1", "s-2"),
        new PoolEvents.OwnerReleased("session-s-1-fork-1"),
        new WorkerInvoke("id", "f", Version, Template, [1, 2, 3]),
        new WorkerInvoke("id", "f", Version, null, []),
        new WorkerInvoke("id", "f", Sandboxed, null, [9]),
        new WorkerInvoke("id", "f", Version, null, [9], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        new FunctionEvents.VersionAdded("f", Sandboxed),
        new WorkerInvokeResult("id", true, [4], StartKind.Template, SandboxOrigin.Repurposed, "w1", 10, 20, null, null, Template),
        new WorkerInvokeResult("id", false, [], StartKind.Cold, SandboxOrigin.New, "w1", 0, 0, ErrorKinds.NoCapacity, "full", null, 3, 41),
        new WorkerStatus("w1", "akka.tcp://trenv@h:1", 64, 1, 2, new Dictionary<string, int> { ["f@3"] = 1 }, [new SandboxStatus(7, "warm", "f", 3, 0)], "process", DateTimeOffset.UnixEpoch),
        new WorkerStatus("w1", "akka.tcp://trenv@h:1", 64, 1, 2, new Dictionary<string, int>(), [new SandboxStatus(7, "idle", null, null, 1 << 20)], "namespaces+rootfs+cgroup-v1", DateTimeOffset.UnixEpoch, 5 << 20, 4096, 2),
        new WorkerReclaim("f"),
        new WorkerReclaim("f", Destroy: true),
        new WorkerReclaimed("w1", 2),
        new TemplateCommands.Hold("f@3", "s-1"),
        new TemplateCommands.Unhold("f@3", "s-1"),
        new TemplateEvents.Held("f@3", "s-1"),
        new TemplateEvents.Unheld("f@3", "s-1"),
        new PoolCommands.SaveDurable("default", "session-s-1-1"),
        new PoolReplies.Durable("session-s-1-1", false, "why"),
        new SessionCommands.Create("s-1", "f", 300, "inv"),
        new SessionCommands.Invoke("s-1", "inv", [1, 2]),
        new SessionCommands.Pause("s-1", "idle"),
        new SessionCommands.Resume("s-1", "inv", "w2"),
        new SessionCommands.Resume("s-1", "inv", null) { TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
        new SessionCommands.Get("s-1"),
        new SessionCommands.Delete("s-1"),
        new SessionCommands.IdleExpired("s-1", "w1", "akka.tcp://trenv@h:1"),
        new SessionReplies.View(Info),
        new SessionReplies.Refused("s-1", ErrorKinds.SessionLost, "gone", Info),
        new SessionEvents.Created("s-1", "f", Version, 300, DateTimeOffset.UnixEpoch),
        new SessionEvents.Activated("s-1", "w1", "akka.tcp://trenv@h:1", Template, 65536, 1.5, DateTimeOffset.UnixEpoch),
        new SessionEvents.Paused("s-1", Delta, "api", 2.5),
        new SessionEvents.Lost("s-1", "why", DateTimeOffset.UnixEpoch),
        new SessionEvents.Deleted("s-1", DateTimeOffset.UnixEpoch),
        new SessionCommands.Create("s-1", "f", 300, "inv", CheckpointEverySeconds: 5),
        new SessionCommands.Checkpoint("s-1", "periodic"),
        new SessionCommands.Fork("s-1", "session-s-1-fork-ab"),
        new TemplateCommands.HoldAll("f@3", ["s-2", "s-3"]),
        new TemplateEvents.HeldAll("f@3", ["s-2", "s-3"]),
        new SessionCommands.CreateFork("s-2", "s-1", "f", Version, Delta, 60, 5),
        new SessionReplies.ForkPoint(Info, Version, Delta, true, 1.25),
        new SessionEvents.Forked("s-2", "s-1", "f", Version, 60, 0, Delta with { FilesOffset = 4096, FilesBytes = 10, FilesSha256 = "ab" }, DateTimeOffset.UnixEpoch),
        new WorkerSessionCommands.Pause("s-1", "session-s-1-fork-ab", Template, KeepActive: true, Durable: false),
        new SessionEvents.Created("s-1", "f", Version, 300, DateTimeOffset.UnixEpoch, 5),
        new SessionEvents.Checkpointed("s-1", Delta, "api", 3.5),
        new SessionEvents.Recovered("s-1", new SessionRecovery(DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, 2, "worker died", "w1")),
        new SessionEvents.Recovered("s-1", new SessionRecovery(DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, null, "worker died", null)),
        new WorkerSessionCommands.Pause("s-1", "session-s-1-2", Template, KeepActive: true),
        new SessionReplies.Invoked(Info with { Recoveries = 1, LastRecovery = new SessionRecovery(DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, 0, "r", "w1") },
            new WorkerInvokeResult("inv", true, [4], StartKind.Warm, SandboxOrigin.Session, "w2", 0, 5, null, null, null), true,
            new SessionRecovery(DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, 0, "r", "w1")),
        new WorkerSessionCommands.Start("s-1", "inv", "f", Version, Template, Delta, 300),
        new WorkerSessionCommands.Start("s-1", "inv", "f", Version, null, Delta, 300) { TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00" },
        new WorkerSessionCommands.Pause("s-1", "session-s-1-1", Template),
        new WorkerSessionCommands.Release("s-1"),
        new WorkerSessionReplies.Started("s-1", true, "w1", "template", 10, 65536, Template, null, null, null),
        new WorkerSessionReplies.Paused("s-1", true, Delta, 10, null, null, false),
        new WorkerSessionReplies.Released("s-1", true),
        new WorkerSessionCommands.Invoke("s-1", "inv", [1, 2]),
        new WorkerSessionReplies.Invoked(new WorkerInvokeResult("inv", false, [], StartKind.Warm, SandboxOrigin.Session, "w1", 0, 5, ErrorKinds.Trap, "trap", null), true),
        new SessionReplies.Invoked(Info, new WorkerInvokeResult("inv", true, [4, 5], StartKind.Warm, SandboxOrigin.Session, "w1", 0, 5, null, null, null), true),
    ];

    private static readonly SessionInfo Info = new("s-1", "f", 3, "paused", "w1", DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch,
        4, 1, 0, 65536, 8192, 12288, 1 << 20, 1.5, null, 300, null);

    private static readonly SessionDelta Delta = new("session-s-1-1", new PoolRegion(8192, 4096), [7, 8], Template, 4096, 65536, DateTimeOffset.UnixEpoch, 8192);

    [Theory]
    [MemberData(nameof(Messages))]
    public void Every_message_round_trips_with_its_stable_manifest(object message)
    {
        var manifest = _serializer.Manifest(message);
        var back = _serializer.FromBinary(_serializer.ToBinary(message), manifest);
        Assert.Equal(message.GetType(), back.GetType());
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(message), System.Text.Json.JsonSerializer.Serialize(back));
    }

    [Fact]
    public void Every_protocol_type_has_a_manifest_and_manifests_are_unique()
    {
        var types = typeof(IProtocolMessage).Assembly.GetTypes().Where(t => typeof(IProtocolMessage).IsAssignableFrom(t) && !t.IsInterface && !t.IsAbstract);
        foreach (var t in types)
            Assert.True(TrEnvSerializer.KnownManifests.ContainsKey(t), $"{t} has no manifest");
        Assert.Equal(TrEnvSerializer.KnownManifests.Count, TrEnvSerializer.KnownManifests.Values.Distinct().Count());
    }

    [Fact]
    public void A_result_from_a_worker_that_named_its_start_and_sandbox_in_text_reads_as_the_typed_kinds()
    {
        // Hot-path encoding 5: the start kind and the sandbox origin were strings.
        using var stream = new MemoryStream();
        using (var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write((byte)5);
            w.Write("inv");
            w.Write(true);
            w.Write(2);
            w.Write(new byte[] { 7, 8 });
            w.Write("template");
            w.Write("repurposed");
            w.Write("w1");
            w.Write(1200L);
            w.Write(30L);
            w.Write(false); // no error kind
            w.Write(false); // no error message
            w.Write(false); // no captured template
            w.Write(3);
            w.Write(41L);
        }
        var back = (WorkerInvokeResult)_serializer.FromBinary(stream.ToArray(), "wk.result");
        Assert.Equal((StartKind.Template, SandboxOrigin.Repurposed, "w1", 1200L, 3, 41L), (back.Start, back.Sandbox, back.Node, back.StartupMicros, back.BusyAfter, back.Sequence));
        Assert.Equal([7, 8], back.Output);
    }

    [Fact]
    public void A_version_journaled_before_init_deadlines_and_tmp_bounds_reads_with_the_defaults()
    {
        // A VersionAdded event as journaled before FunctionLimits had InitTimeoutMs and TmpMb.
        var old = """{"name":"f","version":{"version":3,"sha256":"cc","sizeBytes":1,"limits":{"memoryMb":128,"timeoutMs":500,"concurrency":4,"env":{},"cpuMillicores":0,"network":false,"layer":null,"runtime":null},"deployedAt":"1970-01-02T00:00:00+00:00"}}""";
        var back = (FunctionEvents.VersionAdded)_serializer.FromBinary(System.Text.Encoding.UTF8.GetBytes(old), "fn.ev.version-added");
        Assert.Equal((FunctionLimits.DefaultInitTimeoutMs, FunctionLimits.DefaultTmpMb), (back.Version.Limits.InitTimeoutMs, back.Version.Limits.TmpMb));
        Assert.Equal(128, back.Version.Limits.MemoryMb);
    }

    [Fact]
    public void Journal_manifests_are_frozen()
    {
        // Rows already written name these manifests; renaming one breaks replay.
        Assert.Equal("fn.ev.version-added", _serializer.Manifest(new FunctionEvents.VersionAdded("f", Version)));
        Assert.Equal("tpl.ev.sealed", _serializer.Manifest(new TemplateEvents.Sealed(Template)));
        Assert.Equal("pool.ev.allocated", _serializer.Manifest(new PoolEvents.Allocated("o", new PoolRegion(0, 4096))));
        Assert.Equal("mod.ev.added", _serializer.Manifest(new ModuleEvents.Added(new string('c', 64), [])));
        Assert.Equal("ses.ev.paused", _serializer.Manifest(new SessionEvents.Paused("s-1", Delta, "api", 1)));
        Assert.Equal("tpl.ev.held", _serializer.Manifest(new TemplateEvents.Held("f@3", "s-1")));
        Assert.Equal("ses.ev.forked", _serializer.Manifest(new SessionEvents.Forked("s-2", "s-1", "f", Version, 60, 0, Delta, default)));
        Assert.Equal("pool.ev.held", _serializer.Manifest(new PoolEvents.Held("o", ["s-2"])));
        Assert.Equal("pool.ev.owner-released", _serializer.Manifest(new PoolEvents.OwnerReleased("o")));
        Assert.Equal("ses.ev.checkpointed", _serializer.Manifest(new SessionEvents.Checkpointed("s-1", Delta, "api", 1)));
        Assert.Equal("ses.ev.recovered", _serializer.Manifest(new SessionEvents.Recovered("s-1", new SessionRecovery(default, default, null, "r", null))));
    }

    public void Dispose() => _system.Dispose();
}
