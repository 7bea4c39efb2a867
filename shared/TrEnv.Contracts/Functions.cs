namespace TrEnv.Contracts;

/// <summary>Per-version limits and environment of a function, as given at deploy time.</summary>
/// <param name="CpuMillicores">CPU quota of each sandbox in thousandths of a core; 0 is no quota.</param>
/// <param name="Network">True when the function's sandboxes keep the node's network; otherwise they have none.</param>
/// <param name="Layer">SHA-256 of the file layer (a stored tar) the guest sees under /tmp, or null.</param>
/// <param name="Runtime">A script runtime ("python"): the module is the runtime's and the layer holds the script; null for a module.</param>
/// <param name="InitTimeoutMs">Deadline of instantiation (start function included) and of initialisation, each; also bounds a reseed.</param>
/// <param name="TmpMb">Bound of what the guest may write under /tmp (its writes past it fail with ENOSPC inside the guest).</param>
public sealed record FunctionLimits(int MemoryMb, int TimeoutMs, int Concurrency, IReadOnlyDictionary<string, string> Env,
    int CpuMillicores = 0, bool Network = false, string? Layer = null, string? Runtime = null,
    int InitTimeoutMs = FunctionLimits.DefaultInitTimeoutMs, int TmpMb = FunctionLimits.DefaultTmpMb)
{
    public const int DefaultMemoryMb = 256;
    public const int DefaultTimeoutMs = 10_000;
    public const int DefaultConcurrency = 16;
    public const int MaxMemoryMb = 4096;
    public const int MaxTimeoutMs = 900_000;
    public const int MaxCpuMillicores = 64_000;
    public const int DefaultInitTimeoutMs = 10_000;
    public const int MaxInitTimeoutMs = 300_000;
    public const int DefaultTmpMb = 512;
    public const int MaxTmpMb = 10_240;

    /// <summary>The memory a sandbox's group may hold for these limits: the guest's linear memory twice (the
    /// wasm limit bounds it; the host's copy-on-write and page cache take up to as much again), /tmp (tmpfs) and
    /// the host's own overhead.</summary>
    public long SandboxMemoryBytes(long hostOverheadBytes) => 2L * ((long)MemoryMb << 20) + ((long)TmpMb << 20) + hostOverheadBytes;

    public static FunctionLimits Default { get; } = new(DefaultMemoryMb, DefaultTimeoutMs, DefaultConcurrency, new Dictionary<string, string>());

    public bool SameAs(FunctionLimits other)
        => MemoryMb == other.MemoryMb && TimeoutMs == other.TimeoutMs && Concurrency == other.Concurrency
           && CpuMillicores == other.CpuMillicores && Network == other.Network && Layer == other.Layer && Runtime == other.Runtime
           && InitTimeoutMs == other.InitTimeoutMs && TmpMb == other.TmpMb
           && Env.Count == other.Env.Count && Env.All(kv => other.Env.TryGetValue(kv.Key, out var v) && v == kv.Value);
}

/// <summary>One deployed version: the module's content hash plus its limits.</summary>
public sealed record FunctionVersion(int Version, string Sha256, long SizeBytes, FunctionLimits Limits, DateTimeOffset DeployedAt);

/// <summary>Commands to the sharded function entity.</summary>
public static class FunctionCommands
{
    public interface IFunctionCommand : IWithFunctionName, IProtocolMessage;

    /// <summary>Deploys a module already stored by hash; the same hash and limits again is a no-op.</summary>
    public sealed record Deploy(string Name, string Sha256, long SizeBytes, FunctionLimits Limits) : IFunctionCommand;

    public sealed record Delete(string Name) : IFunctionCommand;

    public sealed record Get(string Name) : IFunctionCommand;
}

/// <summary>Replies of the function entity.</summary>
public static class FunctionReplies
{
    public interface IFunctionReply : IProtocolMessage;

    public sealed record Deployed(string Name, int Version, string Sha256, bool Created) : IFunctionReply;

    public sealed record Deleted(string Name, bool Existed) : IFunctionReply;

    /// <summary>The function's state; <see cref="Current"/> is null when it was never deployed or is deleted.</summary>
    public sealed record View(string Name, FunctionVersion? Current, IReadOnlyList<FunctionVersion> Versions, bool Deleted) : IFunctionReply;
}

/// <summary>Events of the function entity; tagged "function" so coordinators can build their catalog.</summary>
public static class FunctionEvents
{
    public const string Tag = "function";

    public sealed record VersionAdded(string Name, FunctionVersion Version) : IEvent;

    public sealed record Deleted(string Name, DateTimeOffset At) : IEvent;
}
