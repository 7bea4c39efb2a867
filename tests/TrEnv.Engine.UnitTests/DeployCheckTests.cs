using System.Diagnostics;
using System.Text;
using TrEnv.Engine;
using TrEnv.Engine.Wasm;
using Wasmtime;

namespace TrEnv.Tests;

/// <summary>
/// The deploy-time check refuses every module the host could never instantiate or template, naming why, and
/// accepts every real guest: the samples and both script runtimes.
/// </summary>
public sealed class DeployCheckTests(EngineFixture fx) : IClassFixture<EngineFixture>
{
    private const string Abi = """
        (func (export "trenv_alloc") (param i32) (result i32) i32.const 1024)
        (func (export "trenv_handle") (param i32 i32) (result i64) i64.const 0)
        """;

    private static string Problem(string wat, long memoryLimitBytes = 128L << 20)
    {
        var wasm = Module.ConvertText($"(module {wat} {Abi})");
        var e = Assert.Throws<InvalidModuleException>(() => GuestAbiCheck.Check(wasm, memoryLimitBytes));
        return e.Message;
    }

    [Theory]
    [InlineData("""(import "wasi_snapshot_preview1" "fd_frobnicate" (func (param i32) (result i32))) (memory (export "memory") 1)""", "\"fd_frobnicate\", which the host's WASI (preview 1) does not have")]
    [InlineData("""(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32) (result i32))) (memory (export "memory") 1)""", "\"fd_write\" with type (i32, i32) -> (i32), but the host provides (i32, i32, i32, i32) -> (i32)")]
    [InlineData("""(import "wasi_snapshot_preview1" "proc_exit" (func (param i32) (result i32))) (memory (export "memory") 1)""", "\"proc_exit\" with type (i32) -> (i32), but the host provides (i32) -> ()")]
    [InlineData("""(import "trenv" "error" (func (param i32 i32 i32))) (memory (export "memory") 1)""", "\"trenv\".\"error\" with type (i32, i32, i32) -> ()")]
    [InlineData("""(memory (export "memory") 1 1 shared)""", "memory 0 is shared")]
    [InlineData("""(memory (export "memory") 3000)""", "memory 0 starts at 187.5 MiB, over the function's memory limit of 128 MiB")]
    [InlineData("""(memory (export "memory") 1) (global (mut v128) (v128.const i32x4 0 0 0 0))""", "global 0 is a mutable v128")]
    [InlineData("""(memory (export "memory") 1) (global (mut funcref) (ref.null func))""", "global 0 is a mutable funcref")]
    [InlineData("""(memory (export "memory") 1) (data (i32.const 65530) "0123456789")""", "active data segment 0 writes bytes 65530..65540 of memory 0, which starts with 65536 bytes")]
    [InlineData("""(memory (export "memory") 1) (global $at i32 (i32.const 70000)) (data (global.get $at) "x")""", "active data segment 0 writes bytes 70000..70001")]
    [InlineData("""(memory (export "memory") 1) (table 2 funcref) (func $f) (elem (i32.const 1) $f $f)""", "active element segment 0 writes entries 1..3 of table 0, which starts with 2 entries")]
    [InlineData("""(memory (export "memory") 1) (memory 1)""", "it has 2 memories; templates capture one linear memory")]
    [InlineData("""(memory (export "memory") 1) (table 2 funcref) (func $f) (elem declare func $f) (func (export "trenv_init") (table.set 0 (i32.const 0) (ref.func $f)))""", "uses table.set: templates capture linear memory and globals, not tables")]
    [InlineData("""(memory (export "memory") 1) (table 2 funcref) (func (export "trenv_init") (drop (table.grow 0 (ref.null func) (i32.const 4))))""", "uses table.grow")]
    [InlineData("""(memory (export "memory") 1) (table 2 funcref) (func $f) (elem $e func $f) (func (export "trenv_init") (table.init 0 $e (i32.const 0) (i32.const 0) (i32.const 1)))""", "uses table.init")]
    public void A_module_the_host_could_never_instantiate_or_template_is_refused_naming_why(string wat, string expected)
        => Assert.Contains(expected, Problem(wat), StringComparison.Ordinal);

