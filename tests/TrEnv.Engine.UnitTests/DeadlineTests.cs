using System.Diagnostics;
using TrEnv.Contracts;
using TrEnv.Engine;

namespace TrEnv.Tests;

/// <summary>Every phase of guest code runs under a deadline: instantiation (the start function), init and handle.</summary>
public sealed class DeadlineTests(EngineFixture fx) : IClassFixture<EngineFixture>
{
    private const string Abi = """
        (memory (export "memory") 1)
        (func (export "trenv_alloc") (param i32) (result i32) i32.const 1024)
        (func (export "trenv_handle") (param i32 i32) (result i64) i64.const 0)
        """;

    private static readonly InstanceOptions Short = new() { InitTimeout = TimeSpan.FromMilliseconds(300), Timeout = TimeSpan.FromMilliseconds(300) };

    [Fact]
    public void A_start_function_that_loops_is_interrupted_at_the_init_deadline()
    {
        var module = fx.Cache.Add(Wasmtime.Module.ConvertText($"(module {Abi} (func $spin (loop $l (br $l))) (start $spin))"));
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<EngineException>(() => FunctionInstance.Create(fx.Engine, module, Short));
        Assert.Equal(ErrorKinds.Timeout, e.Kind);
        Assert.Contains("start function", e.Message, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1.3), $"interrupted after {clock.Elapsed}");
    }

    [Fact]
    public void An_init_that_loops_is_interrupted_at_the_init_deadline()
    {
        var module = fx.Cache.Add(Wasmtime.Module.ConvertText($"(module {Abi} (func (export \"trenv_init\") (loop $l (br $l))))"));
        using var instance = FunctionInstance.Create(fx.Engine, module, Short);
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<EngineException>(instance.Initialize);
        Assert.Equal(ErrorKinds.Timeout, e.Kind);
        Assert.Contains("initialisation", e.Message, StringComparison.Ordinal);
        Assert.Contains("initTimeoutMs", e.Message, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1.3), $"interrupted after {clock.Elapsed}");
    }

    [Fact]
    public void A_start_function_that_returns_leaves_a_usable_instance()
    {
        var module = fx.Cache.Add(Wasmtime.Module.ConvertText($"(module {Abi} (func $ok) (start $ok))"));
        using var instance = FunctionInstance.Create(fx.Engine, module, Short);
        instance.Initialize();
        Assert.Empty(instance.Invoke([]));
    }
}
