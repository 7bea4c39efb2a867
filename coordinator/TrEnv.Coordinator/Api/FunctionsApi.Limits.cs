using System.Globalization;
using System.Text.RegularExpressions;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Api;

// The limits of a deploy, read from its query string.
public static partial class FunctionsApi
{
    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]{0,127}\z")]
    private static partial Regex EnvKeyPattern();

    internal static FunctionLimits? ParseLimits(IQueryCollection query) => ParseLimits(query, out _);

    /// <summary>The deploy's limits, or null with <paramref name="problem"/> naming what is wrong when it can say.</summary>
    internal static FunctionLimits? ParseLimits(IQueryCollection query, out string? problem)
    {
        problem = null;
        int? Int(string key, int min, int max)
        {
            if (!query.TryGetValue(key, out var text))
                return null;
            return int.TryParse(text.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max ? v : -1;
        }
        var memory = Int("memoryMb", 1, FunctionLimits.MaxMemoryMb);
        var timeout = Int("timeoutMs", 1, FunctionLimits.MaxTimeoutMs);
        var concurrency = Int("concurrency", 1, 1024);
        var cpu = Int("cpuMillicores", 1, FunctionLimits.MaxCpuMillicores);
        var init = Int("initTimeoutMs", 1, FunctionLimits.MaxInitTimeoutMs);
        var tmp = Int("tmpMb", 1, FunctionLimits.MaxTmpMb);
        if (memory == -1 || timeout == -1 || concurrency == -1 || cpu == -1 || init == -1 || tmp == -1)
            return null;
        bool? network = query.TryGetValue("network", out var net) ? net.ToString() switch { "true" or "1" => true, "false" or "0" => false, _ => null } : false;
        var layer = query.TryGetValue("layer", out var l) ? l.ToString().ToLowerInvariant() : null;
        if (network is null || (layer is not null && !ModuleHash.IsValid(layer)))
            return null;
        var runtime = query.TryGetValue("runtime", out var rt) ? rt.ToString() : null;
        if (runtime is { Length: 0 or > 32 })
            return null;
        var env = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in query)
        {
            if (key.StartsWith("env.", StringComparison.Ordinal))
            {
                var name = key[4..];
                if (!EnvKeyPattern().IsMatch(name))
                {
                    problem = $"The environment key \"{Printable(name)}\" is not valid: use 1 to 128 letters, digits or '_', not starting with a digit.";
                    return null;
                }
                if (value.Count != 1 || value.ToString().Contains('\0', StringComparison.Ordinal))
                {
                    problem = value.Count != 1 ? $"The environment key \"{name}\" is given {value.Count} times." : $"The value of environment key \"{name}\" contains a NUL character.";
                    return null;
                }
                env[name] = value.ToString();
            }
            else if (key is not ("memoryMb" or "timeoutMs" or "initTimeoutMs" or "tmpMb" or "concurrency" or "cpuMillicores" or "network" or "layer" or "runtime"))
            {
                problem = $"Unknown query parameter \"{Printable(key)}\".";
                return null;
            }
        }
        return new FunctionLimits(memory ?? FunctionLimits.DefaultMemoryMb, timeout ?? FunctionLimits.DefaultTimeoutMs,
            concurrency ?? FunctionLimits.DefaultConcurrency, new Dictionary<string, string>(env, StringComparer.Ordinal), cpu ?? 0, network.Value, layer, runtime,
            init ?? FunctionLimits.DefaultInitTimeoutMs, tmp ?? FunctionLimits.DefaultTmpMb);
    }
}
