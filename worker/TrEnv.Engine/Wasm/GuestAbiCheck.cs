using TrEnv.Contracts;

namespace TrEnv.Engine.Wasm;

/// <summary>
/// Guest ABI v1 rules over a module's declarations. Used at deploy time (coordinator, no compile) and
/// at load time (sandbox); one message names every problem.
/// </summary>
public static class GuestAbiCheck
{
    private const byte I32 = 0x7F, I64 = 0x7E;

    /// <summary>Parses and checks; throws <see cref="InvalidModuleException"/> naming every problem.</summary>
    public static WasmModuleInfo Check(ReadOnlySpan<byte> wasm)
    {
        var info = WasmModuleInfo.Parse(wasm);
        var problems = Problems(info);
        if (problems.Count > 0)
            throw new InvalidModuleException($"The module does not satisfy guest ABI v{GuestAbi.Version}: {string.Join("; ", problems)}.");
        return info;
    }

    public static List<string> Problems(WasmModuleInfo info)
    {
        var problems = new List<string>();
        var exports = info.Exports.GroupBy(e => e.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        // ruby.wasm (the Ruby runtime) speaks its own wit ABI; the engine adapts it (RubyGuest).
        if (RubyGuest.Is(exports.Keys))
            return [.. info.Imports.Where(i => !RubyGuest.Provides(i.Module)).Select(i => $"it imports \"{i.Module}\".\"{i.Name}\", which the Ruby adapter does not provide")];

        if (!exports.TryGetValue(GuestAbi.Memory, out var memory) || memory.Kind != WasmModuleInfo.KindMemory)
            problems.Add($"it does not export its linear memory as \"{GuestAbi.Memory}\"");
        else if (memory.Index < info.Memory64.Count && info.Memory64[(int)memory.Index])
            problems.Add("its memory is 64-bit; ABI v1 needs a 32-bit memory");

        Function(GuestAbi.Alloc, [I32], [I32], required: true);
        Function(GuestAbi.Handle, [I32, I32], [I64], required: true);
        Function(GuestAbi.Initialize, [], [], required: false);
        Function(GuestAbi.Init, [], [], required: false);
        Function(GuestAbi.Reseed, [], [], required: false);
        if (exports.ContainsKey("_start"))
            problems.Add("it exports \"_start\", so it is a WASI command; build it as a reactor (-mexec-model=reactor)");
        foreach (var import in info.Imports)
        {
            var provided = import.Module == GuestAbi.WasiModule || (import.Module == GuestAbi.ImportModule && import.Name == GuestAbi.ErrorImport);
            if (!provided || import.Kind != WasmModuleInfo.KindFunc)
                problems.Add($"it imports \"{import.Module}\".\"{import.Name}\", but only {GuestAbi.WasiModule} functions and {GuestAbi.ImportModule}.{GuestAbi.ErrorImport} are provided");
        }
        return problems;

        void Function(string name, byte[] parameters, byte[] results, bool required)
        {
            if (!exports.TryGetValue(name, out var export))
            {
                if (required)
                    problems.Add($"it does not export \"{name}\"");
                return;
            }
            if (export.Kind != WasmModuleInfo.KindFunc)
            {
                problems.Add($"its export \"{name}\" is not a function");
                return;
            }
            var type = info.FunctionType(export.Index);
            var wanted = new FuncType(parameters, results);
            if (type is null || !type.Is(parameters, results))
                problems.Add($"\"{name}\" has type {type?.ToString() ?? "unknown"} but ABI v{GuestAbi.Version} needs {wanted}");
        }
    }
}
