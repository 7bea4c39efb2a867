using System.Globalization;
using System.Runtime.InteropServices;

namespace TrEnv.SandboxHost;

/// <summary>
/// The guest's /tmp. With its own mount namespace the host keeps /tmp on a private tmpfs sized to the
/// function's bound (remounted per load), so a guest that writes past it gets ENOSPC and the node's disk
/// never sees its bytes; a function's file layer is an overlay's read-only lower there, its upper on the
/// same tmpfs. Everything is purged on reset, so a repurposed sandbox keeps nothing of the previous
/// function. Without its own mount namespace (plain process) /tmp is a plain, unbounded directory,
/// emptied on reset, and a layer is copied in.
/// </summary>
internal sealed partial class SandboxFiles
{
    private const ulong MsNoSuid = 2, MsNoDev = 4, MsRemount = 32;
    private const long InitialBytes = 512L << 20;

    private readonly bool _ownMountNamespace;
    private readonly string? _scratch;
    private readonly string _merged;
    private readonly string _upper;
    private readonly string _work;
    private readonly string _empty;
    private long _scratchBytes;
    private bool _mounted;
    private bool _dirty = true;

    public SandboxFiles(string workDirectory, bool ownMountNamespace)
    {
        _ownMountNamespace = ownMountNamespace;
        var root = workDirectory;
        if (ownMountNamespace)
        {
            _scratch = Directory.CreateDirectory(Path.Combine(workDirectory, "scratch")).FullName;
            MountScratch(InitialBytes, remount: false);
            root = _scratch;
        }
        _merged = Path.Combine(root, "tmp");
        _upper = Path.Combine(root, "upper");
        _work = Path.Combine(root, "overlay-work");
        _empty = Path.Combine(workDirectory, "empty-layer");
        Directory.CreateDirectory(_merged);
    }

    public string GuestTmp => _merged;
    public bool Overlay => _ownMountNamespace;

    /// <summary>The bound /tmp has now, or 0 when it is unbounded (no mount namespace of its own).</summary>
    public long BoundBytes => _scratch is null ? 0 : _scratchBytes;

    /// <summary>
    /// Prepares /tmp for a function with the given layer (or none) and bound (0 keeps the current one); a clean
    /// /tmp without a layer and with the same bound costs nothing.
    /// </summary>
    public void Prepare(string? layer, long boundBytes = 0)
    {
        if (_dirty)
            Clear();
        _dirty = true;
        if (_scratch is not null && boundBytes > 0 && boundBytes != _scratchBytes)
            MountScratch(boundBytes, remount: true);
        if (layer is null)
            return;
        if (!Directory.Exists(layer))
            throw new DirectoryNotFoundException($"The function's file layer {layer} does not exist.");
        if (!_ownMountNamespace)
        {
            CopyTree(layer, _merged);
            return;
        }
        Directory.CreateDirectory(_upper);
        Directory.CreateDirectory(_work);
        Directory.CreateDirectory(_empty);
        var options = $"lowerdir={layer ?? _empty},upperdir={_upper},workdir={_work}";
        if (Mount("overlay", _merged, "overlay", 0, options) != 0)
            throw new IOException($"Mounting the overlay on {_merged} failed: errno {Marshal.GetLastPInvokeError()}.");
        _mounted = true;
    }

    /// <summary>
    /// What the guest changed in /tmp as a <see cref="TrEnv.Sandbox.FileDelta"/> archive: the overlay's upper directory,
    /// or without an overlay /tmp compared with the layer it started from. Null past <paramref name="maxBytes"/>.
    /// </summary>
    public byte[]? CaptureChanges(string? layer, long maxBytes, out long size)
        => _mounted ? TrEnv.Sandbox.FileDelta.FromUpper(_upper, maxBytes, out size) : TrEnv.Sandbox.FileDelta.FromComparison(_merged, layer, maxBytes, out size);

    /// <summary>Applies a session's archive over the /tmp just prepared for it (through the overlay, which records it again).</summary>
    public void RestoreChanges(ReadOnlySpan<byte> archive) => TrEnv.Sandbox.FileDelta.Restore(archive, _merged);

    // The inode count scales with the size, so a guest cannot pin kernel memory with millions of empty files.
    private void MountScratch(long bytes, bool remount)
    {
        var inodes = Math.Clamp(bytes / 4096, 1024, 1 << 20);
        var options = string.Create(CultureInfo.InvariantCulture, $"size={bytes},nr_inodes={inodes},mode=0700");
        if (Mount("tmpfs", _scratch!, "tmpfs", MsNoSuid | MsNoDev | (remount ? MsRemount : 0), options) != 0)
            throw new IOException($"{(remount ? "Resizing" : "Mounting")} the guest's /tmp tmpfs ({bytes >> 20} MiB) on {_scratch} failed: errno {Marshal.GetLastPInvokeError()}.");
        _scratchBytes = bytes;
    }

    /// <summary>Unmounts the overlay and purges everything the guest wrote.</summary>
    public void Clear()
    {
        if (_mounted)
        {
            const int MNT_DETACH = 2;
            if (Umount2(_merged, MNT_DETACH) != 0)
                throw new IOException($"Unmounting the overlay on {_merged} failed: errno {Marshal.GetLastPInvokeError()}.");
            _mounted = false;
        }
        // A guest that wrote nothing leaves an empty /tmp: nothing to purge (the common template start).
        if (Directory.Exists(_upper) || Directory.Exists(_work) || !Directory.Exists(_merged) || Directory.EnumerateFileSystemEntries(_merged).Any())
        {
            foreach (var dir in new[] { _merged, _upper, _work })
            {
                if (Directory.Exists(dir))
                    Directory.Delete(dir, recursive: true);
            }
            Directory.CreateDirectory(_merged);
        }
        _dirty = false;
    }

    private static void CopyTree(string from, string to)
    {
        foreach (var dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)), overwrite: true);
    }

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mount(string source, string target, string fstype, ulong flags, string data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2(string target, int flags);
}
