using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TrEnv.Chaos;

/// <summary>One service of a compose file, with variables already interpolated.</summary>
public sealed record ComposeService(
    string Name,
    string? Image,
    string? BuildTarget,
    IReadOnlyDictionary<string, string> Environment,
    IReadOnlyList<string> Ports,
    IReadOnlyList<string> Volumes,
    IReadOnlyList<string> Profiles,
    IReadOnlyDictionary<string, string> DependsOn,
    IReadOnlyList<string>? Healthcheck,
    IReadOnlyList<string> CapAdd,
    IReadOnlyList<string> SecurityOpt,
    string? Restart)
{
    /// <summary>The container path each named volume is mounted at.</summary>
    public IEnumerable<(string Volume, string Target)> NamedMounts
        => Volumes.Select(v => v.Split(':')).Where(p => p.Length >= 2 && !p[0].StartsWith('/') && !p[0].StartsWith('.')).Select(p => (p[0], p[1]));
}

/// <summary>A top-level volume: tmpfs when its local driver options say so.</summary>
public sealed record ComposeVolume(string Name, bool Tmpfs, string? Options);

/// <summary>
/// Reads a docker compose file the way the compose CLI does for what TrEnv uses: YAML anchors and merge keys,
/// variables interpolated from the <c>.env</c> beside the file (overridable), profiles. No engine needed.
/// </summary>
public sealed partial class ComposeFile
{
    private ComposeFile(string path, IReadOnlyDictionary<string, string> variables, IReadOnlyList<ComposeService> services, IReadOnlyList<ComposeVolume> volumes)
    {
        Path = path;
        Variables = variables;
        Services = services;
        Volumes = volumes;
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Variables { get; }
    public IReadOnlyList<ComposeService> Services { get; }
    public IReadOnlyList<ComposeVolume> Volumes { get; }

    /// <summary>The profiles <c>docker compose up</c> would enable: COMPOSE_PROFILES from the variables.</summary>
    public IReadOnlyList<string> DefaultProfiles
        => Variables.TryGetValue("COMPOSE_PROFILES", out var p) ? p.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : [];

    /// <summary>Services that start under these profiles: those without profiles, and those naming one of them.</summary>
    public IReadOnlyList<ComposeService> Active(IEnumerable<string> profiles)
    {
        var set = profiles.ToHashSet(StringComparer.Ordinal);
        return Services.Where(s => s.Profiles.Count == 0 || s.Profiles.Any(set.Contains)).ToList();
    }

    public ComposeService Service(string name)
        => Services.FirstOrDefault(s => s.Name == name) ?? throw new KeyNotFoundException($"{Path} has no service \"{name}\".");

    public static ComposeFile Load(string path, IReadOnlyDictionary<string, string>? overrides = null)
    {
        var variables = ReadDotEnv(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, ".env"));
        foreach (var (k, v) in overrides ?? new Dictionary<string, string>())
            variables[k] = v;
        var yaml = new YamlStream();
        using (var reader = new StreamReader(path))
            yaml.Load(new MergingParser(new Parser(reader)));
        if (yaml.Documents.Count != 1 || yaml.Documents[0].RootNode is not YamlMappingNode root)
            throw new FormatException($"{path} is not one YAML mapping.");
        string I(YamlNode node, string where) => Interpolate(Scalar(node, where), variables, where);

        var services = new List<ComposeService>();
        foreach (var (key, value) in Map(root, "services", path))
        {
            var name = Scalar(key, "service name");
            if (value is not YamlMappingNode svc)
                throw new FormatException($"{path}: service {name} is not a mapping.");
            string? Opt(string field) => svc.Children.TryGetValue(field, out var n) ? I(n, $"{name}.{field}") : null;
            IReadOnlyList<string> Seq(string field) => svc.Children.TryGetValue(field, out var n)
                ? n is YamlSequenceNode s ? s.Children.Select(c => I(c, $"{name}.{field}")).ToList() : throw new FormatException($"{path}: {name}.{field} must be a list.")
                : [];
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            if (svc.Children.TryGetValue("environment", out var e))
            {
                if (e is YamlMappingNode em)
                {
                    foreach (var (k, v) in em.Children)
                        env[Scalar(k, $"{name}.environment")] = v is YamlScalarNode { Value: null } ? "" : I(v, $"{name}.environment.{Scalar(k, "key")}");
                }
                else if (e is YamlSequenceNode es)
                {
                    foreach (var item in es.Children.Select(c => I(c, $"{name}.environment")))
                    {
                        var eq = item.IndexOf('=');
                        env[eq < 0 ? item : item[..eq]] = eq < 0 ? "" : item[(eq + 1)..];
                    }
                }
            }
            var depends = new Dictionary<string, string>(StringComparer.Ordinal);
            if (svc.Children.TryGetValue("depends_on", out var d))
            {
                if (d is YamlSequenceNode ds)
                    foreach (var n in ds.Children)
                        depends[Scalar(n, $"{name}.depends_on")] = "service_started";
                else
                    foreach (var (k, v) in Map(svc, "depends_on", path))
                        depends[Scalar(k, $"{name}.depends_on")] = v is YamlMappingNode dm && dm.Children.TryGetValue("condition", out var c) ? Scalar(c, "condition") : "service_started";
            }
            string? target = null;
            if (svc.Children.TryGetValue("build", out var b) && b is YamlMappingNode bm && bm.Children.TryGetValue("target", out var t))
                target = I(t, $"{name}.build.target");
            List<string>? health = null;
            if (svc.Children.TryGetValue("healthcheck", out var h) && h is YamlMappingNode hm && hm.Children.TryGetValue("test", out var test))
                health = test is YamlSequenceNode ts ? ts.Children.Select(c => I(c, $"{name}.healthcheck")).ToList() : [I(test, $"{name}.healthcheck")];
            services.Add(new ComposeService(name, Opt("image"), target, env, Seq("ports"), Seq("volumes"), Seq("profiles"), depends, health,
                Seq("cap_add"), Seq("security_opt"), Opt("restart")));
        }

        var volumes = new List<ComposeVolume>();
        if (root.Children.ContainsKey("volumes"))
        {
            foreach (var (key, value) in Map(root, "volumes", path))
            {
                var name = Scalar(key, "volume name");
                string? type = null, options = null;
                if (value is YamlMappingNode vm && vm.Children.TryGetValue("driver_opts", out var o) && o is YamlMappingNode om)
                {
                    type = om.Children.TryGetValue("type", out var tn) ? I(tn, $"volumes.{name}.type") : null;
                    options = om.Children.TryGetValue("o", out var on) ? I(on, $"volumes.{name}.o") : null;
                }
                volumes.Add(new ComposeVolume(name, type == "tmpfs", options));
            }
        }
        return new ComposeFile(path, variables, services, volumes);
    }

