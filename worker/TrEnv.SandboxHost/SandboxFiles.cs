using System.Runtime.InteropServices;

namespace TrEnv.SandboxHost;

/// <summary>
/// The guest's /tmp. With its own mount namespace the host mounts an overlay there: the function's file
/// layer read-only below, a private upper directory above that receives every write and is purged on
/// reset, so a repurposed sandbox keeps nothing of the previous function. Without one (plain process) it
/// is a plain directory, emptied on reset, and a layer is copied in.
/// </summary>
internal sealed partial class SandboxFiles(string workDirectory, bool ownMountNamespace)
{
    private readonly string _merged = Path.Combine(workDirectory, "tmp");
    private readonly string _upper = Path.Combine(workDirectory, "upper");
    private readonly string _work = Path.Combine(workDirectory, "overlay-work");
    private readonly string _empty = Path.Combine(workDirectory, "empty-layer");
    private bool _mounted;
    private bool _dirty = true;

    public string GuestTmp => _merged;
    public bool Overlay => ownMountNamespace;

    /// <summary>Prepares /tmp for a function with the given layer (or none); a clean /tmp without a layer costs nothing.</summary>
    public void Prepare(string? layer)
    {
        if (_dirty)
            Clear();
        _dirty = true;
        if (layer is null)
            return;
        if (!Directory.Exists(layer))
            throw new DirectoryNotFoundException($"The function's file layer {layer} does not exist.");
        if (!ownMountNamespace)
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
