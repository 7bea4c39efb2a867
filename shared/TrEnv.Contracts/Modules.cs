namespace TrEnv.Contracts;

/// <summary>Content-addressed module storage: a module entity per SHA-256, so the same bytes are stored once.</summary>
public static class ModuleCommands
{
    public interface IModuleCommand : IWithModuleHash, IProtocolMessage;

    public sealed record Store(string Sha256, byte[] Wasm) : IModuleCommand;

    public sealed record Fetch(string Sha256) : IModuleCommand;

    /// <summary>Whether the bytes are stored, without sending them.</summary>
    public sealed record Has(string Sha256) : IModuleCommand;
}

public static class ModuleReplies
{
    public sealed record Stored(string Sha256, long SizeBytes) : IProtocolMessage;

    /// <summary>The module's bytes, or null when no module has that hash.</summary>
    public sealed record Content(string Sha256, byte[]? Wasm) : IProtocolMessage;

    public sealed record Holds(string Sha256, bool Stored, long SizeBytes) : IProtocolMessage;
}

public static class ModuleEvents
{
    public sealed record Added(string Sha256, byte[] Wasm) : IEvent;
}
