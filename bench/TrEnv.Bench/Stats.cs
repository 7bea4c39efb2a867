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

    /// <summary>The median (the mean of the middle two of an even count).</summary>
    public static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToArray();
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>
    /// A percentile bootstrap interval of the median at <paramref name="confidence"/>: the median of 10,000 resamples
    /// (with replacement, a fixed seed so one data set always gives one interval), cut at both tails.
    /// </summary>
    public static (double Low, double High) MedianInterval(IReadOnlyList<double> values, double confidence)
    {
        var random = new Random(20260907);
        var medians = new double[10_000];
        var resample = new double[values.Count];
        for (var i = 0; i < medians.Length; i++)
        {
            for (var j = 0; j < resample.Length; j++)
                resample[j] = values[random.Next(values.Count)];
            medians[i] = Median(resample);
        }
        var tail = (1 - confidence) / 2 * 100;
        return (Percentile(medians, tail), Percentile(medians, 100 - tail));
    }

    public static JsonArray Samples(IReadOnlyList<double> v) => new(v.Select(x => (JsonNode?)JsonValue.Create(Math.Round(x, 4))).ToArray());
}
