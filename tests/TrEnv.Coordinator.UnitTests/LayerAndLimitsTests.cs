using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using TrEnv.Cluster.Layers;
using TrEnv.Contracts;
using TrEnv.Coordinator.Api;

namespace TrEnv.Tests;

public sealed class LayerAndLimitsTests
{
    private static byte[] Tar(params TarEntry[] entries)
    {
        using var buffer = new MemoryStream();
        using (var writer = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var e in entries)
                writer.WriteEntry(e);
        }
        return buffer.ToArray();
    }

    private static PaxTarEntry File(string name, string text)
        => new(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)) };

    [Fact]
    public void A_layer_of_files_and_directories_is_accepted_and_gzip_is_the_same_tar()
    {
        var tar = Tar(new PaxTarEntry(TarEntryType.Directory, "dir/"), File("./dir/a.txt", "a"), File("b.txt", "bb"));
        var summary = LayerArchive.Check(tar, 1 << 20);
        Assert.Equal((2, 1, 3L), (summary.Files, summary.Directories, summary.UnpackedBytes));
        using var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true))
            z.Write(tar);
        Assert.Equal(tar, LayerArchive.Check(gz.ToArray(), 1 << 20).Tar);
    }

    public static TheoryData<string, byte[]> BadLayers() => new()
    {
        { "SymbolicLink", Tar(new PaxTarEntry(TarEntryType.SymbolicLink, "l") { LinkName = "/etc/passwd" }) },
        { "HardLink", Tar(File("a", "x"), new PaxTarEntry(TarEntryType.HardLink, "b") { LinkName = "a" }) },
        { "CharacterDevice", Tar(new PaxTarEntry(TarEntryType.CharacterDevice, "null")) },
        { "outside the layer", Tar(File("../escape", "x")) },
        { "outside the layer", Tar(File("/etc/cron.d/x", "x")) },
        { "outside the layer", Tar(File("a/../../b", "x")) },
        { "more than", Tar(File("big", new string('x', 2 << 20))) },
        { "not valid gzip", [0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] },
        { "tar", Encoding.UTF8.GetBytes(new string('z', 1024)) },
        { "empty", new byte[1024] },
        { "is a directory, but an earlier entry made \"a\" a file", Tar(File("a", "x"), new PaxTarEntry(TarEntryType.Directory, "a/")) },
        { "is a file, but \"a\" is already a directory", Tar(new PaxTarEntry(TarEntryType.Directory, "a"), File("./a", "x")) },
        { "is a file, but \"a\" is already a directory", Tar(File("a/b", "x"), File("a", "y")) },
        { "needs \"a\" to be a directory", Tar(File("a", "x"), File("a/b", "y")) },
        { "longer than 255 bytes", Tar(File("d/" + new string('n', 256), "x")) },
        { "longer than 255 bytes", Tar(File(new string('é', 128), "x")) }, // 256 bytes in UTF-8
        { "path longer than 3072 bytes", Tar(File(string.Join('/', Enumerable.Repeat(new string('p', 250), 13)), "x")) },
    };

    [Fact]
    public void Every_layer_the_check_accepts_unpacks_and_holds_its_last_entry_per_path()
    {
        // Random tars over a few names that nest and collide: the check is a faithful simulation of the unpacking.
        string[] names = ["a", "a/", "./a", "a/b", "a/b/", "a/b/c", "b", "b/a", "c/", "c/a/b"];
        var random = new Random(16);
        var root = Directory.CreateTempSubdirectory("trenv-layer-sim").FullName;
        int accepted = 0, refused = 0;
        try
        {
            for (var round = 0; round < 400; round++)
            {
                var entries = new List<(string Name, bool Directory, string Text)>();
                for (int i = 0, n = random.Next(1, 6); i < n; i++)
                    entries.Add((names[random.Next(names.Length)], random.Next(3) == 0, $"{round}.{i}"));
                var tar = Tar([.. entries.Select(e => e.Directory ? new PaxTarEntry(TarEntryType.Directory, e.Name) : File(e.Name, e.Text))]);
                try
                {
                    LayerArchive.Check(tar, 1 << 20);
                }
                catch (InvalidDataException)
                {
                    refused++;
                    continue;
                }
                accepted++;
                var target = Path.Combine(root, round.ToString(System.Globalization.CultureInfo.InvariantCulture));
                LayerArchive.Unpack(tar, target);
                foreach (var last in entries.Where(e => !e.Directory).GroupBy(e => e.Name.Trim('.', '/')).Select(g => g.Last()))
                    Assert.Equal(last.Text, System.IO.File.ReadAllText(Path.Combine(target, last.Name.Trim('.', '/'))));
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
        Assert.True(accepted > 50 && refused > 50, $"{accepted} accepted, {refused} refused: the generator should exercise both");
    }

    [Theory]
    [MemberData(nameof(BadLayers))]
    public void Links_devices_escapes_oversize_and_garbage_are_refused_by_name(string says, byte[] layer)
    {
        var e = Assert.Throws<InvalidDataException>(() => LayerArchive.Check(layer, 1 << 20));
        Assert.Contains(says, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unpacking_is_atomic_and_a_second_unpack_changes_nothing()
    {
        var root = Directory.CreateTempSubdirectory("trenv-layer-unit").FullName;
        try
        {
            var target = Path.Combine(root, "sha");
            LayerArchive.Unpack(Tar(File("dir/a.txt", "a")), target);
            Assert.Equal("a", System.IO.File.ReadAllText(Path.Combine(target, "dir", "a.txt")));
            LayerArchive.Unpack(Tar(File("other.txt", "o")), target);
            Assert.False(Path.Exists(Path.Combine(target, "other.txt")));
            Assert.Equal(["sha"], Directory.GetFileSystemEntries(root).Select(Path.GetFileName));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static QueryCollection Query(params (string Key, string Value)[] pairs)
        => new(pairs.ToDictionary(p => p.Key, p => new StringValues(p.Value)));

    [Fact]
    public void Deploy_limits_carry_cpu_network_and_layer_and_refuse_bad_values()
    {
        var sha = new string('a', 64);
        var limits = FunctionsApi.ParseLimits(Query(("cpuMillicores", "250"), ("network", "true"), ("layer", sha.ToUpperInvariant())));
        Assert.NotNull(limits);
        Assert.Equal((250, true, sha), (limits.CpuMillicores, limits.Network, limits.Layer));
        var plain = FunctionsApi.ParseLimits(Query());
        Assert.Equal((0, false, (string?)null), (plain!.CpuMillicores, plain.Network, plain.Layer));
        Assert.False(plain.SameAs(limits));
        foreach (var bad in new[] { ("cpuMillicores", "0"), ("cpuMillicores", "64001"), ("network", "yes"), ("layer", "abc"), ("layers", sha) })
            Assert.Null(FunctionsApi.ParseLimits(Query(bad)));
    }

    [Theory]
    [InlineData("env.A=B", "is not valid")]
    [InlineData("env.1A", "is not valid")]
    [InlineData("env.", "is not valid")]
    [InlineData("env.A\u0000", "is not valid")]
    [InlineData("env.A-B", "is not valid")]
    [InlineData("memory", "Unknown query parameter")]
    public void Bad_environment_keys_and_unknown_parameters_are_named(string key, string problem)
    {
        Assert.Null(FunctionsApi.ParseLimits(Query((key, "v")), out var why));
        Assert.Contains(problem, why, StringComparison.Ordinal);
        Assert.DoesNotContain("\0", why, StringComparison.Ordinal);
    }

    [Fact]
    public void Environment_values_may_not_hold_NUL_and_good_keys_pass()
    {
        Assert.Null(FunctionsApi.ParseLimits(Query(("env.A", "x\0y")), out var why));
        Assert.Contains("NUL", why, StringComparison.Ordinal);
        var ok = FunctionsApi.ParseLimits(Query(("env._A1", "x=y"), ("initTimeoutMs", "2500"), ("tmpMb", "64")), out why);
        Assert.Null(why);
        Assert.Equal(("x=y", 2500, 64), (ok!.Env["_A1"], ok.InitTimeoutMs, ok.TmpMb));
        var plain = FunctionsApi.ParseLimits(Query())!;
        Assert.Equal((FunctionLimits.DefaultInitTimeoutMs, FunctionLimits.DefaultTmpMb), (plain.InitTimeoutMs, plain.TmpMb));
        foreach (var bad in new[] { ("initTimeoutMs", "0"), ("initTimeoutMs", "300001"), ("tmpMb", "0"), ("tmpMb", "10241") })
            Assert.Null(FunctionsApi.ParseLimits(Query(bad)));
    }

    [Theory]
    [InlineData("abc\n")]
    [InlineData("abc\r\n")]
    [InlineData("\nabc")]
    [InlineData("a b")]
    public void Names_match_exactly(string name)
        => Assert.NotNull(FunctionsApi.CheckName(name));

    [Fact]
    public void A_memory_limit_of_4_GiB_gives_the_sandbox_group_more_than_8_GiB()
    {
        var limits = FunctionLimits.Default with { MemoryMb = FunctionLimits.MaxMemoryMb, TmpMb = 512 };
        Assert.Equal((8L << 30) + (512L << 20) + (128L << 20), limits.SandboxMemoryBytes(128L << 20));
        Assert.Equal((4L << 30) + (512L << 20) + (128L << 20), (FunctionLimits.Default with { MemoryMb = 2048 }).SandboxMemoryBytes(128L << 20));
    }
}
