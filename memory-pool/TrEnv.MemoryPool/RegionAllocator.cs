namespace TrEnv.MemoryPool;

/// <summary>
/// First-fit, page-aligned allocator over [0, capacity). Freed neighbours coalesce, and a region
/// is never handed out while it is allocated: a double or partial free throws instead of corrupting.
/// Not thread-safe; the owner (the template registry) serialises access.
/// </summary>
public sealed class RegionAllocator
{
    public const long PageSize = 4096;

    // Free blocks keyed by offset; value is the length. Kept coalesced.
    private readonly SortedDictionary<long, long> _free = new();
    private readonly Dictionary<long, long> _allocated = new();

    public RegionAllocator(long capacity)
    {
        if (capacity <= 0 || capacity % PageSize != 0)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"Pool capacity must be a positive multiple of {PageSize} bytes.");
        Capacity = capacity;
        _free[0] = capacity;
    }

    public long Capacity { get; }
    public long AllocatedBytes { get; private set; }
    public long FreeBytes => Capacity - AllocatedBytes;
    public int AllocationCount => _allocated.Count;
    public IEnumerable<Region> Allocations => _allocated.Select(kv => new Region(kv.Key, kv.Value)).OrderBy(r => r.Offset);
    public IEnumerable<Region> FreeBlocks => _free.Select(kv => new Region(kv.Key, kv.Value));
    public long LargestFreeBlock => _free.Count == 0 ? 0 : _free.Values.Max();

    public static long RoundUp(long bytes) => (bytes + PageSize - 1) / PageSize * PageSize;

    /// <summary>Allocates at least <paramref name="bytes"/> bytes, rounded up to whole pages; null when nothing fits.</summary>
    public Region? TryAllocate(long bytes)
    {
        if (bytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "A region must be at least one byte long.");
        var length = RoundUp(bytes);
        foreach (var (offset, freeLength) in _free)
        {
            if (freeLength < length)
                continue;
            _free.Remove(offset);
            if (freeLength > length)
                _free[offset + length] = freeLength - length;
            _allocated[offset] = length;
            AllocatedBytes += length;
            return new Region(offset, length);
        }
        return null;
    }

    /// <summary>Where <see cref="TryAllocate"/> would place <paramref name="bytes"/>, without allocating; lets a journal decide before it applies.</summary>
    public Region? FindFit(long bytes)
    {
        if (bytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "A region must be at least one byte long.");
        var length = RoundUp(bytes);
        foreach (var (offset, freeLength) in _free)
        {
            if (freeLength >= length)
                return new Region(offset, length);
        }
        return null;
    }

    public Region Allocate(long bytes)
        => TryAllocate(bytes) ?? throw new PoolFullException(RoundUp(bytes), FreeBytes, LargestFreeBlock);

    /// <summary>Returns a region; it must be exactly one that this allocator handed out.</summary>
    public void Free(Region region)
    {
        if (!_allocated.TryGetValue(region.Offset, out var length) || length != region.Length)
            throw new InvalidOperationException($"Region {region} is not allocated; refusing a double or partial free.");
        _allocated.Remove(region.Offset);
        AllocatedBytes -= length;
        InsertFree(region.Offset, length);
    }

    /// <summary>Marks a region allocated while rebuilding state from a journal; overlaps are refused.</summary>
    public void Reserve(Region region)
    {
        if (region.Offset < 0 || region.Length <= 0 || region.Offset % PageSize != 0 || region.Length % PageSize != 0 || region.End > Capacity)
            throw new ArgumentOutOfRangeException(nameof(region), region, "A reserved region must be page-aligned and inside the pool.");
        foreach (var (offset, length) in _free)
        {
            if (offset > region.Offset)
                break;
            if (offset + length < region.End)
                continue;
            _free.Remove(offset);
            if (region.Offset > offset)
                _free[offset] = region.Offset - offset;
            if (offset + length > region.End)
                _free[region.End] = offset + length - region.End;
            _allocated[region.Offset] = region.Length;
            AllocatedBytes += region.Length;
            return;
        }
        throw new InvalidOperationException($"Region {region} overlaps an existing allocation.");
    }

    private void InsertFree(long offset, long length)
    {
        long? before = null;
        foreach (var key in _free.Keys)
        {
            if (key >= offset)
                break;
            before = key;
        }
        if (before is { } b && b + _free[b] == offset)
        {
            offset = b;
            length += _free[b];
            _free.Remove(b);
        }
        if (_free.TryGetValue(offset + length, out var afterLength))
        {
            _free.Remove(offset + length);
            length += afterLength;
        }
        _free[offset] = length;
    }
}

public sealed class PoolFullException(long requested, long free, long largest)
    : Exception($"The memory pool cannot fit {requested:#,0} bytes: {free:#,0} bytes are free, the largest free block is {largest:#,0} bytes.")
{
    public long Requested { get; } = requested;
}
