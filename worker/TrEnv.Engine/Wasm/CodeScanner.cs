namespace TrEnv.Engine.Wasm;

/// <summary>
/// Walks every instruction of a module's code section, decoding immediates, to find instructions whose effect a
/// template cannot carry. Templates capture linear memory and globals; a table written at run time (during init
/// above all) would be silently lost on a template start, so such modules are refused at deploy.
/// </summary>
public static class CodeScanner
{
    /// <summary>A table-writing instruction and the function (index among all functions) that holds it.</summary>
    public sealed record Finding(string Instruction, uint Function);

    /// <summary>The first table-writing instruction in the module, or null when it has none.</summary>
    public static Finding? FirstTableWrite(ReadOnlySpan<byte> wasm, int importedFunctions)
    {
        foreach (var (id, start, end) in WasmReader.Sections(wasm))
        {
            if (id != 10)
                continue;
            var r = new WasmReader(wasm[..end], start);
            var count = r.VarU32();
            for (uint f = 0; f < count; f++)
            {
                var size = checked((int)r.VarU32());
                var bodyEnd = r.Position + size;
                var body = new WasmReader(wasm[..bodyEnd], r.Position);
                for (uint groups = body.VarU32(), g = 0; g < groups; g++)
                {
                    body.VarU32();
                    body.ValueType();
                }
                while (!body.AtEnd)
                {
                    if (Instruction(ref body) is { } found)
                        return new Finding(found, (uint)importedFunctions + f);
                }
                r.Skip(size);
            }
        }
        return null;
    }

    // Decodes one instruction; returns its name when it writes a table.
    private static string? Instruction(ref WasmReader r)
    {
        var at = r.Position;
        var op = r.Byte();
        switch (op)
        {
            case <= 0x01 or 0x05 or 0x0A or 0x0B or 0x0F or 0x19 or 0x1A or 0x1B or 0xD1 or 0xD3 or 0xD5:
                return null;
            case 0x02 or 0x03 or 0x04 or 0x06:
                BlockType(ref r);
                return null;
            case 0x07 or 0x08 or 0x09 or 0x0C or 0x0D or 0x10 or 0x12 or 0x14 or 0x15 or 0x18 or 0xD2 or 0xD4 or 0xD6:
                r.VarU32();
                return null;
            case 0x0E:
                for (uint i = 0, n = r.VarU32(); i <= n; i++)
                    r.VarU32();
                return null;
            case 0x11 or 0x13:
                r.VarU32();
                r.VarU32();
                return null;
            case 0x1C:
                for (uint i = 0, n = r.VarU32(); i < n; i++)
                    r.ValueType();
                return null;
            case 0x1F:
                BlockType(ref r);
                for (uint i = 0, n = r.VarU32(); i < n; i++)
                {
                    var kind = r.Byte();
                    if (kind > 3)
                        throw Unknown(at, $"try_table catch kind {kind}");
                    if (kind < 2)
                        r.VarU32();
                    r.VarU32();
                }
                return null;
            case >= 0x20 and <= 0x25:
                r.VarU32();
                return null;
            case 0x26:
                r.VarU32();
                return "table.set";
            case >= 0x28 and <= 0x3E:
                MemArg(ref r);
                return null;
            case 0x3F or 0x40:
                r.VarU32();
                return null;
            case 0x41 or 0x42:
                r.SkipVarS();
                return null;
            case 0x43:
                r.Skip(4);
                return null;
            case 0x44:
                r.Skip(8);
                return null;
            case >= 0x45 and <= 0xC4:
                return null;
            case 0xD0:
                r.SkipVarS();
                return null;
            case 0xFC:
                return Misc(ref r, at);
            case 0xFD:
                Simd(ref r, at);
                return null;
            case 0xFE:
                Atomic(ref r, at);
                return null;
            default:
                throw Unknown(at, $"opcode 0x{op:x2}");
        }
    }

    private static string? Misc(ref WasmReader r, int at)
    {
        var sub = r.VarU32();
        switch (sub)
        {
            case <= 7:
                return null;
            case 8 or 10 or 14:
                r.VarU32();
                r.VarU32();
                return sub switch { 14 => "table.copy", _ => null };
            case 9 or 11 or 13 or 16:
                r.VarU32();
                return null;
            case 12:
                r.VarU32();
                r.VarU32();
                return "table.init";
            case 15:
                r.VarU32();
                return "table.grow";
            case 17:
                r.VarU32();
                return "table.fill";
            default:
                throw Unknown(at, $"instruction 0xfc {sub}");
        }
    }

    private static void Simd(ref WasmReader r, int at)
    {
        var sub = r.VarU32();
        switch (sub)
        {
            case <= 11 or 92 or 93:
                MemArg(ref r);
                break;
            case 12 or 13:
                r.Skip(16);
                break;
            case >= 21 and <= 34:
                r.Byte();
                break;
            case >= 84 and <= 91:
                MemArg(ref r);
                r.Byte();
                break;
            case <= 0x113:
                break;
            default:
                throw Unknown(at, $"SIMD instruction 0xfd {sub}");
        }
    }

    private static void Atomic(ref WasmReader r, int at)
    {
        var sub = r.VarU32();
        if (sub == 0x03)
            r.Byte();
        else if (sub is <= 0x02 or (>= 0x10 and <= 0x4E))
            MemArg(ref r);
        else
            throw Unknown(at, $"atomic instruction 0xfe {sub}");
    }

    private static void MemArg(ref WasmReader r)
    {
        var align = r.VarU32();
        if ((align & 0x40) != 0)
            r.VarU32(); // memory index (multi-memory)
        r.VarU64();
    }

    private static void BlockType(ref WasmReader r)
    {
        var first = r.Peek();
        if (first == 0x40)
            r.Byte();
        else if (first is 0x63 or 0x64 or 0x7F or 0x7E or 0x7D or 0x7C or 0x7B or 0x70 or 0x6F || first is >= 0x69 and <= 0x74)
            r.ValueType();
        else
            r.SkipVarS(); // a type index
    }

    private static InvalidModuleException Unknown(int at, string what)
        => new($"The module uses {what} (at byte {at}), which TrEnv cannot check for state its templates would miss.");
}
