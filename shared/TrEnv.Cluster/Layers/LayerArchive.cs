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

    /// <summary>Longest name of one path component a Linux filesystem takes (NAME_MAX, in bytes).</summary>
    public const int MaxComponentBytes = 255;

    /// <summary>Longest relative path in a layer, in bytes: the node's own prefix must still fit in PATH_MAX (4096).</summary>
    public const int MaxPathBytes = 3072;

    /// <summary>Most entries a layer may hold (each is an inode on every node that unpacks it).</summary>
    public const int MaxEntries = 100_000;

    /// <summary>
    /// Decompresses a gzipped upload and checks every entry by simulating the unpacking: only regular files and
    /// directories, relative paths that stay inside the layer, names a filesystem takes, no path that is a file
    /// for one entry and a directory for another, at most <paramref name="maxBytes"/> unpacked and
    /// <see cref="MaxEntries"/> entries. A layer that passes unpacks. Throws <see cref="InvalidDataException"/>
    /// naming the first problem.
    /// </summary>
    public static Summary Check(byte[] upload, long maxBytes)
    {
        if (upload.Length > 2 && upload[0] == 0x1f && upload[1] == 0x8b)
        {
            // Checked as it streams out of gzip, keeping nothing: a bomb is refused at its first oversized
            // header or past the bound, never buffered. Only an accepted layer is decompressed into memory.
            using var counted = new CountingStream(new GZipStream(new MemoryStream(upload, writable: false), CompressionMode.Decompress));
            var scanned = Scan(counted, maxBytes, []);
            return scanned with { Tar = Gunzip(upload, maxBytes, counted.Consumed) };
        }
        return Scan(new MemoryStream(upload, writable: false), maxBytes, upload);
    }

    // Checks every entry of a tar stream; the summary carries `tar` as the layer's bytes.
    private static Summary Scan(Stream stream, long maxBytes, byte[] tar)
    {
        int files = 0, directories = 0;
        long bytes = 0;
        var kinds = new Dictionary<string, bool>(StringComparer.Ordinal); // path -> is a directory
        try
        {
            using var reader = new TarReader(stream);
            while (reader.GetNextEntry() is { } entry)
            {
                var name = RelativeName(entry.Name);
                if (files + directories >= MaxEntries)
                    throw Refused($"The layer has more than {MaxEntries} entries.");
                var directory = entry.EntryType == TarEntryType.Directory;
                if (directory || entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile)
                    Place(kinds, entry.Name, name, directory);
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
                        throw Refused($"Entry \"{Shorten(entry.Name)}\" is a {entry.EntryType}; a layer holds only regular files and directories.");
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

    // Records where an entry lands as unpacking would: its parents become directories, and a path that is
    // already the other kind is a conflict no filesystem can hold.
    private static void Place(Dictionary<string, bool> kinds, string entryName, string name, bool directory)
    {
        if (name.Length == 0)
            return;
        if (System.Text.Encoding.UTF8.GetByteCount(name) > MaxPathBytes)
            throw Refused($"Entry \"{Shorten(entryName)}\" has a path longer than {MaxPathBytes} bytes.");
        var parts = name.Split('/');
        foreach (var part in parts)
        {
            if (System.Text.Encoding.UTF8.GetByteCount(part) > MaxComponentBytes)
                throw Refused($"Entry \"{Shorten(entryName)}\" has a name component longer than {MaxComponentBytes} bytes, which no Linux filesystem takes.");
        }
        for (var i = 1; i < parts.Length; i++)
        {
            var parent = string.Join('/', parts[..i]);
            if (kinds.TryGetValue(parent, out var isDirectory) && !isDirectory)
                throw Refused($"Entry \"{Shorten(entryName)}\" needs \"{Shorten(parent)}\" to be a directory, but an earlier entry made it a file.");
            kinds[parent] = true;
        }
        if (kinds.TryGetValue(name, out var existing) && existing != directory)
            throw Refused(directory
                ? $"Entry \"{Shorten(entryName)}\" is a directory, but an earlier entry made \"{Shorten(name)}\" a file."
                : $"Entry \"{Shorten(entryName)}\" is a file, but \"{Shorten(name)}\" is already a directory.");
        kinds[name] = directory;
    }

    // Echoed names stay readable: at most 200 characters, control characters escaped.
    private static string Shorten(string name)
    {
        var text = name.Length > 200 ? name[..200] + "…" : name;
        return string.Concat(text.Select(c => char.IsControl(c) ? $"\\x{(int)c:x2}" : c.ToString()));
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
                    try
                    {
                        if (entry.EntryType == TarEntryType.Directory)
                        {
                            Directory.CreateDirectory(target);
                            continue;
                        }
                        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                        using var file = File.Create(target);
                        entry.DataStream?.CopyTo(file);
                    }
                    catch (IOException e)
                    {
                        // Named by the layer's own path: the node's directories are not the caller's business.
                        throw new IOException($"The layer's entry \"{Shorten(name)}\" could not be unpacked on this node ({e.GetType().Name}).", e);
                    }
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
            throw Refused($"Entry \"{Shorten(name)}\" points outside the layer; use relative paths without \"..\".");
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

    private static byte[] Gunzip(byte[] gz, long maxBytes, long expected)
    {
        try
        {
            using var input = new GZipStream(new MemoryStream(gz, writable: false), CompressionMode.Decompress);
            // Sized once from the scan (the end-of-archive blocks come after what the reader consumed).
            using var output = new MemoryStream((int)Math.Min(expected + 2048, int.MaxValue / 2));
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

    // Counts what the tar reader takes from the decompressor.
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Consumed { get; private set; }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => Consumed; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            try
            {
                return Count(inner.Read(buffer));
            }
            catch (InvalidDataException e) when (!e.Data.Contains(Marker))
            {
                throw Refused($"The layer is not valid gzip: {e.Message}", e);
            }
        }

        private int Count(int n)
        {
            Consumed += n;
            return n;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
