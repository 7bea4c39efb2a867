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