    [Fact]
    public void Every_problem_is_named_in_one_message()
    {
        var message = Problem("""(import "wasi_snapshot_preview1" "nope" (func)) (memory (export "memory") 3000 3000 shared)""");
        Assert.Contains("\"nope\"", message, StringComparison.Ordinal);
        Assert.Contains("is shared", message, StringComparison.Ordinal);
        Assert.Contains("over the function's memory limit", message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tables_only_read_and_segments_in_bounds_pass()
    {
        var wasm = Module.ConvertText($$"""
            (module (memory (export "memory") 1) (table 2 funcref) (func $f) (elem (i32.const 0) $f $f)
              (data (i32.const 65530) "012345") (global (mut i64) (i64.const 0)) (global v128 (v128.const i32x4 0 0 0 0))
              (func (export "trenv_init") (call_indirect (i32.const 1)) (drop (table.size 0)) (drop (table.get 0 (i32.const 0))))
              (func (export "f") (result v128) (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (v128.const i64x2 1 2) (v128.const i64x2 3 4))
                (i32x4.extract_lane 2) (drop) (v128.load offset=8 (i32.const 0)))
              {{Abi}})
            """);
        GuestAbiCheck.Check(wasm, 1L << 20);
    }

    [Fact]
    public void Every_sample_guest_and_both_script_runtimes_pass_and_the_check_is_fast()
    {
        var guests = Directory.GetFiles(Path.GetDirectoryName(TestGuests.PathOf("hello"))!, "*.wasm");
        Assert.NotEmpty(guests);
        var runtimes = Environment.GetEnvironmentVariable("TRENV_RUNTIMES_DIR") is { Length: > 0 } dir ? dir : "/var/cache/trenv/runtimes";
        var modules = guests.Concat([Path.Combine(runtimes, "python", "python.wasm"), Path.Combine(runtimes, "ruby", "ruby.wasm")]).ToList();
        foreach (var path in modules)
        {
            var wasm = File.ReadAllBytes(path);
            var clock = Stopwatch.StartNew();
            var problems = Record.Exception(() => GuestAbiCheck.Check(wasm, 256L << 20));
            // Some samples break the ABI on purpose; only the new rules must not refuse a real guest.
            if (problems is InvalidModuleException e)
                Assert.DoesNotContain("table", e.Message, StringComparison.Ordinal);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"{path}: {clock.Elapsed}");
        }
        GuestAbiCheck.Check(File.ReadAllBytes(Path.Combine(runtimes, "python", "python.wasm")), 256L << 20);
        GuestAbiCheck.Check(File.ReadAllBytes(Path.Combine(runtimes, "ruby", "ruby.wasm")), 256L << 20);
    }

    [Fact]
    public void The_WASI_table_is_what_the_host_links()
    {
        // One module importing every function with the table's signature instantiates against the real linker...
        var imports = new StringBuilder();
        foreach (var (name, type) in WasiPreview1.All)
        {
            imports.Append($"(import \"wasi_snapshot_preview1\" \"{name}\" (func (param {string.Join(' ', type.Params.Select(FuncType.Name))}) (result {string.Join(' ', type.Results.Select(FuncType.Name))})))\n");
        }
        var all = Module.ConvertText($"(module {imports.ToString().Replace("(param )", "", StringComparison.Ordinal).Replace("(result )", "", StringComparison.Ordinal)})");
        Instantiate(all);
        // ...and one signature off fails there too, so the check above can fail.
        var wrong = Module.ConvertText("""(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32) (result i32))))""");
        Assert.ThrowsAny<WasmtimeException>(() => Instantiate(wrong));
    }

    private void Instantiate(byte[] wasm)
    {
        using var module = Module.FromBytes(fx.Engine.Engine, "wasi", wasm);
        using var store = new Store(fx.Engine.Engine);
        store.SetWasiConfiguration(new WasiConfiguration());
        fx.Engine.Linker.Instantiate(store, module);
    }
}
