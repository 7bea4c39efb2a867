using System.Text;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool;

namespace TrEnv.Tests;

public sealed class TemplateTests(EngineFixture fx) : IClassFixture<EngineFixture>, IDisposable
{
    private readonly string _poolPath = Path.Combine(fx.Scratch, $"pool-{Guid.NewGuid():N}");
    private PoolDevice? _pool;

    private PoolDevice Pool => _pool ??= PoolDevice.OpenOrCreate(_poolPath, 512L << 20);

    private (GuestModule Module, TemplateHeader Header) CaptureHello()
    {
        var module = fx.Load("hello");
        using var instance = FunctionInstance.Create(fx.Engine, module, new InstanceOptions());
        instance.Initialize();
        instance.Invoke("warm up the allocator"u8);
        var region = new RegionAllocator(Pool.Capacity).Allocate(instance.CaptureSize());
        return (module, instance.Capture(Pool.Handle, region, "unit"));
    }

    private FunctionInstance Fresh(GuestModule module) => FunctionInstance.Create(fx.Engine, module, new InstanceOptions());

    [Fact]
    public void Header_round_trips_through_its_bytes()
    {
        var (_, header) = CaptureHello();
        var parsed = TemplateHeader.FromBytes(header.ToBytes(), "memory");
        Assert.Equal(header.Module, parsed.Module);
        Assert.Equal(header.MemoryBytes, parsed.MemoryBytes);
        Assert.Equal(header.Runs, parsed.Runs);
        Assert.Equal(header.Globals, parsed.Globals);
        Assert.Contains(header.Globals, g => g.ExportName.StartsWith(GuestAbi.GlobalExportPrefix, StringComparison.Ordinal));
    }

    [Fact]
    public void Zero_pages_are_never_stored()
    {
        var (_, header) = CaptureHello();
        Assert.True(header.StoredBytes < header.MemoryBytes / 2, $"stored {header.StoredBytes} of {header.MemoryBytes}");
        var buffer = new byte[TemplateHeader.PageSize];
        foreach (var run in header.Runs)
        {
            for (long p = 0; p < run.Length; p += buffer.Length)
            {
                Pool.Read(header.RegionOffset + run.RegionOffset + p, buffer);
                Assert.True(buffer.AsSpan().IndexOfAnyExcept((byte)0) >= 0, "a stored page is all zeros");
            }
        }
    }

    [Fact]
    public void Truncated_header_is_refused()
    {
        var bytes = CaptureHello().Header.ToBytes();
        foreach (var length in new[] { 0, 7, 20, bytes.Length / 2, bytes.Length - 1 })
        {
            var e = Assert.Throws<TemplateInvalidException>(() => TemplateHeader.FromBytes(bytes.AsSpan(0, length), "t.tpl"));
            Assert.Equal(ErrorKinds.TemplateInvalid, e.Kind);
        }
    }

    [Fact]
    public void Any_flipped_header_byte_is_refused()
    {
        var bytes = CaptureHello().Header.ToBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            var copy = (byte[])bytes.Clone();
            copy[i] ^= 0x20;
            Assert.Throws<TemplateInvalidException>(() => TemplateHeader.FromBytes(copy, "t.tpl"));
        }
    }

    [Fact]
    public void Another_format_version_is_refused_by_name()
    {
        var bytes = CaptureHello().Header.ToBytes();
        bytes[8] = 9;
        var e = Assert.Throws<TemplateInvalidException>(() => TemplateHeader.FromBytes(bytes, "t.tpl"));
        Assert.Contains("format version 9", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_template_of_another_module_is_refused_and_never_mapped()
    {
        var (_, header) = CaptureHello();
        using var other = Fresh(fx.Load("hello-exported"));
        var e = Assert.Throws<TemplateInvalidException>(() => other.Restore(header, Pool.Handle, RestoreMode.Map));
        Assert.Contains("captured from module", e.Message, StringComparison.Ordinal);
        Assert.False(other.Initialized);
    }

    [Fact]
    public void A_pool_shorter_than_the_region_is_refused()
    {
        var (module, header) = CaptureHello();
        RandomAccess.SetLength(Pool.Handle, header.RegionOffset + header.RegionLength - 4096);
        using var instance = Fresh(module);
        var e = Assert.Throws<TemplateInvalidException>(() => instance.Restore(header, Pool.Handle, RestoreMode.Map));
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Corrupted_pool_pages_fail_verification()
    {
        var (_, header) = CaptureHello();
        FunctionInstance.VerifyData(header, Pool.Handle);
        var run = header.Runs[^1];
        Pool.Write(header.RegionOffset + run.RegionOffset + 10, [0xFF, 0xEE]);
        var e = Assert.Throws<TemplateInvalidException>(() => FunctionInstance.VerifyData(header, Pool.Handle));
        Assert.Contains("checksum", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pool_truncated_under_a_live_mapping_is_refused_before_the_guest_runs()
    {
        var (module, header) = CaptureHello();
        using var instance = Fresh(module);
        instance.Restore(header, Pool.Handle, RestoreMode.Map);
        Assert.Equal("hello: a", Encoding.UTF8.GetString(instance.Invoke("a"u8)));
        RandomAccess.SetLength(Pool.Handle, 0);
        var e = Assert.Throws<TemplateInvalidException>(() => instance.Invoke("b"u8));
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        Assert.True(instance.Poisoned);
    }

    [Fact]
    public void A_guest_touching_a_truncated_mapping_is_discarded_not_crashed()
    {
        // The race the check above cannot close: truncation after the check. The SIGBUS guard absorbs
        // the fault, and the instance and its result are thrown away.
        var module = fx.Load("heavy");
        TemplateHeader header;
        using (var cold = FunctionInstance.Create(fx.Engine, module, new InstanceOptions()))
        {
            cold.Initialize();
            header = cold.Capture(Pool.Handle, new RegionAllocator(Pool.Capacity).Allocate(cold.CaptureSize()), "unit");
        }
        using var instance = Fresh(module);
        instance.Restore(header, Pool.Handle, RestoreMode.Map);
        instance.CheckPoolBeforeInvoke = false;
        RandomAccess.SetLength(Pool.Handle, 0);
        var e = Assert.ThrowsAny<EngineException>(() => instance.Invoke("1 2 3 4 5 6 7 8 9 10 11 12"u8));
        Assert.Equal(ErrorKinds.TemplateInvalid, e.Kind);
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        Assert.True(instance.Poisoned);
    }

    [Fact]
    public void Map_restore_shares_pages_copy_on_write_so_a_write_does_not_reach_the_pool()
    {
        var (module, header) = CaptureHello();
        using var a = Fresh(module);
        a.Restore(header, Pool.Handle, RestoreMode.Map);
        for (var i = 0; i < 50; i++)
            a.Invoke(Encoding.UTF8.GetBytes(new string('x', 1000 + i)));
        FunctionInstance.VerifyData(header, Pool.Handle);
        using var b = Fresh(module);
        b.Restore(header, Pool.Handle, RestoreMode.Map);
        Assert.Equal("hello: b", Encoding.UTF8.GetString(b.Invoke("b"u8)));
    }

    public void Dispose()
    {
        _pool?.Dispose();
        File.Delete(_poolPath);
    }
}
