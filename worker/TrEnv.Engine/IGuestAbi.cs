using Wasmtime;

namespace TrEnv.Engine;

/// <summary>
/// How the engine drives one instance's exports. Chosen once, when the instance is created: the platform's own ABI
/// (<c>trenv_alloc</c>/<c>trenv_handle</c>, which the C guests and the Python shim export), or an adapter for a
/// runtime that exports another (Ruby's wit-bindgen functions).
/// </summary>
internal interface IGuestAbi
{
    /// <summary>The guest's own initialisation after the module's <c>_initialize</c>, under the init deadline.</summary>
    void Initialize(string? tmpDirectory);

    /// <summary>Runs one call under the call's deadline and returns the output, or throws an <see cref="EngineException"/>.</summary>
    byte[] Invoke(ReadOnlySpan<byte> input);

    /// <summary>Whether <see cref="Reseed"/> does anything: a restore skips the call otherwise.</summary>
    bool CanReseed { get; }

    /// <summary>A new random state after a restore, so restored instances do not share a sequence.</summary>
    void Reseed();
}

/// <summary>Picks the <see cref="IGuestAbi"/> a module speaks, and defines the imports that ABI needs.</summary>
internal static class GuestAbis
{
    public static void DefineImports(WasmEngine engine, GuestModule module)
    {
        if (module.IsRuby)
            RubyGuest.DefineImports(engine.Linker, module.Module, engine.DefinedImports);
    }

    public static IGuestAbi For(FunctionInstance owner, GuestModule module, Instance instance, Memory memory)
        => module.IsRuby
            ? new RubyGuest(instance, memory, module.Module.Exports.Select(e => e.Name), owner.Options.MaxOutputBytes)
            : new NativeGuest(owner, module, instance);
}
