using TrEnv.Bench;

namespace TrEnv.Tests;

public sealed class StatsTests
{
    [Fact]
    public void The_median_of_an_even_count_is_the_mean_of_the_middle_two()
    {
        Assert.Equal(3, Stats.Median([5, 1, 3]));
        Assert.Equal(2.5, Stats.Median([4, 1, 3, 2]));
    }

    [Fact]
    public void The_bootstrap_interval_holds_the_median_and_narrows_with_more_rounds()
    {
        var random = new Random(7);
        List<double> Rounds(int n) => [.. Enumerable.Range(0, n).Select(_ => 0.97 + (random.NextDouble() - 0.5) * 0.2)];
        var few = Rounds(8);
        var many = Rounds(200);
        var (fewLow, fewHigh) = Stats.MedianInterval(few, 0.95);
        var (manyLow, manyHigh) = Stats.MedianInterval(many, 0.95);
        Assert.InRange(Stats.Median(few), fewLow, fewHigh);
        Assert.InRange(Stats.Median(many), manyLow, manyHigh);
        Assert.True(manyHigh - manyLow < fewHigh - fewLow, $"[{manyLow}, {manyHigh}] is not narrower than [{fewLow}, {fewHigh}]");
        Assert.InRange(0.97, manyLow, manyHigh);
        // One data set, one interval: the resampling is seeded.
        Assert.Equal(Stats.MedianInterval(few, 0.95), Stats.MedianInterval(few, 0.95));
        Assert.Equal((1.0, 1.0), Stats.MedianInterval([1.0, 1.0, 1.0], 0.95));
    }
}
