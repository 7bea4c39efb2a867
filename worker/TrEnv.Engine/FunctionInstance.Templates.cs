using System.IO.Hashing;
using Microsoft.Win32.SafeHandles;
using TrEnv.Contracts;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool;
using Wasmtime;
using static Tmds.Linux.LibC;

namespace TrEnv.Engine;

/// <summary>How a template's pages reach a fresh instance.</summary>
public enum RestoreMode : byte
{
    /// <summary>mmap MAP_PRIVATE|MAP_FIXED of the pool pages: copy-on-write, shared until written.</summary>
    Map = 0,
    /// <summary>pread of every page into private memory: the CRIU-like baseline.</summary>
    Copy = 1,
    /// <summary>As <see cref="Map"/>, from a mirror whose pages arrive on first touch (userfaultfd; see <see cref="LazyPages"/>).</summary>
    Lazy = 2,
}

public sealed partial class FunctionInstance
{
    private const int Page = TemplateHeader.PageSize;
    private SafeFileHandle? _mappedPool;
    private long _mappedPoolEnd;
    private int _guardSlot = -1;
    private (nint Address, long Length) _lazy;

    /// <summary>Tests turn this off to exercise the fault path behind the check.</summary>
    internal bool CheckPoolBeforeInvoke { get; set; } = true;

    /// <summary>The non-zero 4 KiB page runs of linear memory, as (offset, length) in bytes.</summary>
    public unsafe IReadOnlyList<(long Offset, long Length)> ScanNonZeroRuns()
    {
        var runs = new List<(long, long)>();
        var basePtr = (byte*)_memory.GetPointer();
        var length = _memory.GetLength();
        long runStart = -1;
        for (long offset = 0; offset < length; offset += Page)
        {
            var nonZero = new ReadOnlySpan<byte>(basePtr + offset, Page).IndexOfAnyExcept((byte)0) >= 0;
            if (nonZero && runStart < 0)
                runStart = offset;
            else if (!nonZero && runStart >= 0)
            {
                runs.Add((runStart, offset - runStart));
                runStart = -1;
            }
        }
        if (runStart >= 0)
            runs.Add((runStart, length - runStart));
        return runs;
    }

    /// <summary>Bytes a capture of this instance needs in the pool right now.</summary>
    public long CaptureSize() => ScanNonZeroRuns().Sum(r => r.Length);

    /// <summary>
    /// Captures the idle, initialised instance: its non-zero pages are written packed into
    /// <paramref name="region"/> of the pool, and the returned header describes them and the globals.
    /// </summary>
    public unsafe TemplateHeader Capture(SafeFileHandle pool, Region region, string capturedBy)
    {
        if (!Initialized || Poisoned)
            throw new EngineException(ErrorKinds.NotLoaded, "Only an initialised, healthy instance can be captured.");
        var scanned = ScanNonZeroRuns();
        var needed = scanned.Sum(r => r.Length);
        if (needed > region.Length)
            throw new EngineException(ErrorKinds.Internal, $"The capture needs {needed} bytes but the pool region holds {region.Length}.");

        var basePtr = (byte*)_memory.GetPointer();
        var runs = new List<PageRun>(scanned.Count);
        long packed = 0;
        foreach (var (offset, length) in scanned)
        {
            var hasher = new XxHash3();
            for (long done = 0; done < length;)
            {
                var chunk = (int)Math.Min(length - done, 1 << 30);
                var span = new ReadOnlySpan<byte>(basePtr + offset + done, chunk);
                RandomAccess.Write(pool, span, region.Offset + packed + done);
                hasher.Append(span);
                done += chunk;
            }
            runs.Add(new PageRun(offset, length, packed, hasher.GetCurrentHashAsUInt64()));
            packed += length;
        }

        return new TemplateHeader(Module.Hash, _memory.GetLength(), CaptureGlobals(), runs, region.Offset, region.Length, DateTimeOffset.UtcNow, capturedBy);
    }

