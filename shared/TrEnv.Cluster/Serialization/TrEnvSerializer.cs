using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Serialization;
using TrEnv.Contracts;

namespace TrEnv.Cluster.Serialization;

/// <summary>
/// The one serializer for cluster traffic and the journal. Each type has a fixed manifest that never
/// changes once written; payloads are JSON by explicit property name (no .NET type names), so renaming a
/// C# type or adding a field never breaks replay. Module bytes travel raw.
/// </summary>
public sealed class TrEnvSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int SerializerId = 9301;

    private static readonly Dictionary<Type, string> Manifests = new()
    {
        [typeof(FunctionCommands.Deploy)] = "fn.deploy",
        [typeof(FunctionCommands.Delete)] = "fn.delete",
        [typeof(FunctionCommands.Get)] = "fn.get",
        [typeof(FunctionReplies.Deployed)] = "fn.deployed",
        [typeof(FunctionReplies.Deleted)] = "fn.deleted",
        [typeof(FunctionReplies.View)] = "fn.view",
        [typeof(FunctionEvents.VersionAdded)] = "fn.ev.version-added",
        [typeof(FunctionEvents.Deleted)] = "fn.ev.deleted",
        [typeof(ModuleCommands.Store)] = "mod.store",
        [typeof(ModuleCommands.Fetch)] = "mod.fetch",
        [typeof(ModuleReplies.Stored)] = "mod.stored",
        [typeof(ModuleReplies.Content)] = "mod.content",
        [typeof(ModuleCommands.Has)] = "mod.has",
        [typeof(ModuleReplies.Holds)] = "mod.holds",
        [typeof(ModuleEvents.Added)] = "mod.ev.added",
        [typeof(ModuleEvents.Referenced)] = "mod.ev.referenced",
        [typeof(ModuleEvents.Dropped)] = "mod.ev.dropped",
        [typeof(ModuleCommands.Remove)] = "mod.remove",
        [typeof(ModuleReplies.Removed)] = "mod.removed",
        [typeof(TemplateCommands.BeginCapture)] = "tpl.begin",
        [typeof(TemplateCommands.Seal)] = "tpl.seal",
        [typeof(TemplateCommands.AbortCapture)] = "tpl.abort",
        [typeof(TemplateCommands.Retire)] = "tpl.retire",
        [typeof(TemplateCommands.Mappings)] = "tpl.mappings",
        [typeof(TemplateCommands.Get)] = "tpl.get",
        [typeof(TemplateReplies.CaptureGranted)] = "tpl.granted",
        [typeof(TemplateReplies.CaptureRefused)] = "tpl.refused",
        [typeof(TemplateReplies.Sealed)] = "tpl.sealed",
        [typeof(TemplateReplies.State)] = "tpl.state",
        [typeof(TemplateReplies.Ack)] = "tpl.ack",
        [typeof(TemplateEvents.CaptureStarted)] = "tpl.ev.capture-started",
        [typeof(TemplateEvents.CaptureAborted)] = "tpl.ev.capture-aborted",
        [typeof(TemplateEvents.Sealed)] = "tpl.ev.sealed",
        [typeof(TemplateEvents.Retired)] = "tpl.ev.retired",
        [typeof(TemplateEvents.Freed)] = "tpl.ev.freed",
        [typeof(PoolCommands.Allocate)] = "pool.allocate",
        [typeof(PoolCommands.Free)] = "pool.free",
        [typeof(PoolCommands.Stats)] = "pool.stats",
        [typeof(PoolCommands.Sealed)] = "pool.sealed",
        [typeof(PoolCommands.Find)] = "pool.find",
        [typeof(PoolReplies.Found)] = "pool.found",
        [typeof(PoolReplies.Allocated)] = "pool.allocated",
        [typeof(PoolReplies.Full)] = "pool.full",
        [typeof(PoolReplies.Freed)] = "pool.freed",
        [typeof(PoolReplies.Usage)] = "pool.usage",
        [typeof(PoolEvents.Allocated)] = "pool.ev.allocated",
        [typeof(PoolEvents.Freed)] = "pool.ev.freed",
        [typeof(PoolCommands.Hold)] = "pool.hold",
        [typeof(PoolCommands.Release)] = "pool.release",
        [typeof(PoolReplies.Held)] = "pool.held",
        [typeof(PoolEvents.Held)] = "pool.ev.held",
        [typeof(PoolEvents.Released)] = "pool.ev.released",
        [typeof(PoolEvents.OwnerReleased)] = "pool.ev.owner-released",
        [typeof(WorkerInvoke)] = "wk.invoke",
        [typeof(WorkerInvokeResult)] = "wk.result",
        [typeof(WorkerStatus)] = "wk.status",
        [typeof(WorkerReclaim)] = "wk.reclaim",
        [typeof(WorkerReclaimed)] = "wk.reclaimed",
        [typeof(WorkerForget)] = "wk.forget",
        [typeof(WorkerForgot)] = "wk.forgot",
        [typeof(WorkerPrepare)] = "wk.prepare",
        [typeof(WorkerLogsQuery)] = "wk.logs-query",
        [typeof(WorkerLogs)] = "wk.logs",
        [typeof(TemplateCommands.Hold)] = "tpl.hold",
        [typeof(TemplateCommands.Unhold)] = "tpl.unhold",
        [typeof(TemplateEvents.Held)] = "tpl.ev.held",
        [typeof(TemplateEvents.Unheld)] = "tpl.ev.unheld",
        [typeof(PoolCommands.SaveDurable)] = "pool.save-durable",
        [typeof(PoolReplies.Durable)] = "pool.durable",
        [typeof(SessionCommands.Create)] = "ses.create",
        [typeof(SessionCommands.Invoke)] = "ses.invoke",
        [typeof(SessionCommands.Pause)] = "ses.pause",
        [typeof(SessionCommands.Resume)] = "ses.resume",
        [typeof(SessionCommands.Get)] = "ses.get",
        [typeof(SessionCommands.Delete)] = "ses.delete",
        [typeof(SessionCommands.IdleExpired)] = "ses.idle-expired",
        [typeof(SessionCommands.Checkpoint)] = "ses.checkpoint",
        [typeof(SessionCommands.Fork)] = "ses.fork",
        [typeof(TemplateCommands.HoldAll)] = "tpl.hold-all",
        [typeof(TemplateEvents.HeldAll)] = "tpl.ev.held-all",
        [typeof(SessionCommands.CreateFork)] = "ses.create-fork",
        [typeof(SessionReplies.ForkPoint)] = "ses.fork-point",
        [typeof(SessionReplies.View)] = "ses.view",
        [typeof(SessionReplies.Invoked)] = "ses.invoked",
        [typeof(SessionReplies.Refused)] = "ses.refused",
        [typeof(SessionEvents.Created)] = "ses.ev.created",
        [typeof(SessionEvents.Activated)] = "ses.ev.activated",
        [typeof(SessionEvents.Paused)] = "ses.ev.paused",
        [typeof(SessionEvents.Lost)] = "ses.ev.lost",
        [typeof(SessionEvents.Deleted)] = "ses.ev.deleted",
        [typeof(SessionEvents.Checkpointed)] = "ses.ev.checkpointed",
        [typeof(SessionEvents.Recovered)] = "ses.ev.recovered",
        [typeof(SessionEvents.Forked)] = "ses.ev.forked",
        [typeof(WorkerSessionCommands.Start)] = "wk.ses.start",
        [typeof(WorkerSessionCommands.Invoke)] = "wk.ses.invoke",
        [typeof(WorkerSessionCommands.Pause)] = "wk.ses.pause",
        [typeof(WorkerSessionCommands.Release)] = "wk.ses.release",
        [typeof(WorkerSessionReplies.Started)] = "wk.ses.started",
        [typeof(WorkerSessionReplies.Invoked)] = "wk.ses.invoked",
        [typeof(WorkerSessionReplies.Paused)] = "wk.ses.paused",
        [typeof(WorkerSessionReplies.Released)] = "wk.ses.released",
    };

    private static readonly Dictionary<string, Type> Types = Manifests.ToDictionary(kv => kv.Value, kv => kv.Key);

    public override int Identifier => SerializerId;

    public static IReadOnlyDictionary<Type, string> KnownManifests => Manifests;

    public override string Manifest(object o)
        => Manifests.TryGetValue(o.GetType(), out var m) ? m : throw new ArgumentException($"No TrEnv manifest for {o.GetType()}.");

    public override byte[] ToBinary(object obj) => obj switch
    {
        ModuleEvents.Added a => WithHash(a.Sha256, a.Wasm),
        ModuleCommands.Store s => WithHash(s.Sha256, s.Wasm),
        ModuleReplies.Content { Wasm: { } w } c => WithHash(c.Sha256, w),
        ModuleReplies.Content c => Encoding.ASCII.GetBytes(c.Sha256),
        WorkerInvoke i => HotPathCodec.Encode(i),
        WorkerInvokeResult r => HotPathCodec.Encode(r),
        _ => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), ProtocolJson.Default),
    };

    public override object FromBinary(byte[] bytes, string manifest)
    {
        switch (manifest)
        {
            case "mod.ev.added":
                return new ModuleEvents.Added(Hash(bytes), bytes[64..]);
            case "mod.store":
                return new ModuleCommands.Store(Hash(bytes), bytes[64..]);
            case "mod.content":
                return new ModuleReplies.Content(Hash(bytes), bytes.Length > 64 ? bytes[64..] : null);
            case "wk.invoke":
                return HotPathCodec.DecodeInvoke(bytes);
            case "wk.result":
                return HotPathCodec.DecodeResult(bytes);
        }
        if (!Types.TryGetValue(manifest, out var type))
            throw new System.Runtime.Serialization.SerializationException($"Unknown TrEnv manifest \"{manifest}\".");
        return JsonSerializer.Deserialize(bytes, type, ProtocolJson.Default)
               ?? throw new System.Runtime.Serialization.SerializationException($"Empty payload for manifest \"{manifest}\".");
    }

    private static byte[] WithHash(string sha256, byte[] payload)
    {
        if (sha256.Length != 64)
            throw new ArgumentException("A module hash is 64 hex characters.");
        var bytes = new byte[64 + payload.Length];
        Encoding.ASCII.GetBytes(sha256, bytes);
        payload.CopyTo(bytes, 64);
        return bytes;
    }

    private static string Hash(byte[] bytes)
        => bytes.Length >= 64 ? Encoding.ASCII.GetString(bytes, 0, 64) : throw new System.Runtime.Serialization.SerializationException("A module payload is shorter than its hash.");
}

