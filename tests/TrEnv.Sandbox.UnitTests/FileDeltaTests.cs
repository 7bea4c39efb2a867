using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using TrEnv.Sandbox;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace TrEnv.Tests;

public sealed partial class FileDeltaTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("trenv-files-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Dir(string name) => Directory.CreateDirectory(Path.Combine(_dir, name)).FullName;

    private static void Write(string root, string relative, string text)
    {
        var path = Path.Combine(root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    private string Layer()
    {
        var layer = Dir("layer");
        Write(layer, "main.py", "def handle(r): return r");
        Write(layer, "data/table.csv", "a,b\n1,2\n");
        Write(layer, "data/old/notes.txt", "old notes");
        Write(layer, "gone.txt", "deleted by the session");
        return layer;
    }

    private static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var d in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, d)));
        foreach (var f in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var copy = Path.Combine(to, Path.GetRelativePath(from, f));
            File.Copy(f, copy);
            File.SetLastWriteTimeUtc(copy, File.GetLastWriteTimeUtc(f));
        }
    }

    // Every entry below root: path, kind, mode and bytes (or link target).
    private static List<string> Snapshot(string root)
        => [.. Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(p =>
        {
            var rel = Path.GetRelativePath(root, p);
            if (new FileInfo(p).LinkTarget is { } target)
                return $"{rel} -> {target}";
            if (Directory.Exists(p))
                return $"{rel}/ {File.GetUnixFileMode(p)}";
            return $"{rel} {File.GetUnixFileMode(p)} {File.GetLastWriteTimeUtc(p).Ticks} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(p)))}";
        })];

    [Fact]
    public void Without_an_overlay_the_changes_against_the_layer_travel_and_restore_byte_exact()
    {
        var layer = Layer();
        var tmp = Path.Combine(_dir, "tmp");
        CopyTree(layer, tmp);
        var big = new byte[300_000];
        Random.Shared.NextBytes(big);
        File.WriteAllBytes(Path.Combine(tmp, "model.bin"), big);
        Write(tmp, "data/table.csv", "a,b\n1,2\n3,4\n");
        Write(tmp, "results/run-1/out.json", "{\"ok\": true}");
        File.SetUnixFileMode(Path.Combine(tmp, "results/run-1/out.json"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.Delete(Path.Combine(tmp, "gone.txt"));
        Directory.Delete(Path.Combine(tmp, "data/old"), recursive: true);
        File.CreateSymbolicLink(Path.Combine(tmp, "latest"), "results/run-1/out.json");

        var archive = FileDelta.FromComparison(tmp, layer, 1 << 20, out var size)!;
        Assert.Equal(archive.Length, size);
        // What the layer already has is not stored again.
        Assert.InRange(archive.Length, big.Length, big.Length + 4096);

        var restored = Path.Combine(_dir, "restored");
        CopyTree(layer, restored);
        FileDelta.Restore(archive, restored);
        Assert.Equal(Snapshot(tmp), Snapshot(restored));
        Assert.True(FileDelta.IsEmpty(FileDelta.FromComparison(restored, restored, 1 << 20, out _)!));
    }

    [Fact]
    public void An_overlay_upper_directory_gives_files_whiteouts_and_opaque_directories()
    {
        var layer = Layer();
        var upper = Dir("upper");
        Write(upper, "notes/today.md", "# today");
        Write(upper, "data/table.csv", "changed");
        // What the overlay leaves for a deleted lower file (a 0:0 character device) and a replaced directory.
        Assert.Equal(0, MkNod(Path.Combine(upper, "gone.txt"), 0x2000 /* S_IFCHR */ | 0x180, 0));
        var replaced = Directory.CreateDirectory(Path.Combine(upper, "data", "old")).FullName;
        Assert.Equal(0, SetXattr(replaced, "trusted.overlay.opaque", "y"u8.ToArray(), 1, 0));
        Write(upper, "data/old/fresh.txt", "only this");

        var archive = FileDelta.FromUpper(upper, 1 << 20, out _)!;
        var restored = Path.Combine(_dir, "restored");
        CopyTree(layer, restored);
        FileDelta.Restore(archive, restored);

        Assert.False(File.Exists(Path.Combine(restored, "gone.txt")));
        Assert.Equal(["fresh.txt"], Directory.GetFileSystemEntries(Path.Combine(restored, "data", "old")).Select(Path.GetFileName));
        Assert.Equal("changed", File.ReadAllText(Path.Combine(restored, "data/table.csv")));
        Assert.Equal("# today", File.ReadAllText(Path.Combine(restored, "notes/today.md")));
        Assert.Equal("def handle(r): return r", File.ReadAllText(Path.Combine(restored, "main.py")));
    }

    [Fact]
    public void Past_its_bound_no_archive_is_made_and_the_size_is_told()
    {
        var tmp = Dir("tmp");
        File.WriteAllBytes(Path.Combine(tmp, "a"), new byte[600_000]);
        File.WriteAllBytes(Path.Combine(tmp, "b"), new byte[600_000]);
        Assert.Null(FileDelta.FromComparison(tmp, null, 1 << 20, out var size));
        Assert.InRange(size, 1_200_000, 1_201_000);
        Assert.NotNull(FileDelta.FromComparison(tmp, null, 2 << 20, out _));
    }

    [Fact]
    public void An_archive_that_names_a_path_outside_tmp_or_is_cut_short_is_refused()
    {
        var tmp = Dir("tmp");
        var evil = new List<byte>();
        evil.AddRange(BitConverter.GetBytes(0x44465254u));
        evil.Add(4); // deleted
        var name = Encoding.UTF8.GetBytes("../victim");
        evil.AddRange(BitConverter.GetBytes((uint)name.Length));
        evil.AddRange(name);
        evil.Add(0);
        File.WriteAllText(Path.Combine(_dir, "victim"), "safe");
        Assert.Throws<InvalidDataException>(() => FileDelta.Restore(evil.ToArray(), tmp));
        Assert.True(File.Exists(Path.Combine(_dir, "victim")));

        File.WriteAllText(Path.Combine(tmp, "x"), "1");
        var good = FileDelta.FromComparison(tmp, null, 1 << 20, out _)!;
        Assert.Throws<InvalidDataException>(() => FileDelta.Restore(good.AsSpan(0, good.Length - 3), Dir("other")));
        var wrongMagic = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(wrongMagic, 1);
        Assert.Throws<InvalidDataException>(() => FileDelta.Restore(wrongMagic, Dir("third")));
    }

    [LibraryImport("libc", EntryPoint = "mknod", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MkNod(string path, uint mode, ulong dev);

    [LibraryImport("libc", EntryPoint = "setxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int SetXattr(string path, string name, byte[] value, nuint size, int flags);
}
