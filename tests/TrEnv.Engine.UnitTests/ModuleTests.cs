using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Engine.Wasm;

namespace TrEnv.Tests;

public sealed class ModuleTests(EngineFixture fx) : IClassFixture<EngineFixture>
{
    [Fact]
    public void Rewriter_exports_a_hidden_stack_pointer()
    {
        var result = ModuleRewriter.ExportMutableGlobals(TestGuests.Bytes("hello"));
        Assert.Contains(result.Globals, g => g.ExportName == GuestAbi.GlobalExportPrefix + g.Index);
        Assert.True(Wasmtime.Module.Validate(fx.Engine.Engine, result.Module) is null);
    }

    [Fact]
    public void Rewriter_reuses_existing_global_exports_and_adds_nothing_then()
    {
        var wasm = TestGuests.Bytes("hello-exported");
        var result = ModuleRewriter.ExportMutableGlobals(wasm);
        Assert.Contains(result.Globals, g => g.ExportName == "__stack_pointer");
        Assert.Equal(wasm, result.Module);
    }

    [Fact]
    public void Rewriter_creates_an_export_section_when_there_is_none()
    {
        var wasm = Wasmtime.Module.ConvertText("(module (global (mut i32) (i32.const 7)) (global i64 (i64.const 1)) (global (mut f64) (f64.const 0)) (func))");
        var result = ModuleRewriter.ExportMutableGlobals(wasm);
        Assert.Equal([0u, 2u], result.Globals.Select(g => g.Index));
        Assert.True(Wasmtime.Module.Validate(fx.Engine.Engine, result.Module) is null);
        using var module = Wasmtime.Module.FromBytes(fx.Engine.Engine, "t", result.Module);
        Assert.Equal(["__trenv_global_0", "__trenv_global_2"], module.Exports.Select(e => e.Name).Order());
    }

