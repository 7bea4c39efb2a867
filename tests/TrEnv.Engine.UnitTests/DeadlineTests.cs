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

    // A handle that spins on the monotonic clock for 10 ms per input byte.
    private const string Spinner = """
        (module
          (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "trenv_alloc") (param i32) (result i32) i32.const 1024)
          (func $now (result i64) (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 0))) (i64.load (i32.const 0)))
          (func (export "trenv_handle") (param i32 i32) (result i64) (local $end i64)
            (local.set $end (i64.add (call $now) (i64.mul (i64.extend_i32_u (local.get 1)) (i64.const 10000000))))
            (loop $l (br_if $l (i64.lt_u (call $now) (local.get $end))))
            i64.const 0))
        """;

    [Fact]
    public void A_call_runs_to_its_own_deadline_even_when_an_earlier_calls_deadline_passes_during_it()
    {
        var module = fx.Cache.Add(Wasmtime.Module.ConvertText(Spinner));
        using var instance = FunctionInstance.Create(fx.Engine, module, Short);
        instance.Initialize();
        // The first call's 50 ms deadline passes while the second (150 ms of work, 2 s allowed) runs.
        Assert.Empty(instance.Invoke([], TimeSpan.FromMilliseconds(50)));
        Assert.Empty(instance.Invoke(new byte[15], TimeSpan.FromSeconds(2)));
        // And a call past its own deadline is still interrupted, soon after it.
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<EngineException>(() => instance.Invoke(new byte[100], TimeSpan.FromMilliseconds(100)));
        Assert.Equal(ErrorKinds.Timeout, e.Kind);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(0.9), $"interrupted after {clock.Elapsed}");
    }

    [Fact]
    public void Calls_that_end_before_the_epoch_thread_looks_do_not_wake_it_one_by_one()
    {
        // As in a sandbox host: a short call, then a wait for the next request.
        using var ticker = new EpochTicker(fx.Engine.Engine);
        for (var i = 0; i < 200; i++)
        {
            using (ticker.Acquire(TimeSpan.FromSeconds(30)))
            {
            }
            Thread.Sleep(1);
        }
        Assert.True(ticker.Wakeups <= 3, $"the epoch thread woke {ticker.Wakeups} times for 200 calls");
        // And a call with an earlier deadline than the one the thread sleeps towards is still interrupted in time.
        var module = fx.Cache.Add(Wasmtime.Module.ConvertText(Spinner));
        using var instance = FunctionInstance.Create(fx.Engine, module, Short);
        instance.Initialize();
        for (var i = 0; i < 20; i++)
            Assert.Empty(instance.Invoke([], TimeSpan.FromSeconds(30)));
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<EngineException>(() => instance.Invoke(new byte[100], TimeSpan.FromMilliseconds(100)));
        Assert.Equal(ErrorKinds.Timeout, e.Kind);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(0.9), $"interrupted after {clock.Elapsed}");
    }
}
