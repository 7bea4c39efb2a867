using TrEnv.Contracts;

namespace TrEnv.Coordinator.Catalog;

/// <summary>
/// Which modules and layers of retired function versions no live function uses: the files workers may delete.
/// A module or layer shared with a live function (the Python runtime's module, say) stays.
/// </summary>
public static class RetiredFiles
{
    public static (IReadOnlyList<string> Modules, IReadOnlyList<string> Layers) Of(IEnumerable<FunctionVersion> live, IEnumerable<FunctionVersion> retired)
    {
        var liveList = live.ToList();
        var liveModules = liveList.Select(v => v.Sha256).ToHashSet(StringComparer.Ordinal);
        var liveLayers = liveList.Select(v => v.Limits.Layer).OfType<string>().ToHashSet(StringComparer.Ordinal);
        var retiredList = retired.ToList();
        return (
            [.. retiredList.Select(v => v.Sha256).Distinct(StringComparer.Ordinal).Where(s => !liveModules.Contains(s)).Order(StringComparer.Ordinal)],
            [.. retiredList.Select(v => v.Limits.Layer).OfType<string>().Distinct(StringComparer.Ordinal).Where(s => !liveLayers.Contains(s)).Order(StringComparer.Ordinal)]);
    }

    /// <summary>The current version of every live function this catalog knows.</summary>
    public static IEnumerable<FunctionVersion> Live(FunctionCatalog catalog)
        => catalog.Names.Select(n => catalog.TryGet(n, out var v) ? v : null).OfType<FunctionVersion>();
}
