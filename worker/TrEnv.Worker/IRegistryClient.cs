using TrEnv.Contracts;

namespace TrEnv.Worker;

/// <summary>What the sandbox manager needs from the cluster: module bytes and the template registry. Off the warm path.</summary>
public interface IRegistryClient
{
    Task<byte[]?> FetchModuleAsync(string sha256, CancellationToken ct);

    Task<IProtocolMessage> BeginCaptureAsync(TemplateCommands.BeginCapture begin, CancellationToken ct);

    Task<IProtocolMessage> SealAsync(TemplateCommands.Seal seal, CancellationToken ct);

    void AbortCapture(TemplateCommands.AbortCapture abort);

    void ReportMappings(TemplateCommands.Mappings mappings);

    /// <summary>A region of the pool for a session's delta, from the allocator on the memory-pool node.</summary>
    Task<IProtocolMessage> AllocateAsync(string owner, long bytes, CancellationToken ct);

    /// <summary>Waits until the pool has a durable copy of the owner's region.</summary>
    Task<PoolReplies.Durable> SaveDurableAsync(string owner, CancellationToken ct);

    void FreeRegion(string owner);

    /// <summary>Tells the session's entity that its sandbox here has been idle past its timeout.</summary>
    void SessionIdle(SessionCommands.IdleExpired idle);
}