    /// <summary>
    /// Brings a fresh, never-initialised instance to the template's post-init state. With
    /// <see cref="RestoreMode.Map"/> the pool pages are mapped copy-on-write and nothing is copied.
    /// </summary>
    /// <param name="reseed">False for a paused session's full image (a function without a template).</param>
    /// <param name="delta">A paused session's pages over this template (its pages in <paramref name="deltaPool"/>):
    /// copied over the mapped template, its globals replace the template's, and nothing is reseeded.</param>
    public unsafe void Restore(TemplateHeader template, SafeFileHandle pool, RestoreMode mode, TemplateHeader? delta = null, SafeFileHandle? deltaPool = null, bool reseed = true)
    {
        if (Initialized)
            throw new InvalidOperationException("Only a fresh instance can be restored from a template.");
        if (delta is not null)
        {
            if (delta.Module != Module.Hash)
                throw new TemplateInvalidException($"The session was captured from module {delta.Module}, not {Module.Hash}; refusing to resume it.");
            if (delta.BaseChecksum != template.Checksum)
                throw new TemplateInvalidException("The session was paused over another template than the one given; refusing to resume it.");
            if (delta.MemoryBytes < template.MemoryBytes || delta.MemoryBytes > Options.MemoryLimitBytes)
                throw new TemplateInvalidException($"The session's memory ({delta.MemoryBytes >> 20} MiB) is smaller than its template's or over the memory limit.");
            if (deltaPool is not null && RandomAccess.GetLength(deltaPool) < delta.RegionOffset + delta.RegionLength)
                throw new TemplateInvalidException("The pool file is shorter than the session's region; the pool was truncated.");
        }
        if (template.Module != Module.Hash)
            throw new TemplateInvalidException($"The template was captured from module {template.Module}, not {Module.Hash}; refusing to restore it.");
        var poolLength = RandomAccess.GetLength(pool);
        if (poolLength < template.RegionOffset + template.RegionLength)
            throw new TemplateInvalidException($"The pool file is {poolLength} bytes, shorter than the template's region end {template.RegionOffset + template.RegionLength}; the pool was truncated.");
        if (template.MemoryBytes > Options.MemoryLimitBytes)
            throw new EngineException(ErrorKinds.Memory, $"The template holds {template.MemoryBytes >> 20} MiB of memory, more than the memory limit of {Options.MemoryLimitBytes >> 20} MiB.");
        foreach (var g in template.Globals)
        {
            if (_instance.GetGlobal(g.ExportName) is not { } global || global.Mutability != Mutability.Mutable || (byte)global.Kind != g.Kind)
                throw new TemplateInvalidException($"The template records global \"{g.ExportName}\" that the module does not have as a mutable {(ValueKind)g.Kind}.");
        }

        var current = _memory.GetLength();
        var target = delta?.MemoryBytes ?? template.MemoryBytes;
        if (current > template.MemoryBytes)
            throw new TemplateInvalidException($"The template's memory ({template.MemoryBytes} bytes) is smaller than the module's minimum ({current} bytes).");
        if (target > current)
        {
            try
            {
                _memory.Grow((target - current) / 65536);
            }
            catch (WasmtimeException e)
            {
                throw new EngineException(ErrorKinds.Memory, $"Growing memory to the template's {target >> 20} MiB failed: {e.Message}", e);
            }
        }

        var basePtr = (byte*)_memory.GetPointer();
        var fd = (int)pool.DangerousGetHandle();
        long cursor = 0;
        // Zero the gaps first: a fresh instance already holds its data segments, which the template may have zeroed.
        foreach (var run in template.Runs)
        {
            MapZero(basePtr + cursor, run.MemoryOffset - cursor);
            if (mode is RestoreMode.Map or RestoreMode.Lazy)
                MapFile(basePtr + run.MemoryOffset, run.Length, fd, template.RegionOffset + run.RegionOffset);
            else
                CopyIn(basePtr + run.MemoryOffset, run.Length, pool, template.RegionOffset + run.RegionOffset);
            cursor = run.MemoryOffset + run.Length;
        }
        MapZero(basePtr + cursor, target - cursor);
        if (mode == RestoreMode.Lazy)
        {
            // Pages the mirror already holds map at once; the rest fault into the native handler.
            _lazy = ((nint)basePtr, template.MemoryBytes);
            foreach (var run in template.Runs)
                LazyPages.Register((nint)(basePtr + run.MemoryOffset), run.Length, template.RegionOffset + run.RegionOffset);
        }

        if (delta is not null)
        {
            foreach (var g in delta.Globals)
            {
                if (_instance.GetGlobal(g.ExportName) is not { } global || global.Mutability != Mutability.Mutable || (byte)global.Kind != g.Kind)
                    throw new TemplateInvalidException($"The session records global \"{g.ExportName}\" that the module does not have as a mutable {(ValueKind)g.Kind}.");
            }
            ApplyDelta(delta, deltaPool ?? pool, basePtr);
        }

        foreach (var g in delta?.Globals ?? template.Globals)
        {
            var global = _instance.GetGlobal(g.ExportName)!;
            global.SetValue(FromBits(global.Kind, g.Bits));
        }
        if (mode is RestoreMode.Map or RestoreMode.Lazy)
        {
            _guardSlot = SigbusGuard.Add((nint)basePtr, (nint)(basePtr + target));
            _mappedPool = pool;
            _mappedPoolEnd = template.RegionOffset + template.RegionLength;
            _mappedFrom = template;
        }
        Initialized = true;
        Origin = mode == RestoreMode.Copy ? StartKind.CopyTemplate : StartKind.Template;
        if (delta is not null || !reseed)
            return; // a session continues: its random state is its own, already distinct
        if (_guest.CanReseed)
            Guard("reseed", Options.InitTimeout, () => { _guest.Reseed(); return 0; });
    }

