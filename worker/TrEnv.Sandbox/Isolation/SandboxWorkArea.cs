using System.Runtime.InteropServices;

namespace TrEnv.Sandbox.Isolation;

/// <summary>
/// The directory that holds every sandbox's work directory and the upper layer of its root overlay.
/// overlayfs refuses an upper directory that itself sits on overlayfs, which is what a container's own root
/// filesystem is; there a tmpfs is mounted over the directory first (its pages are charged to the sandbox
/// that writes them, so its memory limit bounds them too).
/// </summary>
public static partial class SandboxWorkArea
{
    /// <summary>
    /// Empties <paramref name="directory"/> (a predecessor killed with -9 leaves its sandboxes' directories
    /// behind) and makes it usable for overlay upper layers. Returns what it had to do or could not do, or
    /// null when the directory was fit as it is.
    /// </summary>
    public static string? Prepare(string directory)
    {
        var full = Directory.CreateDirectory(directory).FullName;
        foreach (var entry in Directory.EnumerateFileSystemEntries(full))
        {
            if (Directory.Exists(entry))
                Directory.Delete(entry, recursive: true);
            else
                File.Delete(entry);
        }
        var type = FileSystemOf(full);
        if (type != "overlay")
            return null;
        if (Mount("tmpfs", full, "tmpfs", MsNoSuid | MsNoDev, "mode=0700") == 0)
            return $"{full} is on overlayfs (a container's own root), where overlay upper layers are refused; a tmpfs is mounted there for the sandboxes' private layers";
        var errno = Marshal.GetLastPInvokeError();
        return $"{full} is on overlayfs (a container's own root), where overlay upper layers are refused, and mounting a tmpfs there failed with errno {errno}; " +
               "give it a volume or a tmpfs of its own";
    }

    /// <summary>The file system type of the mount that holds <paramref name="path"/>, from /proc/self/mountinfo.</summary>
    public static string? FileSystemOf(string path)
    {
        var full = Path.GetFullPath(path);
        string? best = null;
        var bestLength = -1;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            var fields = line.Split(' ');
            var dash = Array.IndexOf(fields, "-");
            if (fields.Length < 5 || dash < 0 || dash + 1 >= fields.Length)
                continue;
            var mountPoint = fields[4].Replace("\\040", " ", StringComparison.Ordinal);
            var covers = mountPoint == "/" || full == mountPoint || full.StartsWith(mountPoint + "/", StringComparison.Ordinal);
            // The last of equal mount points is the one on top.
            if (covers && mountPoint.Length >= bestLength)
            {
                best = fields[dash + 1];
                bestLength = mountPoint.Length;
            }
        }
        return best;
    }

    private const ulong MsNoSuid = 2, MsNoDev = 4;

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mount(string source, string target, string fstype, ulong flags, string data);
}
