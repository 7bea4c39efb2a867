using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Runtime.Versioning;
using Tmds.Linux;

namespace TrEnv.Sandbox;

/// <summary>
/// What a session changed in its /tmp, as one archive stored beside its memory delta: directories, files (bytes,
/// mode, modification time) and symbolic links it created or changed, and paths of its function's layer it
/// deleted. Taken from the overlay's upper directory (whiteouts are deletions, an opaque directory replaces the
/// layer's) or, without an overlay, by comparing /tmp with the layer. Restored through the new sandbox's /tmp,
/// so the overlay records the same changes again. Other file types (fifos, sockets, devices) are not kept.
/// </summary>
[SupportedOSPlatform("linux")]
public static partial class FileDelta
{
    private const uint IfMt = 0xF000, IfReg = 0x8000, IfDir = 0x4000, IfLnk = 0xA000, IfChr = 0x2000;
    private const uint Magic = 0x44465254; // "TRFD"
    private const byte End = 0, Dir = 1, File = 2, Symlink = 3, Deleted = 4, OpaqueDir = 5;

    /// <summary>The archive of an empty change set.</summary>
    public static bool IsEmpty(ReadOnlySpan<byte> archive) => archive.Length <= 5;

    /// <summary>The overlay's upper directory as an archive; null when it grew past <paramref name="maxBytes"/> (its size so far in <paramref name="size"/>).</summary>
    public static byte[]? FromUpper(string upper, long maxBytes, out long size)
    {
        using var w = new Writer(maxBytes);
        if (Directory.Exists(upper))
            WalkUpper(upper, "", w);
        return w.Finish(out size);
    }

    /// <summary>Without an overlay: what /tmp (<paramref name="tmp"/>) holds that its layer (<paramref name="layer"/>, or none) does not, and what it lost.</summary>
    public static byte[]? FromComparison(string tmp, string? layer, long maxBytes, out long size)
    {
        using var w = new Writer(maxBytes);
        WalkCompared(tmp, layer is not null && Directory.Exists(layer) ? layer : null, "", w);
        return w.Finish(out size);
    }

    public static string Sha256(ReadOnlySpan<byte> archive) => Convert.ToHexStringLower(SHA256.HashData(archive));

    /// <summary>Applies an archive to <paramref name="tmp"/> (the new sandbox's /tmp, its layer already in place).</summary>
    public static void Restore(ReadOnlySpan<byte> archive, string tmp)
    {
        var r = new Reader(archive);
        if (r.U32() != Magic)
            throw new InvalidDataException("The session's file archive has no TRFD header.");
        var fullTmp = Path.GetFullPath(tmp);
        while (true)
        {
            var kind = r.U8();
            if (kind == End)
                return;
            var relative = r.Str();
            var path = Path.GetFullPath(Path.Combine(fullTmp, relative));
            if (relative.Length == 0 || !path.StartsWith(fullTmp + "/", StringComparison.Ordinal))
                throw new InvalidDataException($"The session's file archive names a path outside /tmp: \"{relative}\".");
            switch (kind)
            {
                case Deleted:
                    Remove(path);
                    break;
                case Dir or OpaqueDir:
                {
                    var mode = (UnixFileMode)r.U32();
                    if (kind == OpaqueDir || Kind(path, out _) != IfDir)
                        Remove(path);
                    Directory.CreateDirectory(path);
                    System.IO.File.SetUnixFileMode(path, mode);
                    break;
                }
                case File:
                {
                    var mode = (UnixFileMode)r.U32();
                    var modified = r.I64();
                    var bytes = r.Bytes();
                    Remove(path);
                    System.IO.File.WriteAllBytes(path, bytes);
                    System.IO.File.SetUnixFileMode(path, mode);
                    System.IO.File.SetLastWriteTimeUtc(path, DateTime.UnixEpoch.AddTicks(modified));
                    break;
                }
                case Symlink:
                    var target = r.Str();
                    Remove(path);
                    System.IO.File.CreateSymbolicLink(path, target);
                    break;
                default:
                    throw new InvalidDataException($"The session's file archive has an entry of unknown kind {kind}.");
            }
        }
    }

    private static void Remove(string path)
    {
        var kind = Kind(path, out _);
        if (kind == IfDir)
            Directory.Delete(path, recursive: true);
        else if (kind != 0)
            System.IO.File.Delete(path);
    }

