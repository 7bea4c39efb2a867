using TrEnv.MemoryPool;

namespace TrEnv.Tests;

public sealed class PoolDeviceTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"trenv-pool-{Guid.NewGuid():N}");

    [Fact]
    public void A_new_pool_is_sparse_and_released_regions_give_memory_back()
    {
        var path = Path.Combine(_dir, "pool");
        using var pool = PoolDevice.OpenOrCreate(path, 64L << 20);
        Assert.Equal(64L << 20, new FileInfo(path).Length);
        Assert.True(AllocatedBytes(path) < 1 << 20, "a new pool should occupy no blocks");

        var region = new Region(8 << 20, 4 << 20);
        pool.Write(region.Offset, Enumerable.Repeat((byte)7, (int)region.Length).ToArray());
        Assert.True(AllocatedBytes(path) >= region.Length);
        pool.Release(region);
        Assert.True(AllocatedBytes(path) < 1 << 20, "punching the hole should free the blocks");
        var back = new byte[16];
        pool.Read(region.Offset, back);
        Assert.All(back, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Reopening_keeps_the_contents_and_never_shrinks()
    {
        var path = Path.Combine(_dir, "pool");
        using (var pool = PoolDevice.OpenOrCreate(path, 32L << 20))
            pool.Write(4096, [1, 2, 3]);
        using var again = PoolDevice.OpenOrCreate(path, 16L << 20);
        var buffer = new byte[3];
        again.Read(4096, buffer);
        Assert.Equal([1, 2, 3], buffer);
        Assert.Equal(32L << 20, new FileInfo(path).Length);
    }

    [Fact]
    public void Access_outside_the_pool_is_refused()
    {
        using var pool = PoolDevice.OpenOrCreate(Path.Combine(_dir, "pool"), 1L << 20);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Write((1L << 20) - 1, [1, 2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => PoolDevice.OpenOrCreate(Path.Combine(_dir, "odd"), 1000));
    }

    private static long AllocatedBytes(string path)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%b %B", path]) { RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var parts = p.StandardOutput.ReadToEnd().Trim().Split(' ');
        p.WaitForExit();
        return long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture) * long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    public void Dispose()
    {
        if (Directory.Exists(_dir))
            Directory.Delete(_dir, recursive: true);
    }
}
