namespace TrEnv.Contracts;

/// <summary>Every message that crosses the cluster or lands in the journal; bound to the TrEnv serializer.</summary>
public interface IProtocolMessage;

/// <summary>Persisted events; their manifests are forever.</summary>
public interface IEvent : IProtocolMessage;

/// <summary>Messages routed to a function entity by its name.</summary>
public interface IWithFunctionName
{
    string Name { get; }
}

/// <summary>Messages routed to a module entity by its content hash.</summary>
public interface IWithModuleHash
{
    string Sha256 { get; }
}

/// <summary>Cluster role names.</summary>
public static class Roles
{
    public const string Coordinator = "coordinator";
    public const string Worker = "worker";
    public const string MemoryPool = "memory-pool";
}
