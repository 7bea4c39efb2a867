using CsCheck;
using TrEnv.MemoryPool;

namespace TrEnv.Tests;

public sealed class RegionAllocatorTests
{
    private const long Page = RegionAllocator.PageSize;

    // An operation: allocate n bytes, or free the k-th live region (modulo the live count).
    private static readonly Gen<(bool Allocate, long Bytes, int Pick)> Op =
        Gen.Select(Gen.Bool, Gen.Long[1, 40 * Page], Gen.Int[0, 1000]);

    private static void CheckInvariants(RegionAllocator a)
    {
        var live = a.Allocations.ToList();
        var free = a.FreeBlocks.ToList();
        Assert.All(live.Concat(free), r =>
        {
            Assert.True(r.Offset % Page == 0 && r.Length % Page == 0 && r.Length > 0, $"unaligned {r}");
            Assert.True(r.Offset >= 0 && r.End <= a.Capacity, $"outside the pool {r}");
        });
        var all = live.Concat(free).OrderBy(r => r.Offset).ToList();
        for (var i = 1; i < all.Count; i++)
            Assert.True(all[i - 1].End <= all[i].Offset, $"overlap {all[i - 1]} {all[i]}");
        Assert.Equal(a.Capacity, all.Sum(r => r.Length));
        Assert.Equal(a.AllocatedBytes, live.Sum(r => r.Length));
        for (var i = 1; i < free.Count; i++)
            Assert.True(free[i - 1].End < free[i].Offset, $"free blocks {free[i - 1]} and {free[i]} were not coalesced");
    }

    [Fact]
    public void Random_allocate_and_free_sequences_keep_every_invariant()
    {
        Op.Array[1, 200].Sample(ops =>
        {
            var a = new RegionAllocator(256 * Page);
            var live = new List<Region>();
            foreach (var (allocate, bytes, pick) in ops)
            {
                if (allocate || live.Count == 0)
                {
                    var r = a.TryAllocate(bytes);
                    if (r is { } region)
                    {
                        Assert.True(region.Length >= bytes && region.Length - bytes < Page);
                        Assert.DoesNotContain(live, l => l.Overlaps(region));
                        live.Add(region);
                    }
                    else
                    {
                        Assert.True(a.LargestFreeBlock < RegionAllocator.RoundUp(bytes), "refused although a block fits");
                    }
                }
                else
                {
                    var victim = live[pick % live.Count];
                    live.Remove(victim);
                    a.Free(victim);
                }
                CheckInvariants(a);
            }
            foreach (var r in live)
                a.Free(r);
            Assert.Equal([new Region(0, a.Capacity)], a.FreeBlocks);
        }, iter: 300);
    }

    [Fact]
    public void Rebuilding_from_a_journal_of_reservations_gives_the_same_allocator()
    {
        Op.Array[1, 120].Sample(ops =>
        {
            var a = new RegionAllocator(512 * Page);
            var live = new List<Region>();
            foreach (var (allocate, bytes, pick) in ops)
            {
                if ((allocate || live.Count == 0) && a.TryAllocate(bytes) is { } r)
                    live.Add(r);
                else if (live.Count > 0)
                {
                    var victim = live[pick % live.Count];
                    live.Remove(victim);
                    a.Free(victim);
                }
            }
            var b = new RegionAllocator(512 * Page);
            foreach (var r in live.OrderBy(_ => Guid.NewGuid()))
                b.Reserve(r);
            Assert.Equal(a.Allocations, b.Allocations);
            Assert.Equal(a.FreeBlocks, b.FreeBlocks);
            CheckInvariants(b);
        }, iter: 200);
    }

    [Fact]
    public void A_region_is_never_freed_twice_or_in_part()
    {
        var a = new RegionAllocator(16 * Page);
        var r = a.Allocate(3 * Page);
        Assert.Throws<InvalidOperationException>(() => a.Free(r with { Length = Page }));
        a.Free(r);
        Assert.Throws<InvalidOperationException>(() => a.Free(r));
        Assert.Equal(0, a.AllocatedBytes);
    }

    [Fact]
    public void Reserving_an_overlap_is_refused()
    {
        var a = new RegionAllocator(16 * Page);
        a.Reserve(new Region(4 * Page, 4 * Page));
        Assert.Throws<InvalidOperationException>(() => a.Reserve(new Region(6 * Page, 4 * Page)));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Reserve(new Region(100, Page)));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Reserve(new Region(15 * Page, 2 * Page)));
    }

    [Fact]
    public void A_full_pool_says_how_much_is_free()
    {
        var a = new RegionAllocator(4 * Page);
        a.Allocate(3 * Page);
        var e = Assert.Throws<PoolFullException>(() => a.Allocate(2 * Page));
        Assert.Contains("4,096 bytes are free", e.Message, StringComparison.Ordinal);
    }
}
