using TrEnv.Contracts;
using TrEnv.Engine.Wasm;
using Wasmtime;

namespace TrEnv.Engine;

/// <summary>
/// Content-addressed module store on disk: <c>HASH.wasm</c> holds the bytes as deployed and
/// <c>HASH.cwasm</c> the rewritten, precompiled artifact, so each module is compiled once per machine.
/// </summary>
public sealed class ModuleCache
{
    private readonly WasmEngine _engine;

    public ModuleCache(WasmEngine engine, string directory)
    {
        _engine = engine;
        Directory = directory;
        System.IO.Directory.CreateDirectory(directory);
    }

    public string Directory { get; }

    public string WasmPath(ModuleHash hash) => Path.Combine(Directory, hash.Hex + ".wasm");
    public string CompiledPath(ModuleHash hash) => Path.Combine(Directory, hash.Hex + ".cwasm");

    /// <summary>Stores module bytes under their hash (idempotent) without compiling them.</summary>
    public ModuleHash Put(ReadOnlySpan<byte> wasm) => Put(Directory, wasm);

    /// <summary>Stores module bytes in a cache directory without an engine: what a worker does before a sandbox loads them.</summary>
    public static ModuleHash Put(string directory, ReadOnlySpan<byte> wasm)
    {
        System.IO.Directory.CreateDirectory(directory);
        var hash = ModuleHash.Of(wasm);
        var path = Path.Combine(directory, hash.Hex + ".wasm");
        if (!File.Exists(path))
            WriteAtomically(path, wasm);
        return hash;
    }

    /// <summary>Stores, validates and compiles module bytes; the usual entry point for a deploy.</summary>
    public GuestModule Add(ReadOnlySpan<byte> wasm) => Load(Put(wasm));

    /// <summary>Loads a module by hash: the precompiled artifact when present, else compile and cache it.</summary>
    public GuestModule Load(ModuleHash hash)
    {
        var compiled = CompiledPath(hash);
        if (File.Exists(compiled))
        {
            try
            {
                return GuestModule.Validate(hash, Module.DeserializeFile(_engine.Engine, hash.Hex, compiled));
            }
            catch (WasmtimeException)
            {
                // Written by another Wasmtime version or configuration: compile afresh below.
                File.Delete(compiled);
            }
        }

        var source = WasmPath(hash);
        if (!File.Exists(source))
            throw new EngineException(ErrorKinds.InvalidModule, $"Module {hash} is not in the module cache at {Directory}.");
        var wasm = File.ReadAllBytes(source);
        if (ModuleHash.Of(wasm) != hash)
            throw new InvalidModuleException($"Cached module {source} does not match its hash; it was modified on disk.");

        var module = Compile(hash, wasm);
        var guest = GuestModule.Validate(hash, module);
        WriteAtomically(compiled, module.Serialize());
        return guest;
    }

    private Module Compile(ModuleHash hash, byte[] wasm)
    {
        var error = Module.Validate(_engine.Engine, wasm);
        if (error is not null)
            throw new InvalidModuleException($"The module is not valid WebAssembly: {error}");
        GuestAbiCheck.Check(wasm);
        var rewritten = ModuleRewriter.ExportMutableGlobals(wasm);
        try
        {
            return Module.FromBytes(_engine.Engine, hash.Hex, rewritten.Module);
        }
        catch (WasmtimeException e)
        {
            throw new InvalidModuleException($"The module could not be compiled: {e.Message}", e);
        }
    }

    private static void WriteAtomically(string path, ReadOnlySpan<byte> bytes)
    {
        var temp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            stream.Write(bytes);
        File.Move(temp, path, overwrite: true);
    }
}