    private static void WalkUpper(string dir, string prefix, Writer w)
    {
        foreach (var path in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
        {
            var name = prefix + Path.GetFileName(path);
            var kind = Kind(path, out var rdev);
            switch (kind)
            {
                case IfChr when rdev == 0:
                    w.Entry(Deleted, name);
                    break;
                case IfDir:
                    w.Entry(Opaque(path) ? OpaqueDir : Dir, name);
                    w.U32((uint)System.IO.File.GetUnixFileMode(path));
                    WalkUpper(path, name + "/", w);
                    break;
                case IfReg:
                    w.File(name, path);
                    break;
                case IfLnk:
                    w.Entry(Symlink, name);
                    w.Str(new FileInfo(path).LinkTarget ?? "");
                    break;
            }
        }
    }

    private static void WalkCompared(string dir, string? layerDir, string prefix, Writer w)
    {
        foreach (var path in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
        {
            var name = prefix + Path.GetFileName(path);
            var inLayer = layerDir is null ? null : Path.Combine(layerDir, Path.GetFileName(path));
            var layerKind = inLayer is null ? 0u : Kind(inLayer, out _);
            switch (Kind(path, out _))
            {
                case IfDir:
                    if (layerKind != IfDir || System.IO.File.GetUnixFileMode(path) != System.IO.File.GetUnixFileMode(inLayer!))
                    {
                        w.Entry(layerKind is 0 or IfDir ? Dir : OpaqueDir, name);
                        w.U32((uint)System.IO.File.GetUnixFileMode(path));
                    }
                    WalkCompared(path, layerKind == IfDir ? inLayer : null, name + "/", w);
                    break;
                case IfReg:
                    if (layerKind != IfReg || !SameFile(path, inLayer!))
                        w.File(name, path);
                    break;
                case IfLnk:
                    var target = new FileInfo(path).LinkTarget ?? "";
                    if (layerKind != IfLnk || new FileInfo(inLayer!).LinkTarget != target)
                    {
                        w.Entry(Symlink, name);
                        w.Str(target);
                    }
                    break;
            }
        }
        if (layerDir is null)
            return;
        foreach (var path in Directory.EnumerateFileSystemEntries(layerDir).Order(StringComparer.Ordinal))
        {
            if (Kind(Path.Combine(dir, Path.GetFileName(path)), out _) == 0)
                w.Entry(Deleted, prefix + Path.GetFileName(path));
        }
    }

    private static bool SameFile(string a, string b)
    {
        var fa = new FileInfo(a);
        var fb = new FileInfo(b);
        if (fa.Length != fb.Length || System.IO.File.GetUnixFileMode(a) != System.IO.File.GetUnixFileMode(b))
            return false;
        return System.IO.File.ReadAllBytes(a).AsSpan().SequenceEqual(System.IO.File.ReadAllBytes(b));
    }

    // The file type bits of lstat (0 when nothing is there), and the device number.
    private static unsafe uint Kind(string path, out ulong rdev)
    {
        stat st;
        rdev = 0;
        var bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            if (LibC.lstat(p, &st) != 0)
            {
                var errno = LibC.errno;
                return errno is 2 or 20 ? 0u : throw new IOException($"lstat {path} failed: errno {errno}"); // ENOENT, ENOTDIR
            }
        }
        rdev = (ulong)st.st_rdev;
        return (uint)st.st_mode & IfMt;
    }

    // An overlay marks a directory that replaces the lower one's contents with an "opaque" extended attribute
    // (trusted.* when mounted by real root, user.* under userxattr).
    private static unsafe bool Opaque(string path)
    {
        Span<byte> value = stackalloc byte[4];
        foreach (var name in (ReadOnlySpan<string>)["trusted.overlay.opaque", "user.overlay.opaque"])
        {
            fixed (byte* v = value)
            {
                if (LGetXattr(path, name, v, (nuint)value.Length) is 1 && value[0] == (byte)'y')
                    return true;
            }
        }
        return false;
    }

    [LibraryImport("libc", EntryPoint = "lgetxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static unsafe partial nint LGetXattr(string path, string name, byte* value, nuint size);

    // Writes entries until the archive would pass its bound, then only counts what it would hold.
    private sealed class Writer : IDisposable
    {
        private readonly MemoryStream _out = new();
        private readonly long _maxBytes;
        private long _size;

        public Writer(long maxBytes)
        {
            _maxBytes = maxBytes;
            U32(Magic);
        }

        private bool Over => _size > _maxBytes;

        public void Entry(byte kind, string name)
        {
            U8(kind);
            Str(name);
        }

        public void File(string name, string path)
        {
            var length = new FileInfo(path).Length;
            Entry(FileDelta.File, name);
            U32((uint)System.IO.File.GetUnixFileMode(path));
            I64((System.IO.File.GetLastWriteTimeUtc(path) - DateTime.UnixEpoch).Ticks);
            I64(length);
            _size += length;
            if (Over)
                return;
            using var source = System.IO.File.OpenRead(path);
            source.CopyTo(_out);
            if (_out.Length != _size)
                throw new IOException($"{path} changed size while it was archived.");
        }

        public void U8(byte v)
        {
            Span<byte> b = [v];
            Write(b);
        }

        public void U32(uint v)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(b, v);
            Write(b);
        }

        public void I64(long v)
        {
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(b, v);
            Write(b);
        }

        public void Str(string s)
        {
            var bytes = Encoding.UTF8.GetBytes(s);
            U32((uint)bytes.Length);
            Write(bytes);
        }

        private void Write(ReadOnlySpan<byte> bytes)
        {
            _size += bytes.Length;
            if (!Over)
                _out.Write(bytes);
        }

        public byte[]? Finish(out long size)
        {
            U8(End);
            size = _size;
            return Over ? null : _out.ToArray();
        }

        public void Dispose() => _out.Dispose();
    }

    private ref struct Reader(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _data = data;

        public byte U8()
        {
            var v = Take(1)[0];
            return v;
        }

        public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

        public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

        public string Str() => Encoding.UTF8.GetString(Take(checked((int)U32())));

        public ReadOnlySpan<byte> Bytes() => Take(checked((int)I64()));

        private ReadOnlySpan<byte> Take(int n)
        {
            if (n < 0 || n > _data.Length)
                throw new InvalidDataException("The session's file archive is truncated.");
            var v = _data[..n];
            _data = _data[n..];
            return v;
        }
    }
}
