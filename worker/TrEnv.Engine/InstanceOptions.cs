namespace TrEnv.Engine;

/// <summary>Per-instance limits and environment. Defaults are the platform's per-function defaults.</summary>
public sealed record InstanceOptions
{
    /// <summary>Linear memory limit; a guest that hits it fails with error kind "memory". Default 256 MiB.</summary>
    public long MemoryLimitBytes { get; init; } = 256L << 20;

    /// <summary>Deadline of one trenv_handle call (epoch interruption). Default 10 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Deadline of each of: instantiation (the start function), _initialize plus trenv_init, and a reseed. Default 10 s.</summary>
    public TimeSpan InitTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Environment variables the guest sees through WASI; nothing is inherited.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>Host directory the guest sees as /tmp; null gives the guest no filesystem at all.</summary>
    public string? TmpDirectory { get; init; }

    /// <summary>
    /// Read-only host directories the guest also sees, at the given guest paths (a script runtime's standard
    /// library). Preopened after /tmp in this order, so a restored instance finds them at the same descriptors.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, string>> ReadOnlyDirectories { get; init; } = [];

    /// <summary>Files that receive the guest's stdout and stderr (truncated per instance); null discards them.</summary>
    public string? StdoutPath { get; init; }
    public string? StderrPath { get; init; }

    /// <summary>Largest input and output of one invocation. Default 6 MiB each, as Lambda.</summary>
    public int MaxInputBytes { get; init; } = 6 << 20;
    public int MaxOutputBytes { get; init; } = 6 << 20;
}
