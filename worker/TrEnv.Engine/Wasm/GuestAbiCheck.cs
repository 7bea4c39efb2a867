using TrEnv.Contracts;

namespace TrEnv.Engine.Wasm;

/// <summary>
/// Guest ABI v1 rules over a module's declarations, what the host links (WASI signatures included), and what
/// templates can capture. Used at deploy time (coordinator, no compile) and when a node compiles a module; one
/// message names every problem, so a module that passes can be instantiated and templated.
/// </summary>
public static class GuestAbiCheck
{
    private const byte I32 = 0x7F, I64 = 0x7E;

    /// <summary>Parses and checks; throws <see cref="InvalidModuleException"/> naming every problem.</summary>
    /// <param name="memoryLimitBytes">The function's memory limit, when known: a module whose memory starts above it is refused.</param>
    public static WasmModuleInfo Check(ReadOnlySpan<byte> wasm, long? memoryLimitBytes = null)
    {
        var info = WasmModuleInfo.Parse(wasm);
        var problems = Problems(info, memoryLimitBytes);
        var functionImports = info.Imports.Count(i => i.Kind == WasmModuleInfo.KindFunc);
        if (CodeScanner.FirstTableWrite(wasm, functionImports) is { } write)
            problems.Add($"function {write.Function} uses {write.Instruction}: templates capture linear memory and globals, not tables, so a table written at run time would be lost on a template start");
        if (problems.Count > 0)
            throw new InvalidModuleException($"The module does not satisfy guest ABI v{GuestAbi.Version}: {string.Join("; ", problems)}.");
        return info;
    }

    public static List<string> Problems(WasmModuleInfo info, long? memoryLimitBytes = null)
    {
        var problems = new List<string>();
        var exports = info.Exports.GroupBy(e => e.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        StateProblems(info, memoryLimitBytes, problems);
        // ruby.wasm (the Ruby runtime) speaks its own wit ABI; the engine adapts it (RubyGuest).
        if (RubyGuest.Is(exports.Keys))
        {
            foreach (var import in info.Imports)
            {
                if (!RubyGuest.Provides(import.Module))
                    problems.Add($"it imports \"{import.Module}\".\"{import.Name}\", which the Ruby adapter does not provide");
                else if (import.Module == GuestAbi.WasiModule)
                    Wasi(import);
            }
            return problems;
        }

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
            else if (import.Module == GuestAbi.WasiModule)
                Wasi(import);
            else
                Signature(import, new FuncType([I32, I32], []));
        }
        return problems;

        void Wasi(WasmImport import)
        {
            if (import.Kind != WasmModuleInfo.KindFunc)
                problems.Add($"it imports \"{import.Module}\".\"{import.Name}\", which is not a function; the host provides only WASI functions");
            else if (WasiPreview1.Find(import.Name) is not { } host)
                problems.Add($"it imports \"{import.Module}\".\"{import.Name}\", which the host's WASI (preview 1) does not have");
            else
                Signature(import, host);
        }

        void Signature(WasmImport import, FuncType host)
        {
            var type = import.TypeIndex < info.Types.Count ? info.Types[(int)import.TypeIndex] : null;
            if (type is null || !type.Is(host.Params, host.Results))
                problems.Add($"it imports \"{import.Module}\".\"{import.Name}\" with type {type?.ToString() ?? "unknown"}, but the host provides {host}");
        }

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

    // What instantiation would refuse, and state a template could not carry.
    private static void StateProblems(WasmModuleInfo info, long? memoryLimitBytes, List<string> problems)
    {
        if (info.Memories.Count > 1)
            problems.Add($"it has {info.Memories.Count} memories; templates capture one linear memory");
        for (var m = 0; m < info.Memories.Count; m++)
        {
            var memory = info.Memories[m];
            if (memory.Shared)
                problems.Add($"memory {m} is shared (threads), which sandboxes cannot restore copy-on-write");
            if (memoryLimitBytes is { } limit && memory.MinBytes > (ulong)limit)
                problems.Add($"memory {m} starts at {Mib(memory.MinBytes)}, over the function's memory limit of {Mib((ulong)limit)} (memoryMb)");
        }
        for (var g = 0; g < info.Globals.Count; g++)
        {
            var global = info.Globals[g];
            if (global.Mutable && !global.Imported && global.Type is not (0x7F or 0x7E or 0x7D or 0x7C))
                problems.Add($"global {g} is a mutable {FuncType.Name(global.Type)}; templates capture mutable globals of i32, i64, f32 and f64 only");
        }
        Segments(info.DataSegments, [.. info.Memories.Select(m => m.MinBytes)], "data", "bytes", "memory", problems);
        Segments(info.ElementSegments, [.. info.Tables.Select(t => t.Min)], "element", "entries", "table", problems);
    }

    // Active segments must land inside their target's initial size, or instantiation fails.
    private static void Segments(List<WasmSegment> segments, ulong[] sizes, string kind, string unit, string target, List<string> problems)
    {
        for (var index = 0; index < segments.Count; index++)
        {
            var segment = segments[index];
            if (segment.Offset is not { } at || segment.Target >= sizes.Length)
                continue;
            var offset = (ulong)at;
            var size = sizes[segment.Target];
            if (offset > size || segment.Length > size - offset)
                problems.Add($"active {kind} segment {index} writes {unit} {offset}..{offset + segment.Length} of {target} {segment.Target}, which starts with {size} {unit}, so instantiation would fail");
        }
    }

    private static string Mib(ulong bytes) => bytes >= 1UL << 50 ? $"{bytes} bytes" : $"{bytes / (1024.0 * 1024):0.##} MiB";
}
