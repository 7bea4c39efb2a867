using System.Text.Json.Nodes;

namespace TrEnv.Bench;

internal static class Stats
{
    /// <summary>Nearest-rank percentile of milliseconds.</summary>
    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    /// <summary>n, min, p50 and p99 in milliseconds, and every sample (for the report's distributions).</summary>
    public static JsonObject Summary(IReadOnlyList<double> v) => new()
    {
        ["n"] = v.Count,
        ["min_ms"] = Math.Round(v.Min(), 3),
        ["p50_ms"] = Math.Round(Percentile(v, 50), 3),
        ["p99_ms"] = Math.Round(Percentile(v, 99), 3),
        ["samples_ms"] = Samples(v),
    };

    public static JsonArray Samples(IReadOnlyList<double> v) => new(v.Select(x => (JsonNode?)JsonValue.Create(Math.Round(x, 4))).ToArray());
}
