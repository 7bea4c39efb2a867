using TrEnv.Contracts;
using Wasmtime;

namespace TrEnv.Engine;

/// <summary>A compiled module that satisfies guest ABI v1, with the exports the engine drives.</summary>
public sealed class GuestModule : IDisposable
{
    internal GuestModule(ModuleHash hash, Module module, IReadOnlyList<string> mutableGlobals, bool hasInitialize, bool hasInit, bool hasReseed, bool isRuby = false)
    {
        IsRuby = isRuby;
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

    /// <summary>ruby.wasm: driven through <see cref="RubyGuest"/> instead of the trenv_* exports.</summary>
    public bool IsRuby { get; }

    /// <summary>
    /// Wraps a compiled module. The ABI itself was checked from the bytes before compiling
    /// (<see cref="Wasm.GuestAbiCheck"/>); here only what a template needs is checked: capturable globals.
    /// </summary>
    public static GuestModule Validate(ModuleHash hash, Module module)
    {
        var exports = module.Exports.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        var globals = new List<string>();
        var problems = new List<string>();
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
        var isRuby = RubyGuest.Is(exports);
        if (!exports.Contains(GuestAbi.Memory) || (!isRuby && (!exports.Contains(GuestAbi.Alloc) || !exports.Contains(GuestAbi.Handle))))
            problems.Add($"it lacks one of the required exports {GuestAbi.Memory}, {GuestAbi.Alloc}, {GuestAbi.Handle}");
        if (problems.Count > 0)
        {
            module.Dispose();
            throw new InvalidModuleException($"The module does not satisfy guest ABI v{GuestAbi.Version}: {string.Join("; ", problems)}.");
        }
        return new GuestModule(hash, module, globals, exports.Contains(GuestAbi.Initialize), exports.Contains(GuestAbi.Init), exports.Contains(GuestAbi.Reseed), isRuby);
    }

    public void Dispose() => Module.Dispose();
}
