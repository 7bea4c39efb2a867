using System.Buffers;

namespace TrEnv.Engine.Wasm;

/// <summary>A mutable global defined by the module, exported under <see cref="ExportName"/> so templates can capture it.</summary>
public sealed record MutableGlobal(uint Index, string ExportName, byte ValueType);

/// <summary>
/// Rewrites a module so that every mutable global it defines is exported, as Wizer does:
/// instance state is then fully readable through the embedding API even when the guest
/// was built without <c>--export=__stack_pointer</c>.
/// </summary>
public static class ModuleRewriter
{
    private const byte SectionCustom = 0, SectionGlobal = 6, SectionExport = 7;
    private const byte ExternGlobal = 0x03;

    public sealed record Result(byte[] Module, IReadOnlyList<MutableGlobal> Globals);

    public static Result ExportMutableGlobals(ReadOnlySpan<byte> wasm)
    {
        var sections = WasmReader.Sections(wasm);

        // Imported globals take the first indices; the module's own globals follow.
        var importedGlobals = (uint)WasmModuleInfo.Parse(wasm).Imports.Count(i => i.Kind == WasmModuleInfo.KindGlobal);
        var defined = new List<(uint Index, byte Type)>();
        var exportedGlobals = new Dictionary<uint, string>();
        var exportNames = new HashSet<string>(StringComparer.Ordinal);
        var exportEntries = 0u;
        (int Start, int End)? exportBody = null;

        foreach (var (id, start, end) in sections)
        {
            var s = new WasmReader(wasm[..end], start);
            switch (id)
            {
                case SectionGlobal:
                    var count = s.VarU32();
                    for (uint i = 0; i < count; i++)
                    {
                        var type = s.ValueType();
                        var mutable = s.Byte();
                        if (mutable > 1)
                            throw WasmReader.Malformed($"global {i} has an invalid mutability flag {mutable}");
                        s.ConstExpr();
                        if (mutable == 1)
                            defined.Add((importedGlobals + i, type));
                    }
                    break;
                case SectionExport:
                    exportEntries = s.VarU32();
                    for (uint i = 0; i < exportEntries; i++)
                    {
                        var name = s.Name();
                        var kind = s.Byte();
                        var index = s.VarU32();
                        exportNames.Add(name);
                        if (kind == ExternGlobal)
                            exportedGlobals.TryAdd(index, name);
                    }
                    exportBody = (start, end);
                    break;
            }
        }

        var globals = new List<MutableGlobal>();
        var added = new List<(string Name, uint Index)>();
        foreach (var (index, type) in defined)
        {
            if (exportedGlobals.TryGetValue(index, out var existing))
            {
                globals.Add(new MutableGlobal(index, existing, type));
                continue;
            }
            var name = Contracts.GuestAbi.GlobalExportPrefix + index;
            while (!exportNames.Add(name))
                name += "_";
            added.Add((name, index));
            globals.Add(new MutableGlobal(index, name, type));
        }
        if (added.Count == 0)
            return new Result(wasm.ToArray(), globals);

        // New export section: the old entries verbatim, then ours.
        var body = new ArrayBufferWriter<byte>();
        WriteVarU32(body, exportEntries + (uint)added.Count);
        if (exportBody is { } eb)
        {
            var old = new WasmReader(wasm[..eb.End], eb.Start);
            old.VarU32();
            body.Write(wasm[old.Position..eb.End]);
        }
        foreach (var (name, index) in added)
        {
            var nameBytes = System.Text.Encoding.UTF8.GetBytes(name);
            WriteVarU32(body, (uint)nameBytes.Length);
            body.Write(nameBytes);
            body.Write([ExternGlobal]);
            WriteVarU32(body, index);
        }

        var output = new ArrayBufferWriter<byte>(wasm.Length + body.WrittenCount + 16);
        output.Write(wasm[..8]);
        var written = false;
        foreach (var (id, start, end) in sections)
        {
            if (id == SectionExport)
            {
                WriteSection(output, SectionExport, body.WrittenSpan);
                written = true;
                continue;
            }
            if (!written && id != SectionCustom && SectionOrder(id) > SectionOrder(SectionExport))
            {
                WriteSection(output, SectionExport, body.WrittenSpan);
                written = true;
            }
            WriteSection(output, id, wasm[start..end]);
        }
        if (!written)
            WriteSection(output, SectionExport, body.WrittenSpan);
        return new Result(output.WrittenSpan.ToArray(), globals);
    }

    // Binary section order: ids 1-7 in order, then start(8), element(9), datacount(12), code(10), data(11), tag(13) sits after memory.
    private static int SectionOrder(byte id) => id switch
    {
        13 => 55,
        12 => 95,
        10 => 100,
        11 => 110,
        _ => id * 10,
    };

    private static void WriteSection(ArrayBufferWriter<byte> output, byte id, ReadOnlySpan<byte> body)
    {
        output.Write([id]);
        WriteVarU32(output, (uint)body.Length);
        output.Write(body);
    }

    private static void WriteVarU32(ArrayBufferWriter<byte> output, uint value)
    {
        Span<byte> buffer = stackalloc byte[5];
        var n = 0;
        do
        {
            var b = (byte)(value & 0x7F);
            value >>= 7;
            if (value != 0)
                b |= 0x80;
            buffer[n++] = b;
        } while (value != 0);
        output.Write(buffer[..n]);
    }
}
