using System.Runtime.InteropServices;

namespace TrEnv.Engine;

/// <summary>
/// Managed side of native/trenv_guard.c: registers template mappings so a SIGBUS from a truncated
/// pool file is absorbed and counted instead of killing the process.
/// </summary>
internal static partial class SigbusGuard
{
    private const string Library = "trenv_guard";
    private static readonly bool Available = TryInstall();

    public static int Faults => Available ? trenv_guard_faults() : 0;

    /// <summary>Registers [start, end); returns a slot to pass to <see cref="Remove"/>, or -1 when unguarded.</summary>
    public static int Add(nint start, nint end) => Available ? trenv_guard_add((nuint)start, (nuint)end) : -1;

    public static void Remove(int slot)
    {
        if (Available && slot >= 0)
            trenv_guard_remove(slot);
    }

    private static bool TryInstall()
    {
        try
        {
            return trenv_guard_install() == 0;
        }
        catch (DllNotFoundException)
        {
            Console.Error.WriteLine("trenv: libtrenv_guard.so not found; a truncated pool file can crash this process.");
            return false;
        }
    }

    [LibraryImport(Library)]
    private static partial int trenv_guard_install();

    [LibraryImport(Library)]
    private static partial int trenv_guard_add(nuint start, nuint end);

    [LibraryImport(Library)]
    private static partial void trenv_guard_remove(int slot);

    [LibraryImport(Library)]
    private static partial int trenv_guard_faults();
}
