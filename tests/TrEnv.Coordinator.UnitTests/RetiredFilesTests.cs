using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;

namespace TrEnv.Tests;

public sealed class RetiredFilesTests
{
    private static FunctionVersion V(int version, string module, string? layer = null)
        => new(version, module, 1, FunctionLimits.Default with { Layer = layer }, DateTimeOffset.UnixEpoch);

    [Fact]
    public void Only_modules_and_layers_no_live_function_uses_are_retired()
    {
        var python = new string('p', 64);
        var live = new[] { V(3, python, new string('a', 64)), V(1, new string('h', 64)) };
        var retired = new[] { V(1, python, new string('b', 64)), V(2, new string('x', 64), new string('a', 64)), V(3, new string('x', 64)) };
        var (modules, layers) = RetiredFiles.Of(live, retired);
        Assert.Equal([new string('x', 64)], modules);        // the runtime's module is shared with a live function: it stays
        Assert.Equal([new string('b', 64)], layers);         // a layer a live function names stays
    }

    [Fact]
    public void Nothing_live_retires_everything_once()
    {
        var (modules, layers) = RetiredFiles.Of([], [V(1, new string('m', 64), new string('l', 64)), V(2, new string('m', 64), new string('l', 64))]);
        Assert.Equal((1, 1), (modules.Count, layers.Count));
    }
}
