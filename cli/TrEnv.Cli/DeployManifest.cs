using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace TrEnv.Cli;

/// <summary>One function to deploy: its code, and every parameter of <c>PUT /v1/functions/{name}</c>.</summary>
public sealed record DeploySpec(string Name, string File, string? Runtime, int? MemoryMb, int? TimeoutMs, int? InitTimeoutMs, int? Concurrency,
    int? CpuMillicores, int? TmpMb, bool? Network, IReadOnlyDictionary<string, string> Env, string? Layer)
{
    /// <summary>The deploy's query string, without the layer (resolved to a hash first) and with the runtime a .py or .rb file implies.</summary>
    public List<string> Query()
    {
        var query = new List<string>();
        void Add(string key, int? value)
        {
            if (value is { } v)
                query.Add($"{key}={v.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
        }
        Add("memoryMb", MemoryMb);
        Add("timeoutMs", TimeoutMs);
        Add("initTimeoutMs", InitTimeoutMs);
        Add("concurrency", Concurrency);
        Add("cpuMillicores", CpuMillicores);
        Add("tmpMb", TmpMb);
        if (Network is { } n)
            query.Add($"network={(n ? "true" : "false")}");
        if (ScriptRuntime is { } r)
            query.Add($"runtime={Uri.EscapeDataString(r)}");
        foreach (var (key, value) in Env.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            query.Add($"env.{Uri.EscapeDataString(key)}={Uri.EscapeDataString(value)}");
        return query;
    }

    /// <summary>The script runtime: given, or implied by a .py or .rb file; null for a module.</summary>
    public string? ScriptRuntime => Runtime ?? Path.GetExtension(File) switch { ".py" => "python", ".rb" => "ruby", _ => null };
}

/// <summary>
/// <c>trenv.yaml</c>: the functions a directory deploys, as faas-cli's stack.yml or Spin's spin.toml do. Paths are
/// relative to the manifest's directory. Unknown keys are refused (a typo would otherwise deploy defaults).
/// <code>
/// functions:
///   hello:
///     module: build/hello.wasm
///     memoryMb: 64
///     env: { GREETING: hi }
///     layer: data/          # a directory or .tar, uploaded first; or a layer's sha256
///   analyst:
///     script: tools/analyst.py   # runtime python implied by .py
///     timeoutMs: 5000
/// </code>
/// </summary>
public static partial class DeployManifest
{
    public sealed class Document
    {
        public Dictionary<string, Function?>? Functions { get; set; }
    }

    public sealed class Function
    {
        public string? Module { get; set; }
        public string? Script { get; set; }
        public string? Runtime { get; set; }
        public int? MemoryMb { get; set; }
        public int? TimeoutMs { get; set; }
        public int? InitTimeoutMs { get; set; }
        public int? Concurrency { get; set; }
        public int? CpuMillicores { get; set; }
        public int? TmpMb { get; set; }
        public bool? Network { get; set; }
        public Dictionary<string, string?>? Env { get; set; }
        public string? Layer { get; set; }
    }

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex LayerHash();

    /// <summary>True when <paramref name="layer"/> names a stored layer by its hash rather than a path to upload.</summary>
    public static bool IsLayerHash(string layer) => LayerHash().IsMatch(layer);

    /// <summary>The manifest's functions in name order, paths made absolute; throws <see cref="InvalidDataException"/> naming the problem.</summary>
    public static IReadOnlyList<DeploySpec> Load(string path)
    {
        if (!System.IO.File.Exists(path))
            throw new InvalidDataException($"The manifest {path} does not exist.");
        Document? document;
        try
        {
            var deserializer = new DeserializerBuilder().WithNamingConvention(CamelCaseNamingConvention.Instance).Build();
            document = deserializer.Deserialize<Document?>(System.IO.File.ReadAllText(path));
        }
        catch (YamlException e)
        {
            var why = (e.InnerException ?? e).Message;
            throw new InvalidDataException($"{path} line {e.Start.Line}: {why}");
        }
        if (document?.Functions is not { Count: > 0 } functions)
            throw new InvalidDataException($"{path} names no functions: it needs a \"functions:\" map of name to module or script.");
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var specs = new List<DeploySpec>();
        foreach (var (name, f) in functions.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (f is null || (f.Module is null) == (f.Script is null))
                throw new InvalidDataException($"{path}: function \"{name}\" needs exactly one of module (a .wasm) or script (a .py, .rb, or .tar with main.py / main.rb).");
            var code = Path.GetFullPath(f.Module ?? f.Script!, directory);
            if (!System.IO.File.Exists(code))
                throw new InvalidDataException($"{path}: function \"{name}\": {code} does not exist.");
            if (f.Module is not null && f.Runtime is not null)
                throw new InvalidDataException($"{path}: function \"{name}\": a runtime goes with a script, not a module.");
            var runtime = f.Runtime ?? (f.Script is not null ? Path.GetExtension(code) switch { ".py" => "python", ".rb" => "ruby", _ => null } : null);
            if (f.Script is not null && runtime is null)
                throw new InvalidDataException($"{path}: function \"{name}\": give the script's runtime (python or ruby); its file name does not say.");
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (key, value) in f.Env ?? [])
                env[key] = value ?? "";
            var layer = f.Layer is null || IsLayerHash(f.Layer) ? f.Layer : Path.GetFullPath(f.Layer, directory);
            if (layer is not null && !IsLayerHash(layer) && !System.IO.File.Exists(layer) && !Directory.Exists(layer))
                throw new InvalidDataException($"{path}: function \"{name}\": the layer {layer} is neither a directory, a file nor a layer's sha256.");
            specs.Add(new DeploySpec(name, code, runtime, f.MemoryMb, f.TimeoutMs, f.InitTimeoutMs, f.Concurrency, f.CpuMillicores, f.TmpMb, f.Network, env, layer));
        }
        return specs;
    }
}
