namespace TrEnv.Cluster;

/// <summary>TRENV_POOL_MODE: how workers reach templates.</summary>
public enum PoolMode
{
    /// <summary>Map the shared pool file (a CXL-like byte-addressable region every node maps).</summary>
    Cxl,

    /// <summary>Through the memory-pool service over gRPC into a node-local mirror; the pool file is never opened.</summary>
    Rdma,
}

/// <summary>TRENV_POOL_FETCH: in rdma mode, when a template's pages cross the network.</summary>
public enum PoolFetch
{
    /// <summary>Whole, before its first restore on the node.</summary>
    Eager,

    /// <summary>Page windows on first touch (userfaultfd).</summary>
    Lazy,

    /// <summary>The template's recorded working set first, the rest lazily.</summary>
    Prefetch,
}

/// <summary>TRENV_SANDBOX_ISOLATION.</summary>
public enum SandboxIsolation
{
    /// <summary>Namespaces, an own root and cgroups when the worker may make them; each one missing is said and reported.</summary>
    Auto,

    /// <summary>Plain processes.</summary>
    Process,
}

/// <summary>Reads a setting's enum by its lowercase name, as the environment spells it.</summary>
public static class NodeChoices
{
    public static T Parse<T>(string key, string? text, T fallback)
        where T : struct, Enum
    {
        if (text is null)
            return fallback;
        foreach (var value in Enum.GetValues<T>())
        {
            if (string.Equals(Name(value), text, StringComparison.OrdinalIgnoreCase))
                return value;
        }
        var names = Enum.GetValues<T>().Select(Name).ToList();
        throw new ArgumentException($"TRENV_{key} must be {string.Join(", ", names[..^1])} or {names[^1]}, not \"{text}\".");
    }

    /// <summary>The name the environment uses: <c>cxl</c>, <c>prefetch</c>, <c>process</c>.</summary>
    public static string Name<T>(T value)
        where T : struct, Enum
        => value.ToString().ToLowerInvariant();
}
