using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Hashing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TrEnv.MemoryPool.Node;

/// <summary>
/// The durable copy of every sealed template: its region's bytes in a sparse file under the data directory,
/// with the XxHash64 of those bytes beside it. The pool is a cache of these copies: when the pool is lost
/// (a new, empty device) or its region does not match, the region is rewritten from the copy. Until then
/// the region is unreadable, so no client is served bytes that are not the template's.
/// </summary>
public sealed class PoolDurability(PoolDevice device, string directory, ILogger? log = null)
{
    private const int Chunk = 1 << 20;
    private readonly ILogger _log = log ?? NullLogger.Instance;
    private readonly ConcurrentDictionary<string, bool> _unreadable = new(StringComparer.Ordinal);

    public string Directory { get; } = System.IO.Directory.CreateDirectory(directory).FullName;

    private Task _queue = Task.CompletedTask;

    public bool IsReadable(string owner) => !_unreadable.ContainsKey(owner);

    /// <summary>Runs durable-copy work one piece at a time, in order, off the caller's thread (a save then a delete never cross).</summary>
    public Task Enqueue(Action work)
    {
        lock (_unreadable)
        {
            _queue = _queue.ContinueWith(_ =>
            {
                try
                {
                    work();
                }
                catch (IOException e)
                {
                    _log.LogError("memory pool: durable copy work failed: {Error}", e.Message);
                }
            }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
            return _queue;
        }
    }

    public bool HasCopy(string owner) => File.Exists(SumPath(owner));

    private string DataPath(string owner) => Path.Combine(Directory, owner + ".region");

    private string SumPath(string owner) => Path.Combine(Directory, owner + ".xxh64");

    /// <summary>Copies the owner's region out of the pool (zero chunks stay holes), then records its hash; the hash file marks the copy complete.</summary>
    public void Save(string owner, Region region)
    {
        var temp = DataPath(owner) + ".tmp";
        var hash = new XxHash64();
        using (var file = File.OpenHandle(temp, FileMode.Create, FileAccess.Write))
        {
            RandomAccess.SetLength(file, region.Length);
            var buffer = new byte[Chunk];
            for (long done = 0; done < region.Length;)
            {
                var n = (int)Math.Min(Chunk, region.Length - done);
                var read = device.Read(region.Offset + done, buffer.AsSpan(0, n));
                if (read != n)
                    throw new IOException($"The pool returned {read} of {n} bytes at {region.Offset + done}.");
                hash.Append(buffer.AsSpan(0, n));
                if (buffer.AsSpan(0, n).ContainsAnyExcept((byte)0))
                    RandomAccess.Write(file, buffer.AsSpan(0, n), done);
                done += n;
            }
            RandomAccess.FlushToDisk(file);
        }
        File.Move(temp, DataPath(owner), overwrite: true);
        File.WriteAllText(SumPath(owner), hash.GetCurrentHashAsUInt64().ToString("x16", CultureInfo.InvariantCulture));
    }

    public void Delete(string owner)
    {
        File.Delete(SumPath(owner));
        File.Delete(DataPath(owner));
        File.Delete(WorkingSetPath(owner));
    }

    private string WorkingSetPath(string owner) => Path.Combine(Directory, owner + ".ws");

    /// <summary>Keeps the first working set recorded for an owner (pairs of region-relative offset and length); false if one is kept already.</summary>
    public bool SetWorkingSet(string owner, IReadOnlyList<(long Offset, long Length)> ranges)
    {
        var path = WorkingSetPath(owner);
        if (File.Exists(path))
            return false;
        var bytes = new byte[ranges.Count * 16];
        for (var i = 0; i < ranges.Count; i++)
        {
            BitConverter.TryWriteBytes(bytes.AsSpan(i * 16), ranges[i].Offset);
            BitConverter.TryWriteBytes(bytes.AsSpan(i * 16 + 8), ranges[i].Length);
        }
        var temp = path + ".tmp";
        File.WriteAllBytes(temp, bytes);
        File.Move(temp, path, overwrite: false);
        return true;
    }

    public IReadOnlyList<(long Offset, long Length)> GetWorkingSet(string owner)
    {
        var path = WorkingSetPath(owner);
        if (!File.Exists(path))
            return [];
        var bytes = File.ReadAllBytes(path);
        return Enumerable.Range(0, bytes.Length / 16).Select(i => (BitConverter.ToInt64(bytes, i * 16), BitConverter.ToInt64(bytes, i * 16 + 8))).ToList();
    }

    /// <summary>Marks every region that has a copy unreadable until <see cref="Rebuild"/> has checked it.</summary>
    public void Suspect(IEnumerable<string> owners)
    {
        foreach (var owner in owners.Where(HasCopy))
            _unreadable[owner] = true;
    }

    /// <summary>Checks each region against its copy's hash and rewrites the ones that differ; returns how many were rewritten.</summary>
    public int Rebuild(IReadOnlyDictionary<string, Region> owners)
    {
        var rewritten = 0;
        foreach (var (owner, region) in owners)
        {
            if (!HasCopy(owner))
                continue;
            try
            {
                var expected = File.ReadAllText(SumPath(owner)).Trim();
                if (HashOfPool(region) != expected)
                {
                    RestoreFromCopy(owner, region);
                    if (HashOfPool(region) != expected)
                        throw new IOException($"the rewritten region of {owner} still does not match its copy");
                    rewritten++;
                    _log.LogInformation("memory pool: rebuilt {Owner} ({MiB} MiB) from its durable copy", owner, region.Length >> 20);
                }
                _unreadable.TryRemove(owner, out _);
            }
            catch (IOException e)
            {
                // Stays unreadable: clients fall back to a cold start rather than read wrong bytes.
                _log.LogError("memory pool: could not rebuild {Owner}: {Error}", owner, e.Message);
            }
        }
        return rewritten;
    }

    private string HashOfPool(Region region)
    {
        var hash = new XxHash64();
        var buffer = new byte[Chunk];
        for (long done = 0; done < region.Length;)
        {
            var n = (int)Math.Min(Chunk, region.Length - done);
            if (device.Read(region.Offset + done, buffer.AsSpan(0, n)) != n)
                throw new IOException($"the pool is shorter than the region at {region.Offset}");
            hash.Append(buffer.AsSpan(0, n));
            done += n;
        }
        return hash.GetCurrentHashAsUInt64().ToString("x16", CultureInfo.InvariantCulture);
    }

    private void RestoreFromCopy(string owner, Region region)
    {
        using var file = File.OpenHandle(DataPath(owner), FileMode.Open, FileAccess.Read);
        if (RandomAccess.GetLength(file) != region.Length)
            throw new IOException($"the copy of {owner} is {RandomAccess.GetLength(file)} bytes, its region {region.Length}");
        var buffer = new byte[Chunk];
        for (long done = 0; done < region.Length;)
        {
            var n = (int)Math.Min(Chunk, region.Length - done);
            var read = RandomAccess.Read(file, buffer.AsSpan(0, n), done);
            if (read != n)
                throw new IOException($"the copy of {owner} ended early");
            device.Write(region.Offset + done, buffer.AsSpan(0, n));
            done += n;
        }
    }
}
