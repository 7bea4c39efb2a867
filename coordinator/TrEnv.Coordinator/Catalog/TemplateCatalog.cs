using System.Collections.Concurrent;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Catalog;

/// <summary>The coordinator's local read model of sealed templates, keyed "function@version"; the invoke path reads it.</summary>
public sealed class TemplateCatalog
{
    private readonly ConcurrentDictionary<string, TemplateInfo> _sealed = new(StringComparer.Ordinal);

    public IReadOnlyCollection<TemplateInfo> All => _sealed.Values.OrderBy(t => t.Key, StringComparer.Ordinal).ToList();

    public TemplateInfo? Find(string key) => _sealed.TryGetValue(key, out var t) ? t : null;

    public void Add(TemplateInfo template) => _sealed[template.Key] = template;

    public void Apply(IEvent e)
    {
        switch (e)
        {
            case TemplateEvents.Sealed s:
                Add(s.Template);
                break;
            case TemplateEvents.Retired r:
                _sealed.TryRemove(r.Key, out _);
                break;
            case TemplateEvents.Freed f:
                _sealed.TryRemove(f.Key, out _);
                break;
        }
    }
}
