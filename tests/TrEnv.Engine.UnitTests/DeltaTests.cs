using System.Text;
using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool;

namespace TrEnv.Tests;

/// <summary>Session deltas: only the pages a session changed over its template are stored, and a resume continues it.</summary>
public sealed class DeltaTests(EngineFixture fx) : IClassFixture<EngineFixture>, IDisposable
{
    private readonly string _poolPath = Path.Combine(fx.Scratch, $"pool-{Guid.NewGuid():N}");
    private readonly RegionAllocator _allocator = new(512L << 20);
    private PoolDevice? _pool;

    private PoolDevice Pool => _pool ??= PoolDevice.OpenOrCreate(_poolPath, 512L << 20);

    private static string Call(FunctionInstance instance, string input) => Encoding.UTF8.GetString(instance.Invoke(Encoding.UTF8.GetBytes(input)));

    private FunctionInstance Fresh(GuestModule module) => FunctionInstance.Create(fx.Engine, module, new InstanceOptions { MemoryLimitBytes = 256L << 20 });

    private TemplateHeader Template(GuestModule module)
    {
        using var instance = Fresh(module);
        instance.Initialize();
        return instance.Capture(Pool.Handle, _allocator.Allocate(instance.CaptureSize()), "unit");
    }

    private TemplateHeader Pause(FunctionInstance instance, TemplateHeader template)
    {
        var delta = instance.ScanDelta(template, Pool.Handle);
        var bytes = Math.Max(TemplateHeader.PageSize, delta.Where(r => !r.Zero).Sum(r => r.Length));
        var header = instance.CaptureDelta(delta, template, Pool.Handle, _allocator.Allocate(bytes), "unit");
        return TemplateHeader.FromBytes(header.ToBytes(), "delta"); // through its bytes, as a worker reads it
    }

    [Fact]
    public void A_resumed_session_continues_where_it_paused_and_stores_only_what_it_changed()
    {
        var module = fx.Load("notebook");
        var template = Template(module);
        using var first = Fresh(module);
        first.Restore(template, Pool.Handle, RestoreMode.Map);
        Assert.Equal("ok 1", Call(first, "set name ada"));
        Assert.Equal("total=5 calls=2", Call(first, "add 5"));
        Assert.Equal("filled 256 KiB", Call(first, "fill 256"));
        var rand = Call(first, "rand");

        first.ScanDelta(template, Pool.Handle, out var dirtyPages);
        var delta = Pause(first, template);
        Assert.True(delta.IsDelta);
        // Never more than the pages the guest wrote since the template was mapped, which the page map counts.
        Assert.InRange(delta.StoredBytes, 1, dirtyPages * TemplateHeader.PageSize);
        Assert.Equal(template.Checksum, delta.BaseChecksum);
        // 256 KiB of fill plus a handful of heap and stack pages, against a 16 MiB template.
        Assert.InRange(delta.StoredBytes, 256 << 10, 1 << 20);
        Assert.True(delta.StoredBytes * 10 < template.StoredBytes, $"delta {delta.StoredBytes} vs template {template.StoredBytes}");

        using var resumed = Fresh(module);
        resumed.Restore(template, Pool.Handle, RestoreMode.Map, delta, Pool.Handle);
        Assert.Equal("ada", Call(resumed, "get name"));
        Assert.Equal("total=12 calls=6", Call(resumed, "add 7"));
        // The random state carries on from the session, not reseeded: the same next number as the paused instance.
        Assert.Equal(Call(first, "rand"), Call(resumed, "rand"));
        Assert.NotEqual(rand, Call(resumed, "rand"));
    }

    [Fact]
    public void A_second_pause_after_a_resume_holds_both_rounds_of_changes()
    {
        var module = fx.Load("notebook");
        var template = Template(module);
        using var a = Fresh(module);
        a.Restore(template, Pool.Handle, RestoreMode.Map);
        Call(a, "set k1 one");
        Call(a, "fill 64");
        var d1 = Pause(a, template);

        using var b = Fresh(module);
        b.Restore(template, Pool.Handle, RestoreMode.Map, d1, Pool.Handle);
        Call(b, "set k2 two");
        var d2 = Pause(b, template);
        Assert.True(d2.StoredBytes >= 64 << 10);

        using var c = Fresh(module);
        c.Restore(template, Pool.Handle, RestoreMode.Map, d2, Pool.Handle);
        Assert.Equal("one", Call(c, "get k1"));
        Assert.Equal("two", Call(c, "get k2"));
        Assert.StartsWith("keys=2 total=0 calls=6 fills=1 ", Call(c, "state"), StringComparison.Ordinal);
    }

    [Fact]
    public void Without_the_page_map_shortcut_the_delta_is_the_same()
    {
        // A copy-restored instance has no template-backed pages: every page is compared, and the answer must agree.
        var module = fx.Load("notebook");
        var template = Template(module);
        using var mapped = Fresh(module);
        mapped.Restore(template, Pool.Handle, RestoreMode.Map);
        using var copied = Fresh(module);
        copied.Restore(template, Pool.Handle, RestoreMode.Copy);
        foreach (var i in new[] { mapped, copied })
        {
            Call(i, "set x 1");
            Call(i, "fill 40");
        }
        var fromMapped = mapped.ScanDelta(template, Pool.Handle);
        var fromCopied = copied.ScanDelta(template, Pool.Handle);
        Assert.Equal(fromCopied, fromMapped);
        Assert.NotEmpty(fromMapped);
    }

    [Fact]
    public void A_corrupted_delta_page_or_a_wrong_base_is_refused()
    {
        var module = fx.Load("notebook");
        var template = Template(module);
        var other = Template(module); // same content, another region: another identity
        using var a = Fresh(module);
        a.Restore(template, Pool.Handle, RestoreMode.Map);
        Call(a, "fill 8");
        var delta = Pause(a, template);

        using var wrongBase = Fresh(module);
        Assert.Throws<TemplateInvalidException>(() => wrongBase.Restore(other, Pool.Handle, RestoreMode.Map, delta, Pool.Handle));

        var run = delta.Runs[0];
        Pool.Write(delta.RegionOffset + run.RegionOffset, [0xEE, 0xEE]);
        using var corrupted = Fresh(module);
        var e = Assert.Throws<TemplateInvalidException>(() => corrupted.Restore(template, Pool.Handle, RestoreMode.Map, delta, Pool.Handle));
        Assert.Contains("checksum", e.Message, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _pool?.Dispose();
        File.Delete(_poolPath);
    }
}
