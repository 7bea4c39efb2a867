using TrEnv.Contracts;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Placement;

namespace TrEnv.Worker.Reporting;

/// <summary>Tells the template registry how many of this node's instances map each template, when that changes.</summary>
public sealed class TemplateMappings(string node, SandboxPool<IsolatedSandbox> pool, IRegistryClient registry)
{
    private readonly Dictionary<string, int> _reported = new(StringComparer.Ordinal);

    public void Report()
    {
        lock (_reported)
        {
            var counts = pool.Mappings();
            foreach (var key in counts.Keys.Union(_reported.Keys).ToList())
            {
                var now = counts.GetValueOrDefault(key);
                if (_reported.GetValueOrDefault(key, -1) == now)
                    continue;
                registry.ReportMappings(new TemplateCommands.Mappings(key, node, now));
                if (now == 0)
                    _reported.Remove(key);
                else
                    _reported[key] = now;
            }
        }
    }
}
