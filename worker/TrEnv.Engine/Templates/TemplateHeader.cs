using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using TrEnv.Contracts;

namespace TrEnv.Engine.Templates;

/// <summary>One captured mutable global: its export name, Wasmtime value kind and raw bits.</summary>
public sealed record GlobalValue(string ExportName, byte Kind, ulong Bits);

/// <summary>A run of non-zero 4 KiB pages: where it sits in linear memory and in the template's pool region.</summary>
public readonly record struct PageRun(long MemoryOffset, long Length, long RegionOffset, ulong Hash);

/// <summary>
/// The immutable description of a captured instance. Its bytes are versioned and checksummed; the page
/// data lives in a pool region and each run carries an XxHash3 of its bytes for verification.
/// A <em>delta</em> (a paused session) has a non-zero <see cref="BaseChecksum"/>: its runs are only the pages
/// that differ from that base template, and <see cref="ZeroRuns"/> are pages the base holds but the session zeroed.
/// </summary>
public sealed record TemplateHeader(
    ModuleHash Module,
    long MemoryBytes,
    IReadOnlyList<GlobalValue> Globals,
    IReadOnlyList<PageRun> Runs,
    long RegionOffset,
    long RegionLength,
    DateTimeOffset CapturedAt,
    string CapturedBy)
{
    /// <summary>The version a template is written in; a delta is written as <see cref="DeltaFormatVersion"/>.</summary>
    public const int FormatVersion = 1;
    public const int DeltaFormatVersion = 2;

    /// <summary>For a delta, <see cref="Checksum"/> of the template it applies over; 0 for a template or a full image.</summary>
    public ulong BaseChecksum { get; init; }

    /// <summary>For a delta, (memory offset, length) ranges the base template holds that are zero in the session.</summary>
    public IReadOnlyList<(long MemoryOffset, long Length)> ZeroRuns { get; init; } = [];

    public bool IsDelta => BaseChecksum != 0 || ZeroRuns.Count > 0;

    /// <summary>The header's identity: the XxHash3 of its bytes.</summary>
    public ulong Checksum => XxHash3.HashToUInt64(ToBytes());
    public const int PageSize = 4096;
    private static ReadOnlySpan<byte> Magic => "TRENVTPL"u8;

    public long NonZeroPages => Runs.Sum(r => r.Length) / PageSize;
    public long StoredBytes => Runs.Sum(r => r.Length);

    public byte[] ToBytes()
    {
        using var payload = new MemoryStream();
        using (var w = new BinaryWriter(payload, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Module.Hex);
            w.Write(MemoryBytes);
            w.Write(RegionOffset);
            w.Write(RegionLength);
            w.Write(CapturedAt.ToUnixTimeMilliseconds());
            w.Write(CapturedBy);
            w.Write(Globals.Count);
            foreach (var g in Globals)
            {
                w.Write(g.ExportName);
                w.Write(g.Kind);
                w.Write(g.Bits);
            }
            w.Write(Runs.Count);
            foreach (var r in Runs)
            {
                w.Write(r.MemoryOffset);
                w.Write(r.Length);
                w.Write(r.RegionOffset);
                w.Write(r.Hash);
            }
            if (IsDelta)
            {
                w.Write(BaseChecksum);
                w.Write(ZeroRuns.Count);
                foreach (var (offset, length) in ZeroRuns)
                {
                    w.Write(offset);
                    w.Write(length);
                }
            }
        }
        var body = payload.ToArray();
        var bytes = new byte[Magic.Length + 8 + body.Length + 8];
        Magic.CopyTo(bytes);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), IsDelta ? DeltaFormatVersion : FormatVersion);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(12), body.Length);
        body.CopyTo(bytes, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(16 + body.Length), XxHash3.HashToUInt64(bytes.AsSpan(0, 16 + body.Length)));
        return bytes;
    }

    /// <summary>Parses and checks a header; anything truncated, corrupted or from another format version is refused.</summary>
    public static TemplateHeader FromBytes(ReadOnlySpan<byte> bytes, string source)
    {
        if (bytes.Length < 24 || !bytes[..8].SequenceEqual(Magic))
            throw new TemplateInvalidException($"Template {source} is not a TrEnv template (bad magic or too short: {bytes.Length} bytes).");
        var version = BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]);
        if (version is not (FormatVersion or DeltaFormatVersion))
            throw new TemplateInvalidException($"Template {source} has format version {version}; this engine reads versions {FormatVersion} and {DeltaFormatVersion}.");
        var length = BinaryPrimitives.ReadInt32LittleEndian(bytes[12..]);
        if (length < 0 || 16L + length + 8 != bytes.Length)
            throw new TemplateInvalidException($"Template {source} is truncated or has trailing bytes: the header says {length} payload bytes, the file has {bytes.Length - 24}.");
        var expected = BinaryPrimitives.ReadUInt64LittleEndian(bytes[(16 + length)..]);
        if (XxHash3.HashToUInt64(bytes[..(16 + length)]) != expected)
            throw new TemplateInvalidException($"Template {source} fails its checksum; it is corrupted.");

        try
        {
            using var r = new BinaryReader(new MemoryStream(bytes.Slice(16, length).ToArray()), Encoding.UTF8);
            var module = r.ReadString();
            if (!ModuleHash.IsValid(module))
                throw new TemplateInvalidException($"Template {source} names an invalid module hash.");
            var memoryBytes = r.ReadInt64();
            var regionOffset = r.ReadInt64();
            var regionLength = r.ReadInt64();
            var capturedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.ReadInt64());
            var capturedBy = r.ReadString();
            var globals = new GlobalValue[CheckedCount(r.ReadInt32(), 1 << 20, source)];
            for (var i = 0; i < globals.Length; i++)
                globals[i] = new GlobalValue(r.ReadString(), r.ReadByte(), r.ReadUInt64());
            var runs = new PageRun[CheckedCount(r.ReadInt32(), 1 << 24, source)];
            for (var i = 0; i < runs.Length; i++)
                runs[i] = new PageRun(r.ReadInt64(), r.ReadInt64(), r.ReadInt64(), r.ReadUInt64());
            var header = new TemplateHeader(new ModuleHash(module), memoryBytes, globals, runs, regionOffset, regionLength, capturedAt, capturedBy);
            if (version == DeltaFormatVersion)
            {
                var baseChecksum = r.ReadUInt64();
                var zeros = new (long, long)[CheckedCount(r.ReadInt32(), 1 << 24, source)];
                for (var i = 0; i < zeros.Length; i++)
                    zeros[i] = (r.ReadInt64(), r.ReadInt64());
                header = header with { BaseChecksum = baseChecksum, ZeroRuns = zeros };
            }
            if (r.BaseStream.Position != r.BaseStream.Length)
                throw new TemplateInvalidException($"Template {source} has bytes after its last field; it is corrupted.");
            header.CheckGeometry(source);
            return header;
        }
        catch (EndOfStreamException e)
        {
            throw new TemplateInvalidException($"Template {source} ends early; it is truncated.", e);
        }
    }

    public static TemplateHeader Read(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (IOException e)
        {
            throw new TemplateInvalidException($"Template {path} cannot be read: {e.Message}", e);
        }
        return FromBytes(bytes, path);
    }

    public void Write(string path)
    {
        var temp = path + ".tmp";
        File.WriteAllBytes(temp, ToBytes());
        File.Move(temp, path, overwrite: true);
    }

    private static int CheckedCount(int count, int max, string source)
        => count >= 0 && count <= max ? count : throw new TemplateInvalidException($"Template {source} has an implausible count {count}; it is corrupted.");

    // Runs must be page-aligned, ordered, non-overlapping, inside memory and inside the region.
    private void CheckGeometry(string source)
    {
        if (MemoryBytes < 0 || MemoryBytes % 65536 != 0 || MemoryBytes > 4L << 30)
            throw new TemplateInvalidException($"Template {source} has an invalid memory size {MemoryBytes}.");
        if (RegionOffset < 0 || RegionLength < 0 || RegionOffset % PageSize != 0 || RegionLength % PageSize != 0)
            throw new TemplateInvalidException($"Template {source} has an unaligned pool region.");
        long lastEnd = 0;
        foreach (var run in Runs)
        {
            if (run.Length <= 0 || run.MemoryOffset % PageSize != 0 || run.Length % PageSize != 0 || run.RegionOffset % PageSize != 0
                || run.MemoryOffset < lastEnd || run.MemoryOffset + run.Length > MemoryBytes
                || run.RegionOffset < 0 || run.RegionOffset + run.Length > RegionLength)
                throw new TemplateInvalidException($"Template {source} has an invalid page run at memory offset {run.MemoryOffset}.");
            lastEnd = run.MemoryOffset + run.Length;
        }
        foreach (var (offset, length) in ZeroRuns)
        {
            if (length <= 0 || offset < 0 || offset % PageSize != 0 || length % PageSize != 0 || offset + length > MemoryBytes)
                throw new TemplateInvalidException($"Template {source} has an invalid zero run at memory offset {offset}.");
        }
    }
}
