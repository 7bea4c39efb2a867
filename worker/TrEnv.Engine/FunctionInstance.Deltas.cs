using System.IO.Hashing;
using Microsoft.Win32.SafeHandles;
using TrEnv.Contracts;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool;

namespace TrEnv.Engine;

/// <summary>
/// Session deltas: the pages of a live instance that differ from its function's template, plus its globals.
/// A paused session stores only these; a resume maps the template and overlays them.
/// </summary>
public sealed partial class FunctionInstance
{
    // The template this instance's memory was mapped from (Map or Lazy), else null. Compared only when pausing,
    // so a template start computes no checksum.
    private TemplateHeader? _mappedFrom;

    /// <summary>One page range of a delta: <paramref name="Zero"/> when the session holds zeros where the base has data.</summary>
    public readonly record struct DeltaRun(long Offset, long Length, bool Zero);

    /// <summary>
    /// The 4 KiB pages that differ from <paramref name="baseTemplate"/> (zero where it has no run), or every
    /// non-zero page when there is no base. When this instance was mapped from that very template, a page the
    /// kernel still backs by the template file, or never faulted in, cannot differ, so only the pages the guest
    /// wrote are compared (read from /proc/self/pagemap); otherwise every page is compared.
    /// </summary>
    public IReadOnlyList<DeltaRun> ScanDelta(TemplateHeader? baseTemplate, SafeFileHandle? basePool) => ScanDelta(baseTemplate, basePool, out _);

    /// <param name="dirtyPages">Pages that could differ: those the guest wrote since the template was mapped
    /// (every page when there is no page-map shortcut). The delta is never more than these.</param>
    public unsafe IReadOnlyList<DeltaRun> ScanDelta(TemplateHeader? baseTemplate, SafeFileHandle? basePool, out long dirtyPages)
    {
        dirtyPages = _memory.GetLength() / Page;
        if (baseTemplate is null)
            return [.. ScanNonZeroRuns().Select(r => new DeltaRun(r.Offset, r.Length, false))];
        if (basePool is null)
            throw new ArgumentNullException(nameof(basePool));
        var basePtr = (byte*)_memory.GetPointer();
        var length = _memory.GetLength();
        var pages = length / Page;
        var untouchedIsBase = _mappedFrom is not null && (ReferenceEquals(_mappedFrom, baseTemplate) || _mappedFrom.Checksum == baseTemplate.Checksum);
        var map = untouchedIsBase ? PageMap((nint)basePtr, pages) : null;

        var runs = new List<DeltaRun>();
        long candidates = 0;
        var expected = new byte[Page];
        var runIndex = 0;
        long start = -1;
        var startZero = false;
        void Close(long end)
        {
            if (start >= 0)
                runs.Add(new DeltaRun(start, end - start, startZero));
            start = -1;
        }
        for (long page = 0; page < pages; page++)
        {
            var offset = page * Page;
            while (runIndex < baseTemplate.Runs.Count && baseTemplate.Runs[runIndex].MemoryOffset + baseTemplate.Runs[runIndex].Length <= offset)
                runIndex++;
            var inBase = runIndex < baseTemplate.Runs.Count && baseTemplate.Runs[runIndex].MemoryOffset <= offset && offset < baseTemplate.MemoryBytes;
            var differs = false;
            var zero = false;
            // bit 63 present, 62 swapped, 61 file page or shared anonymous
            if (map is null || (map[page] & (3UL << 62)) != 0 && (map[page] & (1UL << 61)) == 0)
            {
                candidates++;
                var current = new ReadOnlySpan<byte>(basePtr + offset, Page);
                zero = current.IndexOfAnyExcept((byte)0) < 0;
                if (!inBase)
                    differs = !zero;
                else
                {
                    var run = baseTemplate.Runs[runIndex];
                    var read = RandomAccess.Read(basePool, expected, baseTemplate.RegionOffset + run.RegionOffset + (offset - run.MemoryOffset));
                    if (read != Page)
                        throw new TemplateInvalidException($"The pool ends inside the base template at memory offset {offset}.");
                    differs = !current.SequenceEqual(expected);
                }
            }
            if (differs && (start < 0 || startZero != zero))
            {
                Close(offset);
                start = offset;
                startZero = zero;
            }
            else if (!differs)
                Close(offset);
        }
        Close(length);
        dirtyPages = candidates;
        return runs;
    }