    [Theory]
    [InlineData(new byte[] { 1, 2, 3 }, "magic")]
    [InlineData(new byte[] { 0, 0x61, 0x73, 0x6D, 2, 0, 0, 0 }, "version 1")]
    [InlineData(new byte[] { 0, 0x61, 0x73, 0x6D, 1, 0, 0, 0, 6, 50, 1 }, "past the end")]
    public void Rewriter_rejects_malformed_binaries_with_a_reason(byte[] wasm, string reason)
    {
        var e = Assert.Throws<InvalidModuleException>(() => ModuleRewriter.ExportMutableGlobals(wasm));
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_module_without_the_stack_pointer_export_gets_its_mutable_globals_exported()
    {
        var module = fx.Load("hello");
        Assert.NotEmpty(module.MutableGlobals);
        Assert.All(module.MutableGlobals, g => Assert.StartsWith(GuestAbi.GlobalExportPrefix, g, StringComparison.Ordinal));
    }

    [Fact]
    public void A_wasi_command_is_refused_with_advice()
    {
        // (module (memory (export "memory") 1) (func (export "_start")) (func (export "trenv_alloc") (param i32) (result i32) i32.const 0)
        //   (func (export "trenv_handle") (param i32 i32) (result i64) i64.const 0))
        var wat = """
            (module (memory (export "memory") 1) (func (export "_start"))
              (func (export "trenv_alloc") (param i32) (result i32) i32.const 0)
              (func (export "trenv_handle") (param i32 i32) (result i64) i64.const 0))
            """;
        var e = Assert.Throws<InvalidModuleException>(() => fx.Cache.Add(Wasmtime.Module.ConvertText(wat)));
        Assert.Contains("reactor", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_signatures_and_foreign_imports_are_named()
    {
        var wat = """
            (module (import "env" "secret" (func)) (memory (export "memory") 1)
              (func (export "trenv_alloc") (param i64) (result i32) i32.const 0)
              (func (export "trenv_handle") (param i32 i32) (result i64) i64.const 0))
            """;
        var e = Assert.Throws<InvalidModuleException>(() => fx.Cache.Add(Wasmtime.Module.ConvertText(wat)));
        Assert.Contains("\"trenv_alloc\" has type (i64) -> (i32) but ABI v1 needs (i32) -> (i32)", e.Message, StringComparison.Ordinal);
        Assert.Contains("\"env\".\"secret\"", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_compiled_artifact_is_cached_by_content_hash()
    {
        var wasm = TestGuests.Bytes("trap");
        var first = fx.Cache.Add(wasm);
        Assert.True(File.Exists(fx.Cache.CompiledPath(first.Hash)));
        var second = fx.Cache.Load(first.Hash);
        Assert.Equal(first.Hash, second.Hash);
        Assert.Equal(ModuleHash.Of(wasm), first.Hash);
    }

    [Fact]
    public void A_stale_or_foreign_compiled_artifact_is_recompiled()
    {
        var wasm = TestGuests.Bytes("loop");
        var hash = fx.Cache.Put(wasm);
        File.WriteAllBytes(fx.Cache.CompiledPath(hash), [1, 2, 3, 4]);
        var module = fx.Cache.Load(hash);
        Assert.Equal(hash, module.Hash);
    }

    [Theory]
    [InlineData("(i32.const 70000)", "(i64.const 0)", "trenv_alloc returned the range [70000")]
    [InlineData("(i32.const 16)", "(i64.const 0x0000fff0_00000100)", "trenv_handle returned the range [65520")]
    [InlineData("(i32.const 16)", "(i64.const 0x00000010_7fffffff)", "bytes of output; the limit is")]
    public void Out_of_range_buffers_from_the_guest_are_errors_not_host_reads(string alloc, string handle, string message)
    {
        var wat = $"""
            (module (memory (export "memory") 1)
              (func (export "trenv_alloc") (param i32) (result i32) {alloc})
              (func (export "trenv_handle") (param i32 i32) (result i64) {handle}))
            """;
        using var instance = FunctionInstance.Create(fx.Engine, fx.Cache.Add(Wasmtime.Module.ConvertText(wat)), new InstanceOptions());
        instance.Initialize();
        var e = Assert.Throws<EngineException>(() => instance.Invoke("abcd"u8));
        Assert.Equal(ErrorKinds.Trap, e.Kind);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.True(instance.Poisoned);
    }

    [Fact]
    public void A_trap_during_init_is_reported_as_a_trap_during_initialisation()
    {
        var wat = """
            (module (memory (export "memory") 1) (func (export "trenv_init") unreachable)
              (func (export "trenv_alloc") (param i32) (result i32) i32.const 0)
              (func (export "trenv_handle") (param i32 i32) (result i64) i64.const 0))
            """;
        using var instance = FunctionInstance.Create(fx.Engine, fx.Cache.Add(Wasmtime.Module.ConvertText(wat)), new InstanceOptions());
        var e = Assert.Throws<EngineException>(instance.Initialize);
        Assert.Equal(ErrorKinds.Trap, e.Kind);
        Assert.Contains("initialisation", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Exhausting_the_wasm_call_stack_is_a_trap_and_the_engine_serves_on()
    {
        var wat = """
            (module (memory (export "memory") 1) (func $f (call $f))
              (func (export "trenv_alloc") (param i32) (result i32) i32.const 16)
              (func (export "trenv_handle") (param i32 i32) (result i64) (call $f) i64.const 0))
            """;
        using (var instance = FunctionInstance.Create(fx.Engine, fx.Cache.Add(Wasmtime.Module.ConvertText(wat)), new InstanceOptions()))
        {
            instance.Initialize();
            var e = Assert.Throws<EngineException>(() => instance.Invoke("x"u8));
            Assert.Equal(ErrorKinds.Trap, e.Kind);
            Assert.Contains("call stack exhausted", e.Message, StringComparison.Ordinal);
        }
        using var hello = FunctionInstance.Create(fx.Engine, fx.Load("hello"), new InstanceOptions());
        hello.Initialize();
        Assert.Equal("hello: y"u8.ToArray(), hello.Invoke("y"u8));
    }
}
