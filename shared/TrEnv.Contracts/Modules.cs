namespace TrEnv.Contracts;

/// <summary>Content-addressed module storage: a module entity per SHA-256, so the same bytes are stored once.</summary>
public static class ModuleCommands
{
    public interface IModuleCommand : IWithModuleHash, IProtocolMessage;

    public sealed record Store(string Sha256, byte[] Wasm) : IModuleCommand;

    public sealed record Fetch(string Sha256) : IModuleCommand;

    /// <summary>Whether the bytes are stored, without sending them.</summary>
    public sealed record Has(string Sha256) : IModuleCommand;

    /// <summary>
    /// Removes the bytes from the journal unless a store or a deploy referenced them at or after
    /// <paramref name="UnreferencedSince"/>; the coordinators' sweep sends it for bytes nothing references.
    /// </summary>
    public sealed record Remove(string Sha256, DateTimeOffset UnreferencedSince) : IModuleCommand;
}

public static class ModuleReplies
{
    public sealed record Stored(string Sha256, long SizeBytes) : IProtocolMessage;

    /// <summary>The module's bytes, or null when no module has that hash.</summary>
    public sealed record Content(string Sha256, byte[]? Wasm) : IProtocolMessage;

    public sealed record Holds(string Sha256, bool Stored, long SizeBytes) : IProtocolMessage;

    public sealed record Removed(string Sha256, bool Done, string Why) : IProtocolMessage;
}

public static class ModuleEvents
{
    public sealed record Added(string Sha256, byte[] Wasm) : IEvent;

    /// <summary>A store or a deploy named the bytes at <paramref name="At"/>.</summary>
    public sealed record Referenced(string Sha256, DateTimeOffset At) : IEvent;

    /// <summary>The bytes were removed; the events before this one are deleted from the journal.</summary>
    public sealed record Dropped(string Sha256, DateTimeOffset At) : IEvent;
}