    /// <summary>Writes the delta's data pages packed into <paramref name="region"/> and returns its header (a delta when there is a base).</summary>
    public unsafe TemplateHeader CaptureDelta(IReadOnlyList<DeltaRun> delta, TemplateHeader? baseTemplate, SafeFileHandle pool, Region region, string capturedBy)
    {
        if (!Initialized || Poisoned)
            throw new EngineException(ErrorKinds.NotLoaded, "Only an initialised, healthy instance can be paused.");
        var needed = delta.Where(r => !r.Zero).Sum(r => r.Length);
        if (needed > region.Length)
            throw new EngineException(ErrorKinds.Internal, $"The delta needs {needed} bytes but the pool region holds {region.Length}.");
        var basePtr = (byte*)_memory.GetPointer();
        var runs = new List<PageRun>();
        long packed = 0;
        foreach (var run in delta.Where(r => !r.Zero))
        {
            var span = new ReadOnlySpan<byte>(basePtr + run.Offset, checked((int)run.Length));
            RandomAccess.Write(pool, span, region.Offset + packed);
            runs.Add(new PageRun(run.Offset, run.Length, packed, XxHash3.HashToUInt64(span)));
            packed += run.Length;
        }
        return new TemplateHeader(Module.Hash, _memory.GetLength(), CaptureGlobals(), runs, region.Offset, region.Length, DateTimeOffset.UtcNow, capturedBy)
        {
            BaseChecksum = baseTemplate?.Checksum ?? 0,
            ZeroRuns = [.. delta.Where(r => r.Zero).Select(r => (r.Offset, r.Length))],
        };
    }

    // Writes the delta over memory the base restore left: data pages copied (checked against their hashes),
    // zeroed pages written, so every page a delta touches is private and the next pause compares it again.
    private unsafe void ApplyDelta(TemplateHeader delta, SafeFileHandle pool, byte* basePtr)
    {
        foreach (var run in delta.Runs)
        {
            CopyIn(basePtr + run.MemoryOffset, run.Length, pool, delta.RegionOffset + run.RegionOffset);
            if (XxHash3.HashToUInt64(new ReadOnlySpan<byte>(basePtr + run.MemoryOffset, checked((int)run.Length))) != run.Hash)
                throw new TemplateInvalidException($"The session's pages at memory offset {run.MemoryOffset} do not match their checksum; its pool region is corrupted.");
        }
        foreach (var (offset, length) in delta.ZeroRuns)
            new Span<byte>(basePtr + offset, checked((int)length)).Clear();
    }

    private List<GlobalValue> CaptureGlobals()
    {
        var globals = new List<GlobalValue>(Module.MutableGlobals.Count);
        foreach (var name in Module.MutableGlobals)
        {
            var global = _instance.GetGlobal(name)!;
            globals.Add(new GlobalValue(name, (byte)global.Kind, ToBits(global.Kind, global.GetValue())));
        }
        return globals;
    }

    // One u64 per page: present, swapped, file-backed bits (see the kernel's pagemap documentation).
    private static ulong[]? PageMap(nint address, long pages)
    {
        try
        {
            using var pagemap = File.OpenHandle("/proc/self/pagemap", FileMode.Open, FileAccess.Read);
            var entries = new ulong[pages];
            var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(entries.AsSpan());
            var read = RandomAccess.Read(pagemap, bytes, address / Page * 8);
            return read == bytes.Length ? entries : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // compare every page instead
        }
    }
}
