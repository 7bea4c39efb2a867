using Akka.Cluster.Sharding;
using TrEnv.Contracts;

namespace TrEnv.Cluster;

/// <summary>Shard region names and message extractors, shared by the regions and their proxies.</summary>
public static class Sharding
{
    public const string Functions = "functions";
    public const string Modules = "modules";
    public const string Templates = "templates";
    public const string Pool = "pool";
    public const string Sessions = "sessions";
    public const string WorkersTopic = "trenv-workers";
    public const int ShardCount = 64;

    public sealed class FunctionExtractor() : HashCodeMessageExtractor(ShardCount)
    {
        public override string? EntityId(object message) => message is IWithFunctionName f ? f.Name : null;
    }

    public sealed class TemplateExtractor() : HashCodeMessageExtractor(ShardCount)
    {
        public override string? EntityId(object message) => message is IWithTemplateKey t ? t.Key : null;
    }

    public sealed class PoolExtractor() : HashCodeMessageExtractor(ShardCount)
    {
        public override string? EntityId(object message) => message is PoolCommands.IPoolCommand p ? p.Pool : null;
    }

    public sealed class SessionExtractor() : HashCodeMessageExtractor(ShardCount)
    {
        public override string? EntityId(object message) => message is IWithSessionId s ? s.SessionId : null;
    }

    public sealed class ModuleExtractor() : HashCodeMessageExtractor(ShardCount)
    {
        public override string? EntityId(object message) => message is IWithModuleHash m ? m.Sha256 : null;
    }
}
