using System.Formats.Tar;
using System.IO.Compression;

namespace TrEnv.Cluster.Layers;

/// <summary>
/// A function's file layer: a tar archive (optionally gzipped on upload) of plain files and directories
/// that the guest reads under its /tmp. Checked once at upload, stored as a plain tar under its SHA-256,
/// unpacked once per worker.
/// </summary>
public static class LayerArchive
{
    /// <summary>What an accepted layer holds.</summary>
    public sealed record Summary(byte[] Tar, int Files, int Directories, long UnpackedBytes);

    /// <summary>
    /// Decompresses a gzipped upload and checks every entry: only regular files and directories, relative
    /// paths that stay inside the layer, at most <paramref name="maxBytes"/> unpacked. Throws
    /// <see cref="InvalidDataException"/> naming the first problem.
    /// </summary>
    public static Summary Check(byte[] upload, long maxBytes)
    {
        var tar = upload.Length > 2 && upload[0] == 0x1f && upload[1] == 0x8b ? Gunzip(upload, maxBytes) : upload;
        int files = 0, directories = 0;
        long bytes = 0;
        try
        {
            using var reader = new TarReader(new MemoryStream(tar, writable: false));
            while (reader.GetNextEntry() is { } entry)
            {
                var name = RelativeName(entry.Name);
                switch (entry.EntryType)
                {
                    case TarEntryType.Directory:
                        directories++;
                        break;
                    case TarEntryType.RegularFile or TarEntryType.V7RegularFile:
                        if (name.Length == 0)
                            throw Refused("A file entry has an empty name.");
                        files++;
                        bytes += entry.Length;
                        if (bytes > maxBytes)
                            throw Refused($"The layer unpacks to more than {maxBytes >> 20} MiB.");
                        break;
                    default:
                        throw Refused($"Entry \"{entry.Name}\" is a {entry.EntryType}; a layer holds only regular files and directories.");
                }
            }
        }
        catch (Exception e) when (e is FormatException or EndOfStreamException or ArgumentException || (e is InvalidDataException && !e.Data.Contains(Marker)))
        {
            throw Refused($"The layer is not a valid tar archive: {e.Message}", e);
        }
        if (files == 0 && directories == 0)
            throw Refused("The layer is empty or not a tar archive.");
        return new Summary(tar, files, directories, bytes);
    }

    /// <summary>Whether a checked layer holds a regular file at <paramref name="path"/> (relative to its top).</summary>
    public static bool Contains(byte[] tar, string path)
    {
        using var reader = new TarReader(new MemoryStream(tar, writable: false));
        while (reader.GetNextEntry() is { } entry)
        {
            if (entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile && RelativeName(entry.Name) == path)
                return true;
        }
        return false;
    }

    /// <summary>Unpacks a checked layer into <paramref name="directory"/> atomically: a half-unpacked layer is never visible.</summary>
    public static void Unpack(byte[] tar, string directory)
    {
        if (Directory.Exists(directory))
            return;
        var parent = Path.GetDirectoryName(Path.GetFullPath(directory))!;
        var temp = Path.Combine(parent, $".unpack-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            using (var reader = new TarReader(new MemoryStream(tar, writable: false)))
            {
                while (reader.GetNextEntry() is { } entry)
                {
                    var name = RelativeName(entry.Name);
                    var target = Path.Combine(temp, name);
                    if (entry.EntryType == TarEntryType.Directory)
                    {
                        Directory.CreateDirectory(target);
                        continue;
                    }
                    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                    using var file = File.Create(target);
                    entry.DataStream?.CopyTo(file);
                }
            }
            try
            {
                Directory.Move(temp, directory);
            }
            catch (IOException) when (Directory.Exists(directory))
            {
                // Another invocation unpacked the same layer first: the content is the same.
            }
        }
        finally
        {
            if (Directory.Exists(temp))
                Directory.Delete(temp, recursive: true);
        }
    }

    // "./a/b" and "a/b/" are "a/b"; absolute names and ".." never leave the layer.
    private static string RelativeName(string name)
    {
        var parts = name.Replace('\\', '/').Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToList();
        if (name.StartsWith('/') || parts.Any(p => p == ".."))
            throw Refused($"Entry \"{name}\" points outside the layer; use relative paths without \"..\".");
        return string.Join('/', parts);
    }

    // A problem this class found and named, as opposed to one the tar or gzip reader threw.
    private const string Marker = "trenv.layer";

    private static InvalidDataException Refused(string message, Exception? inner = null)
    {
        var e = new InvalidDataException(message, inner);
        e.Data[Marker] = true;
        return e;
    }

    private static byte[] Gunzip(byte[] gz, long maxBytes)
    {
        try
        {
            using var input = new GZipStream(new MemoryStream(gz, writable: false), CompressionMode.Decompress);
            using var output = new MemoryStream();
            var buffer = new byte[81920];
            int read;
            while ((read = input.Read(buffer)) > 0)
            {
                // The tar's headers and padding come on top of its files: allow a little over the bound.
                if (output.Length + read > maxBytes + (maxBytes / 8) + (1 << 20))
                    throw Refused($"The layer unpacks to more than {maxBytes >> 20} MiB.");
                output.Write(buffer, 0, read);
            }
            return output.ToArray();
        }
        catch (InvalidDataException e) when (!e.Data.Contains(Marker))
        {
            throw Refused($"The layer is not valid gzip: {e.Message}", e);
        }
    }
}
