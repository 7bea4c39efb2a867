using System.Diagnostics;

namespace TrEnv.Sandbox.Isolation;

/// <summary>
/// What a sandbox's root holds: the read-only base (the host's shared libraries, built once per worker)
/// and the node paths bound in at their own paths, read-write or read-only. Nothing else of the node's
/// filesystem is visible inside (see the host's SandboxRoot).
/// </summary>
public sealed record SandboxRootfs(string BaseDirectory, IReadOnlyList<string> ReadWrite, IReadOnlyList<string> ReadOnly)
{
    /// <summary>The host arguments that make it pivot into this root.</summary>
    public IEnumerable<string> Arguments()
    {
        yield return "--rootfs";
        yield return BaseDirectory;
        foreach (var path in ReadWrite)
        {
            yield return "--bind";
            yield return path;
        }
        foreach (var path in ReadOnly)
        {
            yield return "--bind-ro";
            yield return path;
        }
    }

    /// <summary>
    /// Builds the base for <paramref name="host"/> in <paramref name="directory"/>: every shared library the
    /// host and the libraries beside it need (from <c>ldd</c>), at their own paths, plus the loader cache.
    /// Returns null with the reason when the host cannot run from such a root (the JIT host needs the whole
    /// .NET runtime).
    /// </summary>
    public static (string? Base, string? Why) BuildBase(string directory, SandboxHostCommand host)
    {
        if (host.Kind == "jit" || !Path.IsPathRooted(host.FileName) || !File.Exists(host.FileName))
            return (null, $"the {host.Kind} sandbox host needs the .NET runtime, which a sandbox root does not hold (publish the NativeAOT host with scripts/publish-host.sh)");
        var hostDirectory = Path.GetDirectoryName(host.FileName)!;
        // .NET opens OpenSSL with dlopen (hashing goes through it), so ldd cannot see it: name it here.
        var opened = DlopenedLibraries();
        var elves = Directory.EnumerateFiles(hostDirectory, "*.so").Prepend(host.FileName).Concat(opened);
        var libraries = new SortedSet<string>(opened, StringComparer.Ordinal) { "/etc/ld.so.cache" };
        foreach (var elf in elves)
        {
            var (code, output) = Run("ldd", elf);
            if (code != 0)
                return (null, $"ldd {elf} failed: {output.Trim()}");
            foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (line.Contains("not found", StringComparison.Ordinal))
                    return (null, $"{elf} needs a library that is missing: {line}");
                var arrow = line.IndexOf("=> ", StringComparison.Ordinal);
                var path = (arrow >= 0 ? line[(arrow + 3)..] : line).Split(' ')[0];
                if (path.StartsWith('/'))
                    libraries.Add(path);
            }
        }
        if (Directory.Exists(directory))
            Directory.Delete(directory, recursive: true);
        foreach (var dir in new[] { "proc", "dev", "tmp", "etc" })
            Directory.CreateDirectory(Path.Combine(directory, dir));
        foreach (var library in libraries.Where(File.Exists))
        {
            var target = directory + library;
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(library, target, overwrite: true); // follows symlinks: the base holds plain files
        }
        return (Path.GetFullPath(directory), null);
    }

    private static List<string> DlopenedLibraries()
    {
        var (code, output) = Run("/sbin/ldconfig", "-p");
        if (code != 0)
            return [];
        return output.Split('\n', StringSplitOptions.TrimEntries)
            .Where(l => (l.StartsWith("libssl.so.3 ", StringComparison.Ordinal) || l.StartsWith("libcrypto.so.3 ", StringComparison.Ordinal)) && l.Contains("x86-64", StringComparison.Ordinal))
            .Select(l => l[(l.IndexOf("=> ", StringComparison.Ordinal) + 3)..].Trim())
            .Distinct(StringComparer.Ordinal)
            .ToList();
    }

    private static (int Code, string Output) Run(string file, string argument)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(argument);
        using var process = Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output);
    }
}
