using System.Runtime.InteropServices;

namespace TrEnv.Engine;

/// <summary>
/// Managed side of native/trenv_uffd.c: lazy template restore. The fault handler is a native thread in
/// this process that fetches a missing page window through the worker's page server; see the C file.
/// </summary>
public static partial class LazyPages
{
    private const string Library = "trenv_guard";
    private static string? _server;

    /// <summary>Connects this process to the page server at <paramref name="socketPath"/> (once; later calls must name the same one).</summary>
    public static void Start(string socketPath)
    {
        if (_server == socketPath)
            return;
        if (_server is not null)
            throw new InvalidOperationException($"This process already takes pages from {_server}.");
        var rc = trenv_uffd_init(socketPath);
        if (rc != 0)
            throw new TemplateInvalidException($"Lazy restore is unavailable: userfaultfd or the page server at {socketPath} failed (errno {-rc}).");
        _server = socketPath;
    }

    public static long Faults => _server is null ? 0 : trenv_uffd_faults();

    public static long FetchedBytes => _server is null ? 0 : trenv_uffd_fetched_bytes();

    internal static void Register(nint address, long length, long fileOffset)
    {
        var rc = trenv_uffd_register(address, (nuint)length, fileOffset);
        if (rc != 0)
            throw new TemplateInvalidException($"Registering {length >> 10} KiB for lazy restore failed (errno {-rc}); the mirror must be on tmpfs.");
    }

    internal static void Unregister(nint address, long length) => trenv_uffd_unregister(address, (nuint)length);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int trenv_uffd_init(string socketPath);

    [LibraryImport(Library)]
    private static partial int trenv_uffd_register(nint address, nuint length, long fileOffset);

    [LibraryImport(Library)]
    private static partial void trenv_uffd_unregister(nint address, nuint length);

    [LibraryImport(Library)]
    private static partial long trenv_uffd_faults();

    [LibraryImport(Library)]
    private static partial long trenv_uffd_fetched_bytes();
}
