namespace TrEnv.Bench;

internal sealed record BenchOptions(int Samples, int PssInstances, string Output, string Guests, string WorkRoot)
{
    /// <summary>--sizes 1,4,16: template sizes in MiB for the restore-time-against-size sweep (none: skipped).</summary>
    public IReadOnlyList<int> Sizes { get; init; } = [];

    public static BenchOptions Parse(string[] args)
    {
        var root = FindRepoRoot();
        var options = new BenchOptions(30, 16, Path.Combine(root, "bench", "results", "startup.json"), Path.Combine(root, "guests", "build"),
            Path.Combine("/dev/shm", $"trenv-bench-{Environment.ProcessId}"));
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            options = args[i] switch
            {
                "--samples" => options with { Samples = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture) },
                "--pss-instances" => options with { PssInstances = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture) },
                "--out" => options with { Output = Path.GetFullPath(value) },
                "--work" => options with { WorkRoot = Path.GetFullPath(value) },
                "--sizes" => options with { Sizes = value.Split(',').Select(v => int.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray() },
                _ => throw new ArgumentException($"Unknown option {args[i]}."),
            };
            i++;
        }
        return options;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TrEnv.Cluster.sln")))
                return dir.FullName;
        }
        return Directory.GetCurrentDirectory();
    }
}
