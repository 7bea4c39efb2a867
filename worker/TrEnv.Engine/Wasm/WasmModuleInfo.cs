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

/// <summary>An import; <see cref="TypeIndex"/> is its type when it is a function.</summary>
public sealed record WasmImport(string Module, string Name, byte Kind, uint TypeIndex = 0);

public sealed record WasmExport(string Name, byte Kind, uint Index);

/// <summary>A linear memory's declaration; sizes in pages of <c>1 &lt;&lt; PageSizeLog2</c> bytes.</summary>
public sealed record WasmMemory(ulong MinPages, ulong? MaxPages, bool Shared, bool Is64, int PageSizeLog2, bool Imported)
{
    public ulong MinBytes => MinPages >= 1UL << (64 - PageSizeLog2) ? ulong.MaxValue : MinPages << PageSizeLog2;
}

public sealed record WasmTable(byte ElementType, ulong Min, bool Imported);

/// <summary>A global's type; <see cref="Value"/> is its initial value when that is one integer constant.</summary>
public sealed record WasmGlobal(byte Type, bool Mutable, long? Value, bool Imported);

/// <summary>An active data or element segment: where it lands (<see cref="Offset"/> null when not a constant) and how many units it writes.</summary>
public sealed record WasmSegment(uint Target, long? Offset, ulong Length);

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
    public List<WasmMemory> Memories { get; } = [];  // imported first
    public List<WasmTable> Tables { get; } = [];     // imported first
    public List<WasmGlobal> Globals { get; } = [];   // imported first
    public List<WasmSegment> DataSegments { get; } = [];     // active ones, in bytes
    public List<WasmSegment> ElementSegments { get; } = [];  // active ones, in elements

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
                case 4:
                    for (uint i = 0, n = s.VarU32(); i < n; i++)
                        info.Tables.Add(ReadTable(ref s, imported: false));
                    break;
                case 5:
                    for (uint i = 0, n = s.VarU32(); i < n; i++)
                        info.AddMemory(ReadMemory(ref s, imported: false));
                    break;
                case 6:
                    for (uint i = 0, n = s.VarU32(); i < n; i++)
                    {
                        var type = s.ValueType();
                        var mutable = s.Byte() == 1;
                        info.Globals.Add(new WasmGlobal(type, mutable, s.ConstExpr(info.KnownGlobals()), false));
                    }
                    break;
                case 9: info.ReadElements(ref s); break;
                case 11: info.ReadData(ref s); break;
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
            uint typeIndex = 0;
            switch (kind)
            {
                case KindFunc: FunctionTypes.Add(typeIndex = r.VarU32()); break;
                case KindTable: Tables.Add(ReadTable(ref r, imported: true)); break;
                case KindMemory: AddMemory(ReadMemory(ref r, imported: true)); break;
                case KindGlobal:
                    var type = r.ValueType();
                    Globals.Add(new WasmGlobal(type, r.Byte() == 1, null, true));
                    break;
                case 0x04: r.Byte(); r.VarU32(); break;
                default: throw WasmReader.Malformed($"import {i} has an unknown kind 0x{kind:x2}");
            }
            Imports.Add(new WasmImport(module, name, kind, typeIndex));
        }
    }

    private void AddMemory(WasmMemory memory)
    {
        Memories.Add(memory);
        Memory64.Add(memory.Is64);
    }

    private static WasmMemory ReadMemory(ref WasmReader r, bool imported)
    {
        var flags = r.Byte();
        var min = r.VarU64();
        ulong? max = (flags & 0x01) != 0 ? r.VarU64() : null;
        var pageSizeLog2 = (flags & 0x08) != 0 ? (int)Math.Min(r.VarU32(), 63) : 16;
        return new WasmMemory(min, max, (flags & 0x02) != 0, (flags & 0x04) != 0, pageSizeLog2, imported);
    }

    private static WasmTable ReadTable(ref WasmReader r, bool imported)
    {
        // A table with an initialiser (function references) starts 0x40 0x00.
        var withInit = !imported && r.Peek() == 0x40;
        if (withInit)
        {
            r.Byte();
            r.Byte();
        }
        var type = r.ValueType();
        var flags = r.Byte();
        var min = r.VarU64();
        if ((flags & 0x01) != 0)
            r.VarU64();
        if (withInit)
            r.ConstExpr();
        return new WasmTable(type, min, imported);
    }

    private List<long?> KnownGlobals() => [.. Globals.Select(g => g.Mutable || g.Imported ? null : g.Value)];

    private void ReadElements(ref WasmReader r)
    {
        var globals = KnownGlobals();
        for (uint i = 0, n = r.VarU32(); i < n; i++)
        {
            var flags = r.VarU32();
            if (flags > 7)
                throw WasmReader.Malformed($"element segment {i} has unknown flags {flags}");
            var active = (flags & 0x01) == 0;
            uint table = 0;
            long? offset = null;
            if (active)
            {
                if ((flags & 0x02) != 0)
                    table = r.VarU32();
                offset = r.ConstExpr(globals);
            }
            var expressions = (flags & 0x04) != 0;
            if ((flags & 0x03) != 0)
            {
                if (expressions)
                    r.ValueType();
                else
                    r.Byte(); // elemkind
            }
            var count = r.VarU32();
            for (uint e = 0; e < count; e++)
            {
                if (expressions)
                    r.ConstExpr();
                else
                    r.VarU32();
            }
            if (active)
                ElementSegments.Add(new WasmSegment(table, offset, count));
        }
    }

    private void ReadData(ref WasmReader r)
    {
        var globals = KnownGlobals();
        for (uint i = 0, n = r.VarU32(); i < n; i++)
        {
            var flags = r.VarU32();
            if (flags > 2)
                throw WasmReader.Malformed($"data segment {i} has unknown flags {flags}");
            uint memory = flags == 2 ? r.VarU32() : 0;
            long? offset = flags == 1 ? null : r.ConstExpr(globals);
            var length = r.VarU32();
            r.Skip(checked((int)length));
            if (flags != 1)
                DataSegments.Add(new WasmSegment(memory, offset, length));
        }
    }
}
