using System.Formats.Tar;

namespace TrEnv.Cli;

/// <summary>
/// A directory as a layer archive, byte for byte the same for the same files: entries in ordinal path order,
/// times at the epoch, owner root, permissions kept. So pushing a directory again gives the same hash, and a
/// manifest deploy that names it changes nothing.
/// </summary>
public static class LayerTar
{
    /// <summary>Writes <paramref name="directory"/>'s files and directories; throws <see cref="InvalidDataException"/> for anything else.</summary>
    public static void Write(string directory, Stream to)
    {
        var root = Path.GetFullPath(directory);
        using var tar = new TarWriter(to, TarEntryFormat.Gnu, leaveOpen: true);
        foreach (var path in Walk(root))
        {
            var relative = Path.GetRelativePath(root, path).Replace(Path.DirectorySeparatorChar, '/');
            var info = new FileInfo(path);
            if (info.LinkTarget is not null)
                throw new InvalidDataException($"{path} is a symbolic link; a layer holds only regular files and directories.");
            var isDirectory = info.Attributes.HasFlag(FileAttributes.Directory);
            if (!isDirectory && !IsRegular(path))
                throw new InvalidDataException($"{path} is not a regular file; a layer holds only regular files and directories.");
            var entry = new GnuTarEntry(isDirectory ? TarEntryType.Directory : TarEntryType.RegularFile, isDirectory ? relative + "/" : relative)
            {
                Mode = OperatingSystem.IsWindows() ? (isDirectory ? (UnixFileMode)0x1ED : (UnixFileMode)0x1A4) : File.GetUnixFileMode(path) & (UnixFileMode)0x1FF,
                ModificationTime = DateTimeOffset.UnixEpoch,
                AccessTime = DateTimeOffset.UnixEpoch,
                ChangeTime = DateTimeOffset.UnixEpoch,
                Uid = 0,
                Gid = 0,
                UserName = "",
                GroupName = "",
            };
            using var data = isDirectory ? null : File.OpenRead(path);
            if (data is not null)
                entry.DataStream = data;
            tar.WriteEntry(entry);
        }
    }

    // Depth first, each directory's entries in ordinal order, the directory before what it holds.
    private static IEnumerable<string> Walk(string directory)
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory).Order(StringComparer.Ordinal))
        {
            yield return entry;
            if (Directory.Exists(entry) && new DirectoryInfo(entry).LinkTarget is null)
            {
                foreach (var inner in Walk(entry))
                    yield return inner;
            }
        }
    }

    private static unsafe bool IsRegular(string path)
    {
        const uint typeMask = 0xF000, regular = 0x8000;
        Tmds.Linux.stat st;
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            if (Tmds.Linux.LibC.lstat(p, &st) != 0)
                throw new IOException($"lstat {path} failed: errno {Tmds.Linux.LibC.errno}.");
        }
        return ((uint)st.st_mode & typeMask) == regular;
    }
}
