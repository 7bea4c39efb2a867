using System.Runtime.InteropServices;

namespace TrEnv.SandboxHost;

/// <summary>
/// Moves the host into its own root filesystem before any guest code or engine library is loaded: an
/// overlay of the worker's read-only base (the host's libraries) under a private upper directory, plus
/// bind mounts of exactly the paths the protocol names (its work directory, module cache, templates,
/// pool, layers) at their own paths, a fresh /proc and four device nodes. After <c>pivot_root</c> the
/// old root is detached, so nothing else of the node's filesystem is reachable from this process.
/// </summary>
internal static partial class SandboxRoot
{
    private const ulong MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_REMOUNT = 32, MS_BIND = 4096;
    private const int MNT_DETACH = 2;
    private const long SYS_pivot_root = 155; // x86_64

    private static readonly string[] Devices = ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];

    /// <summary>The directory beside the work directory that holds the root's upper layer; never visible inside.</summary>
    public static string StateOf(string workDirectory) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(workDirectory)) + ".root";

    public static void Enter(string workDirectory, string baseDirectory, IReadOnlyList<string> readWrite, IReadOnlyList<string> readOnly)
    {
        if (!RuntimeInformation.ProcessArchitecture.Equals(Architecture.X64))
            throw new PlatformNotSupportedException("pivot_root is wired for x86_64 only.");
        var state = StateOf(workDirectory);
        var upper = Directory.CreateDirectory(Path.Combine(state, "upper")).FullName;
        var work = Directory.CreateDirectory(Path.Combine(state, "work")).FullName;
        var root = Directory.CreateDirectory(Path.Combine(state, "merged")).FullName;
        Check(Mount("overlay", root, "overlay", MS_NOSUID | MS_NODEV, $"lowerdir={Path.GetFullPath(baseDirectory)},upperdir={upper},workdir={work}"), "mount the root overlay");

        foreach (var path in readWrite.Prepend(Path.GetFullPath(workDirectory)))
            Bind(root, path, readOnly: false, MS_NOSUID | MS_NODEV);
        foreach (var path in readOnly)
            Bind(root, path, readOnly: true, MS_NOSUID | MS_NODEV);
        foreach (var device in Devices)
            Bind(root, device, readOnly: false, MS_NOSUID | MS_NOEXEC);
        var proc = Directory.CreateDirectory(root + "/proc").FullName;
        Check(Mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, null), "mount /proc");

        // pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it.
        Check(Chdir(root), "enter the new root");
        Check((int)Syscall(SYS_pivot_root, ".", "."), "pivot_root");
        Check(Umount2(".", MNT_DETACH), "detach the old root");
        Check(Chdir("/"), "chdir /");
    }

    private static void Bind(string root, string path, bool readOnly, ulong flags)
    {
        var target = root + Path.GetFullPath(path);
        if (Directory.Exists(path))
        {
            Directory.CreateDirectory(target);
        }
        else if (File.Exists(path))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            if (!File.Exists(target))
                File.WriteAllBytes(target, []);
        }
        else
        {
            throw new IOException($"The sandbox root needs {path}, which does not exist.");
        }
        Check(Mount(path, target, null, MS_BIND, null), $"bind {path}");
        // Bind mounts take their flags only on a remount; that is also where read-only applies.
        Check(Mount(null, target, null, MS_BIND | MS_REMOUNT | flags | (readOnly ? MS_RDONLY : 0), null), $"restrict {path}");
    }

    private static void Check(int result, string what)
    {
        if (result != 0)
            throw new IOException($"Entering the sandbox root failed: could not {what}: errno {Marshal.GetLastPInvokeError()}.");
    }

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mount(string? source, string target, string? fstype, ulong flags, string? data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "chdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Chdir(string path);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial long Syscall(long number, string newRoot, string putOld);
}
