namespace TrEnv.Engine.Wasm;

/// <summary>A function signature as value-type bytes (0x7F i32, 0x7E i64, ...).</summary>
public sealed record FuncType(byte[] Params, byte[] Results)
{
    public bool Is(byte[] parameters, byte[] results) => Params.AsSpan().SequenceEqual(parameters) && Results.AsSpan().SequenceEqual(results);

    public override string ToString() => $"({string.Join(", ", Params.Select(Name))}) -> ({string.Join(", ", Results.Select(Name))})";

    public static string Name(byte t) => t switch
    {
        0x7F => "i32",
        0x7E => "i64",
        0x7D => "f32",
        0x7C => "f64",
        0x7B => "v128",
        0x70 => "funcref",
        0x6F => "externref",
        _ => $"0x{t:x2}",
    };
}

public sealed record WasmImport(string Module, string Name, byte Kind);

public sealed record WasmExport(string Name, byte Kind, uint Index);

/// <summary>
/// What a module declares, read from its sections without compiling it: types, imports, function
/// signatures, memories and exports. Lets a coordinator check the guest ABI in microseconds.
/// </summary>
public sealed class WasmModuleInfo
{
    public const byte KindFunc = 0, KindTable = 1, KindMemory = 2, KindGlobal = 3;

    public List<FuncType> Types { get; } = [];
    public List<WasmImport> Imports { get; } = [];
    public List<uint> FunctionTypes { get; } = [];  // imported functions first, then defined ones
    public List<bool> Memory64 { get; } = [];       // imported memories first
    public List<WasmExport> Exports { get; } = [];

    public FuncType? FunctionType(uint index)
        => index < FunctionTypes.Count && FunctionTypes[(int)index] < Types.Count ? Types[(int)FunctionTypes[(int)index]] : null;

    public static WasmModuleInfo Parse(ReadOnlySpan<byte> wasm)
    {
        var info = new WasmModuleInfo();
        foreach (var (id, start, end) in WasmReader.Sections(wasm))
        {
            var s = new WasmReader(wasm[..end], start);
            switch (id)
            {
                case 1: info.ReadTypes(ref s); break;
                case 2: info.ReadImports(ref s); break;
                case 3:
                    for (uint i = 0, n = s.VarU32(); i < n; i++)
                        info.FunctionTypes.Add(s.VarU32());
                    break;
                case 5:
                    for (uint i = 0, n = s.VarU32(); i < n; i++)
                        info.Memory64.Add(ReadMemory64(ref s));
                    break;
                case 7:
                    for (uint i = 0, n = s.VarU32(); i < n; i++)
                        info.Exports.Add(new WasmExport(s.Name(), s.Byte(), s.VarU32()));
                    break;
            }
        }
        return info;
    }

    private void ReadTypes(ref WasmReader r)
    {
        for (uint i = 0, n = r.VarU32(); i < n; i++)
        {
            var form = r.Byte();
            if (form != 0x60)
            {
                // GC proposal composite types are not function types; record a placeholder to keep indices.
                Types.Add(new FuncType([form], []));
                return;
            }
            var ps = new byte[r.VarU32()];
            for (var p = 0; p < ps.Length; p++)
                ps[p] = r.Byte();
            var rs = new byte[r.VarU32()];
            for (var p = 0; p < rs.Length; p++)
                rs[p] = r.Byte();
            Types.Add(new FuncType(ps, rs));
        }
    }

    private void ReadImports(ref WasmReader r)
    {
        for (uint i = 0, n = r.VarU32(); i < n; i++)
        {
            var module = r.Name();
            var name = r.Name();
            var kind = r.Byte();
            Imports.Add(new WasmImport(module, name, kind));
            switch (kind)
            {
                case KindFunc: FunctionTypes.Add(r.VarU32()); break;
                case KindTable: r.Byte(); SkipLimits(ref r); break;
                case KindMemory: Memory64.Add(ReadMemory64(ref r)); break;
                case KindGlobal: r.Byte(); r.Byte(); break;
                case 0x04: r.Byte(); r.VarU32(); break;
                default: throw WasmReader.Malformed($"import {i} has an unknown kind 0x{kind:x2}");
            }
        }
    }

    private static bool ReadMemory64(ref WasmReader r)
    {
        var flags = r.Byte();
        r.VarU64();
        if ((flags & 0x01) != 0)
            r.VarU64();
        if ((flags & 0x08) != 0)
            r.VarU32();
        return (flags & 0x04) != 0;
    }

    private static void SkipLimits(ref WasmReader r)
    {
        var flags = r.Byte();
        r.VarU64();
        if ((flags & 0x01) != 0)
            r.VarU64();
    }
}