    /// <summary>Reads every run back from the pool and checks its hash; done once per template per node, not per restore.</summary>
    public static void VerifyData(TemplateHeader template, SafeFileHandle pool)
    {
        var buffer = new byte[1 << 20];
        foreach (var run in template.Runs)
        {
            var hasher = new XxHash3();
            for (long done = 0; done < run.Length;)
            {
                var chunk = (int)Math.Min(run.Length - done, buffer.Length);
                var read = RandomAccess.Read(pool, buffer.AsSpan(0, chunk), template.RegionOffset + run.RegionOffset + done);
                if (read != chunk)
                    throw new TemplateInvalidException($"The pool ends inside the template's run at memory offset {run.MemoryOffset}; the pool was truncated.");
                hasher.Append(buffer.AsSpan(0, chunk));
                done += chunk;
            }
            if (hasher.GetCurrentHashAsUInt64() != run.Hash)
                throw new TemplateInvalidException($"The template's pages at memory offset {run.MemoryOffset} do not match their checksum; the pool region is corrupted.");
        }
    }

    // A mapped page past the end of a truncated pool file raises SIGBUS; refuse before the guest touches one.
    private void CheckPoolStillBacksMappings()
    {
        if (_mappedPool is null || !CheckPoolBeforeInvoke)
            return;
        var length = RandomAccess.GetLength(_mappedPool);
        if (length < _mappedPoolEnd)
        {
            Poisoned = true;
            throw new TemplateInvalidException($"The pool file was truncated to {length} bytes under this instance's mapping (which needs {_mappedPoolEnd}); the instance is discarded.");
        }
    }

    // The SIGBUS guard absorbed a fault on a template page during the call: the guest saw zeros, not its state.
    private void ThrowIfPoolFaulted(int faultsBefore)
    {
        if (_guardSlot < 0 || SigbusGuard.Faults == faultsBefore)
            return;
        Poisoned = true;
        throw new TemplateInvalidException("The pool file was truncated under this instance's mapping while it ran; its result is discarded and so is the instance.");
    }

    private void ReleaseGuard()
    {
        if (_lazy.Length > 0)
        {
            LazyPages.Unregister(_lazy.Address, _lazy.Length);
            _lazy = default;
        }
        SigbusGuard.Remove(_guardSlot);
        _guardSlot = -1;
    }

    private static unsafe void MapZero(byte* address, long length)
    {
        if (length <= 0)
            return;
        if (mmap(address, (Tmds.Linux.size_t)(ulong)length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
            throw new EngineException(ErrorKinds.Internal, $"mmap of {length} zero bytes failed: errno {errno}.");
    }

    private static unsafe void MapFile(byte* address, long length, int fd, long fileOffset)
    {
        if (mmap(address, (Tmds.Linux.size_t)(ulong)length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, fileOffset) == MAP_FAILED)
            throw new EngineException(ErrorKinds.Internal, $"mmap of {length} template bytes at pool offset {fileOffset} failed: errno {errno}.");
    }

    private static unsafe void CopyIn(byte* address, long length, SafeFileHandle pool, long fileOffset)
    {
        for (long done = 0; done < length;)
        {
            var chunk = (int)Math.Min(length - done, 1 << 30);
            var read = RandomAccess.Read(pool, new Span<byte>(address + done, chunk), fileOffset + done);
            if (read <= 0)
                throw new TemplateInvalidException($"The pool ended while copying the template at pool offset {fileOffset + done}.");
            done += read;
        }
    }

    private static ulong ToBits(ValueKind kind, object? value) => kind switch
    {
        ValueKind.Int32 => (uint)(int)value!,
        ValueKind.Int64 => (ulong)(long)value!,
        ValueKind.Float32 => BitConverter.SingleToUInt32Bits((float)value!),
        ValueKind.Float64 => BitConverter.DoubleToUInt64Bits((double)value!),
        _ => throw new EngineException(ErrorKinds.Internal, $"A global of type {kind} cannot be captured."),
    };

    private static object FromBits(ValueKind kind, ulong bits) => kind switch
    {
        ValueKind.Int32 => (int)(uint)bits,
        ValueKind.Int64 => (long)bits,
        ValueKind.Float32 => BitConverter.UInt32BitsToSingle((uint)bits),
        ValueKind.Float64 => BitConverter.UInt64BitsToDouble(bits),
        _ => throw new EngineException(ErrorKinds.Internal, $"A global of type {kind} cannot be restored."),
    };
}
