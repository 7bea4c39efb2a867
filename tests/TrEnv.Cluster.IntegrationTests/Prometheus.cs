using System.Globalization;
using System.Text.RegularExpressions;

namespace TrEnv.Tests;

/// <summary>Samples of a Prometheus text exposition, for asserting metric values.</summary>
public sealed partial class Prometheus
{
    private readonly List<(string Name, Dictionary<string, string> Labels, double Value)> _samples = [];

    public Prometheus(string text)
    {
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
                continue;
            var m = SampleLine().Match(line);
            Assert.True(m.Success, $"not a Prometheus sample line: {line}");
            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (Match l in Label().Matches(m.Groups["labels"].Value))
                labels[l.Groups[1].Value] = l.Groups[2].Value.Replace("\\\"", "\"", StringComparison.Ordinal).Replace("\\\\", "\\", StringComparison.Ordinal);
            var value = m.Groups["value"].Value switch
            {
                "+Inf" => double.PositiveInfinity,
                "-Inf" => double.NegativeInfinity,
                "NaN" => double.NaN,
                var v => double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture),
            };
            _samples.Add((m.Groups["name"].Value, labels, value));
        }
    }

    public bool Has(string name) => _samples.Any(s => s.Name == name);

    /// <summary>The sum of every sample of <paramref name="name"/> whose labels include all of <paramref name="match"/>.</summary>
    public double Sum(string name, params (string Key, string Value)[] match)
        => _samples.Where(s => s.Name == name && match.All(kv => s.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value)).Sum(s => s.Value);

    public int Count(string name, params (string Key, string Value)[] match)
        => _samples.Count(s => s.Name == name && match.All(kv => s.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value));

    [GeneratedRegex("""^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>\S+)( \d+)?$""")]
    private static partial Regex SampleLine();

    [GeneratedRegex("""([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""")]
    private static partial Regex Label();
}
