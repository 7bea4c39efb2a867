using TrEnv.Contracts;
using Wasmtime;

namespace TrEnv.Engine;

/// <summary>A compiled module that satisfies guest ABI v1, with the exports the engine drives.</summary>
public sealed class GuestModule : IDisposable
{
    internal GuestModule(ModuleHash hash, Module module, IReadOnlyList<string> mutableGlobals, bool hasInitialize, bool hasInit, bool hasReseed)
    {
        Hash = hash;
        Module = module;
        MutableGlobals = mutableGlobals;
        HasInitialize = hasInitialize;
        HasInit = hasInit;
        HasReseed = hasReseed;
    }

    public ModuleHash Hash { get; }
    public Module Module { get; }

    /// <summary>Export names of every mutable global; a template records each one.</summary>
    public IReadOnlyList<string> MutableGlobals { get; }
    public bool HasInitialize { get; }
    public bool HasInit { get; }
    public bool HasReseed { get; }

    /// <summary>Checks the ABI v1 exports and imports and names everything that is wrong.</summary>
    public static GuestModule Validate(ModuleHash hash, Module module)
    {
        var problems = new List<string>();
        var exports = module.Exports.ToDictionary(e => e.Name, StringComparer.Ordinal);

        if (!exports.TryGetValue(GuestAbi.Memory, out var mem) || mem is not MemoryExport memory)
            problems.Add($"it does not export its linear memory as \"{GuestAbi.Memory}\"");
        else if (memory.Is64Bit)
            problems.Add("its memory is 64-bit; ABI v1 needs a 32-bit memory");

        RequireFunction(exports, GuestAbi.Alloc, [ValueKind.Int32], [ValueKind.Int32], problems, required: true);
        RequireFunction(exports, GuestAbi.Handle, [ValueKind.Int32, ValueKind.Int32], [ValueKind.Int64], problems, required: true);
        var hasInitialize = RequireFunction(exports, GuestAbi.Initialize, [], [], problems, required: false);
        var hasInit = RequireFunction(exports, GuestAbi.Init, [], [], problems, required: false);
        var hasReseed = RequireFunction(exports, GuestAbi.Reseed, [], [], problems, required: false);
        if (exports.ContainsKey("_start"))
            problems.Add("it exports \"_start\", so it is a WASI command; build it as a reactor (-mexec-model=reactor)");

        foreach (var import in module.Imports)
        {
            if (import.ModuleName != GuestAbi.WasiModule || import is not FunctionImport)
                problems.Add($"it imports \"{import.ModuleName}\".\"{import.Name}\", but only {GuestAbi.WasiModule} functions are provided");
        }

        var globals = new List<string>();
        foreach (var export in module.Exports)
        {
            if (export is GlobalExport g && g.Mutability == Mutability.Mutable)
            {
                if (g.Kind is not (ValueKind.Int32 or ValueKind.Int64 or ValueKind.Float32 or ValueKind.Float64))
                    problems.Add($"its mutable global \"{g.Name}\" has type {g.Kind}, which a template cannot capture");
                else
                    globals.Add(g.Name);
            }
        }

        if (problems.Count > 0)
        {
            module.Dispose();
            throw new InvalidModuleException($"The module does not satisfy guest ABI v{GuestAbi.Version}: {string.Join("; ", problems)}.");
        }
        return new GuestModule(hash, module, globals, hasInitialize, hasInit, hasReseed);
    }

    private static bool RequireFunction(Dictionary<string, Export> exports, string name, ValueKind[] parameters, ValueKind[] results, List<string> problems, bool required)
    {
        if (!exports.TryGetValue(name, out var export))
        {
            if (required)
                problems.Add($"it does not export \"{name}\"");
            return false;
        }
        if (export is not FunctionExport f)
        {
            problems.Add($"its export \"{name}\" is not a function");
            return false;
        }
        if (!f.Parameters.SequenceEqual(parameters) || !f.Results.SequenceEqual(results))
        {
            problems.Add($"\"{name}\" has type ({string.Join(", ", f.Parameters)}) -> ({string.Join(", ", f.Results)}) but ABI v{GuestAbi.Version} needs ({string.Join(", ", parameters)}) -> ({string.Join(", ", results)})");
            return false;
        }
        return true;
    }

    public void Dispose() => Module.Dispose();
}
