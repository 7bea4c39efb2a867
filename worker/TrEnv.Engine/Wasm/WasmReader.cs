namespace TrEnv.Engine.Wasm;

/// <summary>A bounds-checked cursor over WebAssembly binary bytes; malformed input raises <see cref="InvalidModuleException"/>.</summary>
internal ref struct WasmReader(ReadOnlySpan<byte> bytes, int position = 0)
{
    private readonly ReadOnlySpan<byte> _bytes = bytes;

    public int Position { get; private set; } = position;
    public readonly bool AtEnd => Position >= _bytes.Length;

    public byte Byte()
    {
        if (Position >= _bytes.Length)
            throw Malformed("unexpected end of module");
        return _bytes[Position++];
    }

    public readonly byte Peek() => Position < _bytes.Length ? _bytes[Position] : throw Malformed("unexpected end of module");

    public ulong VarU64()
    {
        ulong result = 0;
        for (var shift = 0; shift < 70; shift += 7)
        {
            var b = Byte();
            result |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
                return result;
        }
        throw Malformed("LEB128 integer is too long");
    }

    public uint VarU32()
    {
        var value = VarU64();
        return value <= uint.MaxValue ? (uint)value : throw Malformed("u32 LEB128 out of range");
    }

    public long VarS64()
    {
        long result = 0;
        var shift = 0;
        byte b;
        do
        {
            if (shift >= 70)
                throw Malformed("LEB128 integer is too long");
            b = Byte();
            result |= (long)(b & 0x7F) << shift;
            shift += 7;
        } while ((b & 0x80) != 0);
        if (shift < 64 && (b & 0x40) != 0)
            result |= -1L << shift;
        return result;
    }

    public void SkipVarS()
    {
        for (var i = 0; i < 10; i++)
        {
            if ((Byte() & 0x80) == 0)
                return;
        }
        throw Malformed("LEB128 integer is too long");
    }

    public void Skip(int count)
    {
        if (count < 0 || Position + count > _bytes.Length)
            throw Malformed("length runs past the end of the module");
        Position += count;
    }

    public void SkipName() => Skip(checked((int)VarU32()));

    public string Name()
    {
        var len = checked((int)VarU32());
        var start = Position;
        Skip(len);
        return System.Text.Encoding.UTF8.GetString(_bytes.Slice(start, len));
    }

    /// <summary>A value type (reference types with a heap type included); returns its first byte.</summary>
    public byte ValueType()
    {
        var type = Byte();
        switch (type)
        {
            case 0x7F or 0x7E or 0x7D or 0x7C or 0x7B or 0x70 or 0x6F:
                return type;
            case 0x63 or 0x64:
                SkipVarS();
                return type;
            default:
                if (type is >= 0x69 and <= 0x74)
                    return type;
                throw Malformed($"unknown value type 0x{type:x2}");
        }
    }

    /// <summary>
    /// Reads a constant expression through its <c>end</c>. Returns its value when it is one integer constant,
    /// or a <c>global.get</c> of a global <paramref name="globals"/> knows; null otherwise.
    /// </summary>
    public long? ConstExpr(IReadOnlyList<long?>? globals = null)
    {
        long? value = null;
        var instructions = 0;
        while (true)
        {
            var op = Byte();
            instructions++;
            switch (op)
            {
                case 0x0B: return instructions == 2 ? value : null;
                case 0x41: value = (uint)(int)VarS64(); break;
                case 0x42: value = VarS64(); break;
                case 0x43: Skip(4); break;
                case 0x44: Skip(8); break;
                case 0x23:
                    var g = VarU32();
                    value = globals is not null && g < globals.Count ? globals[(int)g] : null;
                    break;
                case 0xD2: VarU32(); break;
                case 0xD0: SkipVarS(); break;
                case 0x6A or 0x6B or 0x6C or 0x7C or 0x7D or 0x7E: break;
                case 0xFD:
                    if (VarU32() != 12)
                        throw Malformed("unsupported SIMD instruction in a constant expression");
                    Skip(16);
                    break;
                case 0xFB:
                    throw Malformed("GC instructions in constant expressions are not supported");
                default:
                    throw Malformed($"unsupported opcode 0x{op:x2} in a constant expression");
            }
        }
    }

    /// <summary>Checks the module header and lists its sections as (id, body start, body end).</summary>
    public static List<(byte Id, int Start, int End)> Sections(ReadOnlySpan<byte> wasm)
    {
        if (wasm.Length < 8 || !wasm[..4].SequenceEqual("\0asm"u8))
            throw Malformed("missing the \\0asm magic number");
        if (!wasm[4..8].SequenceEqual(new byte[] { 1, 0, 0, 0 }))
            throw Malformed("only binary format version 1 (core modules) is supported");
        var sections = new List<(byte, int, int)>();
        var r = new WasmReader(wasm, 8);
        while (!r.AtEnd)
        {
            var id = r.Byte();
            var size = checked((int)r.VarU32());
            var start = r.Position;
            r.Skip(size);
            sections.Add((id, start, start + size));
        }
        return sections;
    }

    public static InvalidModuleException Malformed(string what)
        => new($"The module is not valid WebAssembly: {what}.");
}
