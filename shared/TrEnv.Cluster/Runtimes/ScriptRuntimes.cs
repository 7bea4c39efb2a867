using System.Formats.Tar;

namespace TrEnv.Cluster.Runtimes;

/// <summary>
/// A script runtime: a guest-ABI module the platform ships (an interpreter with a shim) that runs the script a
/// deploy carries. The script travels as the function's file layer; the runtime's own files (a standard
/// library) are read-only directories under <see cref="NodeSettings.RuntimesDirectory"/>, preopened at fixed
/// guest paths.
/// </summary>
public sealed record ScriptRuntime(string Name, string ModuleFile, string ScriptFile, IReadOnlyList<KeyValuePair<string, string>> ReadOnly)
{
    /// <summary>The runtime's module on this node, or null when it is not installed here.</summary>
    public string? ModulePath(NodeSettings settings)
        => Path.Combine(settings.RuntimesDirectory, ModuleFile) is var path && File.Exists(path) ? path : null;

    /// <summary>Host directory to guest path, for the sandbox's read-only preopens.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Directories(NodeSettings settings)
        => ReadOnly.Select(kv => new KeyValuePair<string, string>(Path.Combine(settings.RuntimesDirectory, kv.Key), kv.Value)).ToList();
}

public static class ScriptRuntimes
{
    /// <summary>CPython 3.11 for WASI with the stdlib (precompiled) at /usr/local/lib/python3.11; the script is /tmp/main.py.</summary>
    public static readonly ScriptRuntime Python = new("python", "python/python.wasm", "main.py", [new("python/lib", "/usr/local/lib")]);

    /// <summary>Ruby 3.4 (npm @ruby/3.4-wasm-wasi, stdlib embedded), driven by the engine's adapter; the script is /tmp/main.rb.</summary>
    public static readonly ScriptRuntime Ruby = new("ruby", "ruby/ruby.wasm", "main.rb", []);

    public static IReadOnlyList<ScriptRuntime> All { get; } = [Python, Ruby];

    public static ScriptRuntime? Find(string? name) => All.FirstOrDefault(r => r.Name == name);

    /// <summary>
    /// A tar holding one file, <paramref name="fileName"/>, with <paramref name="content"/>: the layer of a function
    /// deployed as a bare script. Deterministic (no times, owners or modes from the deploy), so the same script
    /// makes the same layer hash and deploys idempotently.
    /// </summary>
    public static byte[] ScriptLayer(string fileName, byte[] content)
    {
        using var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Ustar, leaveOpen: true))
        {
            var entry = new UstarTarEntry(TarEntryType.RegularFile, fileName)
            {
                DataStream = new MemoryStream(content),
                ModificationTime = DateTimeOffset.UnixEpoch,
                Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            };
            writer.WriteEntry(entry);
        }
        return tar.ToArray();
    }

    /// <summary>Whether <paramref name="body"/> is a tar archive (ustar magic), possibly gzipped, rather than a bare script.</summary>
    public static bool LooksLikeArchive(ReadOnlySpan<byte> body)
        => (body.Length > 2 && body[0] == 0x1f && body[1] == 0x8b)
           || (body.Length >= 263 && body.Slice(257, 5).SequenceEqual("ustar"u8));
}
