using Microsoft.Win32.SafeHandles;
using static Tmds.Linux.LibC;

namespace TrEnv.MemoryPool;

/// <summary>
/// The byte-addressable pool every node maps: a sparse file (default /dev/shm/trenv/pool) or a DAX device.
/// Regions are written with pwrite and released with hole punching so freed templates give memory back.
/// </summary>
public sealed class PoolDevice : IDisposable
{
    public const string DefaultPath = "/dev/shm/trenv/pool";

    private PoolDevice(string path, SafeFileHandle handle, long capacity, bool isDevice)
    {
        Path = path;
        Handle = handle;
        Capacity = capacity;
        IsDevice = isDevice;
    }

    public string Path { get; }
    public SafeFileHandle Handle { get; }
    public long Capacity { get; }
    public bool IsDevice { get; }

    /// <summary>Opens a pool, creating a sparse file of <paramref name="capacity"/> bytes when none exists; an existing file is grown, never shrunk.</summary>
    public static PoolDevice OpenOrCreate(string path, long capacity)
    {
        if (capacity <= 0 || capacity % RegionAllocator.PageSize != 0)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"Pool capacity must be a positive multiple of {RegionAllocator.PageSize} bytes.");
        var isDevice = path.StartsWith("/dev/dax", StringComparison.Ordinal);
        if (!isDevice)
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        var handle = File.OpenHandle(path, isDevice ? FileMode.Open : FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
        if (!isDevice && RandomAccess.GetLength(handle) < capacity)
            RandomAccess.SetLength(handle, capacity);
        return new PoolDevice(path, handle, capacity, isDevice);
    }

    /// <summary>
    /// "device:inode" of the file at <paramref name="path"/>, or null if there is none: a pool that was lost
    /// and created again is another file, so checks made against the old one do not carry over.
    /// </summary>
    public static unsafe string? Identity(string path)
    {
        Tmds.Linux.stat st;
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            if (stat(p, &st) != 0)
                return null;
        }
        return $"{(ulong)st.st_dev}:{(ulong)st.st_ino}";
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(offset, data.Length);
        RandomAccess.Write(Handle, data, offset);
    }

    public int Read(long offset, Span<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        return RandomAccess.Read(Handle, buffer, offset);
    }

    /// <summary>Gives a freed region's memory back to the host (tmpfs and files); DAX devices keep theirs.</summary>
    public unsafe void Release(Region region)
    {
        CheckRange(region.Offset, region.Length);
        if (IsDevice)
            return;
        const int FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02;
        var fd = (int)Handle.DangerousGetHandle();
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, region.Offset, region.Length) != 0)
            throw new IOException($"Punching a hole at {region} of pool {Path} failed: errno {errno}.");
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Capacity)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + length}) is outside pool {Path} of {Capacity} bytes.");
    }

    public void Dispose() => Handle.Dispose();
}
