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
}
