using System.Text;
using TrEnv.Engine;
using TrEnv.MemoryPool;

namespace TrEnv.Tests;

public sealed class InstanceTests(EngineFixture fx) : IClassFixture<EngineFixture>
{
    private static string Text(byte[] b) => Encoding.UTF8.GetString(b);

    private FunctionInstance Cold(string guest, InstanceOptions? options = null)
    {
        var instance = FunctionInstance.Create(fx.Engine, fx.Load(guest), options ?? new InstanceOptions());
        instance.Initialize();
        return instance;
    }

    [Fact]
    public void Hello_echoes_its_input()
    {
        using var instance = Cold("hello");
        Assert.Equal("hello: world", Text(instance.Invoke("world"u8)));
        Assert.Equal("hello: ", Text(instance.Invoke([])));
    }

    [Fact]
    public void Warm_instance_keeps_its_memory_between_invocations()
    {
        using var instance = Cold("heavy");
        Assert.EndsWith("calls=1", Text(instance.Invoke("1"u8)));
        Assert.EndsWith("calls=2", Text(instance.Invoke("1"u8)));
    }

    [Fact]
    public void Map_restore_produces_the_same_outputs_as_a_cold_instance()
    {
        var module = fx.Load("heavy");
        using var cold = Cold("heavy");
        using var pool = PoolDevice.OpenOrCreate(fx.PoolPath + "-heavy", 1L << 30);
        var region = new RegionAllocator(pool.Capacity).Allocate(cold.CaptureSize());
        var template = cold.Capture(pool.Handle, region, "test");
        Assert.True(template.NonZeroPages > 20_000, $"heavy should hold >80 MiB of state, got {template.NonZeroPages} pages");

        var rng = new Random(42);
        for (var i = 0; i < 25; i++)
        {
            var keys = string.Join(' ', Enumerable.Range(0, 20).Select(_ => rng.Next(0, 30_000_000)));
            using var cold2 = Cold("heavy");
            using var restored = FunctionInstance.Create(fx.Engine, module, new InstanceOptions());
            restored.Restore(template, pool.Handle, i % 2 == 0 ? RestoreMode.Map : RestoreMode.Copy);
            Assert.Equal(Text(cold2.Invoke(Encoding.UTF8.GetBytes(keys))), Text(restored.Invoke(Encoding.UTF8.GetBytes(keys))));
        }
    }
}
