using TrEnv.Contracts;
using TrEnv.Engine;

namespace TrEnv.SandboxHost;

/// <summary>
/// <c>--compile DIR HASH [--cgroup PATH]...</c>: joins the given cgroups first (so no byte of the compile is
/// charged elsewhere), compiles <c>DIR/HASH.wasm</c> into <c>DIR/HASH.cwasm</c> and exits. What a worker runs,
/// under a deadline of its own, to compile a deployed module before any sandbox loads it.
/// </summary>
public static class CompileMode
{
    /// <summary>The exit code for a module the compiler refuses (the same bytes always are).</summary>
    public const int Refused = 3;

    public static int Run(IReadOnlyList<string> args)
    {
        if (args.Count < 2 || !ModuleHash.IsValid(args[1]))
        {
            Console.Error.WriteLine("usage: TrEnv.SandboxHost --compile DIR HASH [--cgroup PATH]...");
            return 2;
        }
        try
        {
            for (var i = 2; i + 1 < args.Count; i += 2)
            {
                if (args[i] == "--cgroup")
                    File.WriteAllText(Path.Combine(args[i + 1], "cgroup.procs"), "0"); // "0" moves the writer itself
            }
            // The worker holds stdin open while it lives: if it dies, the compile stops instead of running on unbounded.
            new Thread(() =>
            {
                try
                {
                    using var stdin = Console.OpenStandardInput();
                    var buffer = new byte[64];
                    while (stdin.Read(buffer, 0, buffer.Length) > 0)
                    {
                    }
                }
                catch (IOException)
                {
                }
                Environment.Exit(137);
            }) { IsBackground = true }.Start();
            using var engine = new WasmEngine();
            new ModuleCache(engine, args[0]).Load(new ModuleHash(args[1])).Dispose();
            return 0;
        }
        catch (EngineException e)
        {
            Console.Error.WriteLine(e.Message);
            return Refused;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine(e.Message);
            return 4; // the node's trouble (a cgroup, the disk), not the module's: not remembered
        }
    }
}
