using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool;

namespace TrEnv.SandboxHost;

/// <summary>
/// Runs a tiny guest through every engine path (instantiate, init, invoke, capture, map restore) when the
/// process starts, so one-time costs (native symbol binding, trap-handler set-up, first-call stubs) are paid
/// while the sandbox is still a generic pre-started one, not on a user's first request.
/// </summary>
internal static class Warmup
{
    private const string Guest = """
        (module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 2)
          (global $counter (mut i32) (i32.const 0))
          (func (export "trenv_init") (i32.store (i32.const 4096) (i32.const 42)))
          (func (export "trenv_alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "trenv_handle") (param i32 i32) (result i64)
            (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
            (i64.or (i64.shl (i64.const 8192) (i64.const 32)) (i64.extend_i32_u (local.get 1)))))
        """;

    public static void Run(WasmEngine engine, string scratch)
    {
        Directory.CreateDirectory(scratch);
        var cache = new ModuleCache(engine, Path.Combine(scratch, "modules"));
        using var module = cache.Add(Wasmtime.Module.ConvertText(Guest));
        var options = new InstanceOptions { TmpDirectory = scratch };
        var poolPath = Path.Combine(scratch, "pool");
        using (var pool = PoolDevice.OpenOrCreate(poolPath, 1L << 20))
        {
            TemplateHeader header;
            using (var cold = FunctionInstance.Create(engine, module, options))
            {
                cold.Initialize();
                header = cold.Capture(pool.Handle, new Region(0, RegionAllocator.RoundUp(cold.CaptureSize())), "warmup");
                cold.Invoke("warm"u8);
            }
            header = TemplateHeader.FromBytes(header.ToBytes(), "warmup");
            using var restored = FunctionInstance.Create(engine, module, options);
            restored.Restore(header, pool.Handle, RestoreMode.Map);
            if (!restored.Invoke("warm"u8).AsSpan().SequenceEqual("warm"u8))
                throw new InvalidOperationException("The sandbox warm-up guest answered wrongly.");
        }
        Directory.Delete(scratch, recursive: true);
    }
}
