namespace TrEnv.Tests;

/// <summary>Finds the sample guests built by guests/build.sh from their checked-in sources.</summary>
internal static class TestGuests
{
    private static readonly Lazy<string> BuildDirectory = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "guests", "build");
            if (File.Exists(Path.Combine(dir.FullName, "guests", "build.sh")))
            {
                if (!File.Exists(Path.Combine(candidate, "hello.wasm")))
                    throw new InvalidOperationException($"Guests are not built: run {Path.Combine(dir.FullName, "guests", "build.sh")} (./test.sh does).");
                return candidate;
            }
        }
        throw new InvalidOperationException("Cannot find guests/build.sh above " + AppContext.BaseDirectory);
    });

    public static string RepoRoot => Path.GetDirectoryName(Path.GetDirectoryName(BuildDirectory.Value))!;

    public static string PathOf(string name) => Path.Combine(BuildDirectory.Value, name + ".wasm");

    public static byte[] Bytes(string name) => File.ReadAllBytes(PathOf(name));
}

/// <summary>A scratch directory removed when the test ends.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir(string prefix = "trenv-test")
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Sub(string name)
    {
        var p = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(p);
        return p;
    }

    public void Dispose()
    {
        if (Environment.GetEnvironmentVariable("TRENV_KEEP_TEST_DIRS") == "1")
            return;
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