/// <summary>Source-generated JSON for protocol messages: camelCase names are the wire schema.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(FunctionCommands.Deploy))]
[JsonSerializable(typeof(FunctionCommands.Delete))]
[JsonSerializable(typeof(FunctionCommands.Get))]
[JsonSerializable(typeof(FunctionReplies.Deployed))]
[JsonSerializable(typeof(FunctionReplies.Deleted), TypeInfoPropertyName = "FunctionDeletedReply")]
[JsonSerializable(typeof(FunctionReplies.View))]
[JsonSerializable(typeof(FunctionEvents.VersionAdded))]
[JsonSerializable(typeof(FunctionEvents.Deleted), TypeInfoPropertyName = "FunctionDeletedEvent")]
[JsonSerializable(typeof(ModuleCommands.Fetch))]
[JsonSerializable(typeof(ModuleCommands.Has))]
[JsonSerializable(typeof(ModuleCommands.Remove))]
[JsonSerializable(typeof(ModuleReplies.Removed))]
[JsonSerializable(typeof(ModuleEvents.Referenced))]
[JsonSerializable(typeof(ModuleEvents.Dropped))]
[JsonSerializable(typeof(ModuleReplies.Holds))]
[JsonSerializable(typeof(ModuleReplies.Stored))]
[JsonSerializable(typeof(TemplateCommands.BeginCapture))]
[JsonSerializable(typeof(TemplateCommands.Seal))]
[JsonSerializable(typeof(TemplateCommands.AbortCapture))]
[JsonSerializable(typeof(TemplateCommands.Retire))]
[JsonSerializable(typeof(TemplateCommands.Mappings))]
[JsonSerializable(typeof(TemplateCommands.Get), TypeInfoPropertyName = "TemplateGet")]
[JsonSerializable(typeof(TemplateReplies.CaptureGranted))]
[JsonSerializable(typeof(TemplateReplies.CaptureRefused))]
[JsonSerializable(typeof(TemplateReplies.Sealed), TypeInfoPropertyName = "TemplateSealedReply")]
[JsonSerializable(typeof(TemplateReplies.State))]
[JsonSerializable(typeof(TemplateReplies.Ack))]
[JsonSerializable(typeof(TemplateEvents.CaptureStarted))]
[JsonSerializable(typeof(TemplateEvents.CaptureAborted))]
[JsonSerializable(typeof(TemplateEvents.Sealed), TypeInfoPropertyName = "TemplateSealedEvent")]
[JsonSerializable(typeof(TemplateEvents.Retired))]
[JsonSerializable(typeof(TemplateEvents.Freed), TypeInfoPropertyName = "TemplateFreedEvent")]
[JsonSerializable(typeof(PoolCommands.Allocate))]
[JsonSerializable(typeof(PoolCommands.Free))]
[JsonSerializable(typeof(PoolCommands.Stats))]
[JsonSerializable(typeof(PoolCommands.Sealed), TypeInfoPropertyName = "PoolSealedCommand")]
[JsonSerializable(typeof(PoolCommands.Find))]
[JsonSerializable(typeof(PoolReplies.Found))]
[JsonSerializable(typeof(PoolReplies.Allocated), TypeInfoPropertyName = "PoolAllocatedReply")]
[JsonSerializable(typeof(PoolReplies.Full))]
[JsonSerializable(typeof(PoolReplies.Freed), TypeInfoPropertyName = "PoolFreedReply")]
[JsonSerializable(typeof(PoolReplies.Usage))]
[JsonSerializable(typeof(PoolEvents.Allocated), TypeInfoPropertyName = "PoolAllocatedEvent")]
[JsonSerializable(typeof(PoolEvents.Freed), TypeInfoPropertyName = "PoolFreedEvent")]
[JsonSerializable(typeof(PoolCommands.Hold), TypeInfoPropertyName = "PoolHoldCommand")]
[JsonSerializable(typeof(PoolCommands.Release), TypeInfoPropertyName = "PoolReleaseCommand")]
[JsonSerializable(typeof(PoolReplies.Held), TypeInfoPropertyName = "PoolHeldReply")]
[JsonSerializable(typeof(PoolEvents.Held), TypeInfoPropertyName = "PoolHeldEvent")]
[JsonSerializable(typeof(PoolEvents.Released), TypeInfoPropertyName = "PoolReleasedEvent")]
[JsonSerializable(typeof(PoolEvents.OwnerReleased), TypeInfoPropertyName = "PoolOwnerReleasedEvent")]
[JsonSerializable(typeof(WorkerStatus))]
[JsonSerializable(typeof(WorkerReclaim))]
[JsonSerializable(typeof(WorkerReclaimed))]
[JsonSerializable(typeof(WorkerForget))]
[JsonSerializable(typeof(WorkerForgot))]
[JsonSerializable(typeof(WorkerPrepare))]
[JsonSerializable(typeof(WorkerLogsQuery))]
[JsonSerializable(typeof(WorkerLogs))]
[JsonSerializable(typeof(TemplateCommands.Hold))]
[JsonSerializable(typeof(TemplateCommands.Unhold))]
[JsonSerializable(typeof(TemplateEvents.Held))]
[JsonSerializable(typeof(TemplateEvents.Unheld))]
[JsonSerializable(typeof(PoolCommands.SaveDurable))]
[JsonSerializable(typeof(PoolReplies.Durable))]
[JsonSerializable(typeof(SessionCommands.Create), TypeInfoPropertyName = "SessionCreate")]
[JsonSerializable(typeof(SessionCommands.Invoke), TypeInfoPropertyName = "SessionInvoke")]
[JsonSerializable(typeof(SessionCommands.Pause), TypeInfoPropertyName = "SessionPause")]
[JsonSerializable(typeof(SessionCommands.Resume), TypeInfoPropertyName = "SessionResume")]
[JsonSerializable(typeof(SessionCommands.Get), TypeInfoPropertyName = "SessionGet")]
[JsonSerializable(typeof(SessionCommands.Delete), TypeInfoPropertyName = "SessionDelete")]
[JsonSerializable(typeof(SessionCommands.IdleExpired))]
[JsonSerializable(typeof(SessionCommands.Checkpoint), TypeInfoPropertyName = "SessionCheckpoint")]
[JsonSerializable(typeof(SessionCommands.Fork), TypeInfoPropertyName = "SessionFork")]
[JsonSerializable(typeof(TemplateCommands.HoldAll), TypeInfoPropertyName = "TemplateHoldAll")]
[JsonSerializable(typeof(TemplateEvents.HeldAll), TypeInfoPropertyName = "TemplateHeldAllEvent")]
[JsonSerializable(typeof(SessionCommands.CreateFork), TypeInfoPropertyName = "SessionCreateFork")]
[JsonSerializable(typeof(SessionReplies.ForkPoint), TypeInfoPropertyName = "SessionForkPoint")]
[JsonSerializable(typeof(SessionReplies.View), TypeInfoPropertyName = "SessionView")]
[JsonSerializable(typeof(SessionReplies.Invoked), TypeInfoPropertyName = "SessionInvoked")]
[JsonSerializable(typeof(SessionReplies.Refused))]
[JsonSerializable(typeof(SessionEvents.Created), TypeInfoPropertyName = "SessionCreatedEvent")]
[JsonSerializable(typeof(SessionEvents.Activated))]
[JsonSerializable(typeof(SessionEvents.Paused), TypeInfoPropertyName = "SessionPausedEvent")]
[JsonSerializable(typeof(SessionEvents.Lost))]
[JsonSerializable(typeof(SessionEvents.Deleted), TypeInfoPropertyName = "SessionDeletedEvent")]
[JsonSerializable(typeof(SessionEvents.Checkpointed), TypeInfoPropertyName = "SessionCheckpointedEvent")]
[JsonSerializable(typeof(SessionEvents.Recovered), TypeInfoPropertyName = "SessionRecoveredEvent")]
[JsonSerializable(typeof(SessionEvents.Forked), TypeInfoPropertyName = "SessionForkedEvent")]
[JsonSerializable(typeof(WorkerSessionCommands.Start), TypeInfoPropertyName = "WorkerSessionStart")]
[JsonSerializable(typeof(WorkerSessionCommands.Invoke), TypeInfoPropertyName = "WorkerSessionInvoke")]
[JsonSerializable(typeof(WorkerSessionCommands.Pause), TypeInfoPropertyName = "WorkerSessionPause")]
[JsonSerializable(typeof(WorkerSessionCommands.Release), TypeInfoPropertyName = "WorkerSessionRelease")]
[JsonSerializable(typeof(WorkerSessionReplies.Started), TypeInfoPropertyName = "WorkerSessionStarted")]
[JsonSerializable(typeof(WorkerSessionReplies.Invoked), TypeInfoPropertyName = "WorkerSessionInvoked")]
[JsonSerializable(typeof(WorkerSessionReplies.Paused), TypeInfoPropertyName = "WorkerSessionPaused")]
[JsonSerializable(typeof(WorkerSessionReplies.Released), TypeInfoPropertyName = "WorkerSessionReleased")]
internal sealed partial class ProtocolJson : JsonSerializerContext;
