using System.Net;

namespace TrEnv.Tests;

/// <summary>What every script runtime must show on a real cluster: the same answers on every kind of start, and reseeded restores.</summary>
public static class ScriptChecks
{
    /// <summary>
    /// The first input starts cold and the rest run warm; then each input, after a scale-to-zero, starts from the
    /// template and answers what the warm instance answered, and so does the restored instance run warm again.
    /// Returns the answers by input.
    /// </summary>
    public static async Task<Dictionary<string, string>> AnswersTheSameOnEveryStart(LocalCluster c, string name, IReadOnlyList<string> inputs)
    {
        var cold = await c.Api.InvokeAsync(name, inputs[0]);
        Assert.True((cold.Status, cold.Start) == (HttpStatusCode.OK, "cold"), $"{name} first answered {cold.Status} {cold.Start}: {cold.Body}");
        var expected = new Dictionary<string, string>(StringComparer.Ordinal) { [inputs[0]] = cold.Body };
        await WarmKnownAsync(c, name);
        foreach (var input in inputs.Skip(1))
        {
            var warm = await c.Api.InvokeAsync(name, input);
            Assert.Equal((HttpStatusCode.OK, "warm"), (warm.Status, warm.Start));
            expected[input] = warm.Body;
        }
        foreach (var input in inputs)
        {
            await c.Api.ScaleToZeroAsync(name);
            var restored = await c.Api.InvokeAsync(name, input);
            Assert.Equal((HttpStatusCode.OK, "template", expected[input]), (restored.Status, restored.Start, restored.Body));
            await WarmKnownAsync(c, name);
            var again = await c.Api.InvokeAsync(name, input);
            Assert.Equal(("warm", expected[input]), (again.Start, again.Body));
        }
        return expected;
    }

    // Placement sends a call to the worker it knows holds a warm instance, and it knows from that worker's status
    // broadcast, which in a loaded suite can trail the answer that left the instance warm (then a second worker
    // restores from the template instead). This checks answers per start kind, not how soon the broadcast lands.
    private static Task WarmKnownAsync(LocalCluster c, string name)
        => Poll.UntilAsync(async () =>
        {
            using var cluster = System.Text.Json.JsonDocument.Parse(await c.Http.GetStringAsync("/v1/cluster"));
            return cluster.RootElement.GetProperty("workers").EnumerateArray().Any(w => w.GetProperty("warm").EnumerateObject()
                .Any(k => k.Name.StartsWith(name + "@", StringComparison.Ordinal) && k.Value.GetInt32() > 0));
        }, TimeSpan.FromSeconds(30), () => $"the coordinator to know of a warm instance of {name}");

    /// <summary>Two instances restored from one template answer <paramref name="input"/> (a random draw) differently.</summary>
    public static async Task RestoredInstancesDrawDifferently(LocalCluster c, string name, string input)
    {
        var draws = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            await c.Api.ScaleToZeroAsync(name);
            var draw = await c.Api.InvokeAsync(name, input);
            Assert.Equal((HttpStatusCode.OK, "template"), (draw.Status, draw.Start));
            draws.Add(draw.Body);
        }
        Assert.NotEqual(draws[0], draws[1]);
    }
}