    /// <summary>Compose's interpolation: <c>$$</c>, <c>$VAR</c>, <c>${VAR}</c>, <c>${VAR:-default}</c>, <c>${VAR-default}</c>, <c>${VAR:?error}</c>, <c>${VAR?error}</c>.</summary>
    public static string Interpolate(string text, IReadOnlyDictionary<string, string> variables, string where = "value")
    {
        var result = new StringBuilder(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] != '$' || i + 1 >= text.Length)
            {
                result.Append(text[i]);
                continue;
            }
            var next = text[i + 1];
            if (next == '$')
            {
                result.Append('$');
                i++;
                continue;
            }
            if (next == '{')
            {
                var close = text.IndexOf('}', i + 2);
                if (close < 0)
                    throw new FormatException($"{where}: unterminated ${{ in \"{text}\".");
                result.Append(Expand(text[(i + 2)..close], variables, where));
                i = close;
                continue;
            }
            var m = NameAt().Match(text, i + 1);
            if (m.Success && m.Index == i + 1)
            {
                result.Append(variables.TryGetValue(m.Value, out var v) ? v : "");
                i += m.Length;
                continue;
            }
            result.Append('$');
        }
        return result.ToString();
    }

    private static string Expand(string body, IReadOnlyDictionary<string, string> variables, string where)
    {
        var m = ExpansionForm().Match(body);
        if (!m.Success)
            throw new FormatException($"{where}: cannot read ${{{body}}}.");
        var name = m.Groups["name"].Value;
        var op = m.Groups["op"].Value;
        var arg = m.Groups["arg"].Value;
        var set = variables.TryGetValue(name, out var value);
        var empty = !set || value!.Length == 0;
        return op switch
        {
            "" => set ? value! : "",
            ":-" => empty ? Interpolate(arg, variables, where) : value!,
            "-" => set ? value! : Interpolate(arg, variables, where),
            ":?" => empty ? throw new FormatException($"{where}: {name} is required: {arg}") : value!,
            "?" => set ? value! : throw new FormatException($"{where}: {name} is required: {arg}"),
            _ => throw new FormatException($"{where}: unsupported ${{{body}}}."),
        };
    }

    /// <summary>KEY=VALUE lines; # comments and blank lines skipped; surrounding quotes removed.</summary>
    public static Dictionary<string, string> ReadDotEnv(string path)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(path))
            return result;
        foreach (var raw in File.ReadAllLines(path))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
                continue;
            var eq = line.IndexOf('=');
            if (eq <= 0)
                throw new FormatException($"{path}: \"{raw}\" is not KEY=VALUE.");
            var value = line[(eq + 1)..].Trim();
            if (value.Length >= 2 && (value[0] == '"' || value[0] == '\'') && value[^1] == value[0])
                value = value[1..^1];
            result[line[..eq].Trim()] = value;
        }
        return result;
    }

    private static IEnumerable<KeyValuePair<YamlNode, YamlNode>> Map(YamlMappingNode parent, string field, string path)
        => parent.Children.TryGetValue(field, out var node) && node is YamlMappingNode m
            ? m.Children
            : throw new FormatException($"{path}: \"{field}\" must be a mapping.");

    private static string Scalar(YamlNode node, string where)
        => node is YamlScalarNode s ? s.Value ?? "" : throw new FormatException($"{where} must be a single value.");

    [GeneratedRegex("[A-Za-z_][A-Za-z0-9_]*")]
    private static partial Regex NameAt();

    [GeneratedRegex("^(?<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?<op>:-|-|:\\?|\\?)(?<arg>.*))?$", RegexOptions.Singleline)]
    private static partial Regex ExpansionForm();
}
