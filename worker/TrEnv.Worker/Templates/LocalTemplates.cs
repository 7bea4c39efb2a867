using System.Text.RegularExpressions;
using TrEnv.Contracts;

namespace TrEnv.Worker.Templates;

/// <summary>
/// The templates this node knows (sealed here, or learned when a capture was refused) and their header files,
/// and which (template, pool file) pairs a sandbox has already verified against the pool's bytes.
/// </summary>
public sealed partial class LocalTemplates(string directory)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, TemplateInfo> _known = new(StringComparer.Ordinal);
    private readonly HashSet<string> _verified = new(StringComparer.Ordinal);

    public TemplateInfo? Find(FunctionVersionKey key)
    {
        lock (_gate)
            return _known.GetValueOrDefault(key.ToString());
    }

    public void Remember(TemplateInfo template)
    {
        lock (_gate)
            _known[template.Key] = template;
    }

    /// <summary>A template that failed to restore is never offered again; the next start checks afresh.</summary>
    public void Distrust(FunctionVersionKey key, TemplateInfo? failed, string? poolIdentity)
    {
        lock (_gate)
        {
            _known.Remove(key.ToString());
            if (failed is not null)
                _verified.Remove(VerificationKey(failed, poolIdentity));
        }
    }

    /// <summary>
    /// True the first time a template is used with this pool file: that load checks the pool's bytes. A pool
    /// lost and created again has a new identity, so it is checked afresh.
    /// </summary>
    public bool NeedsVerification(TemplateInfo template, string? poolIdentity)
    {
        lock (_gate)
            return _verified.Add(VerificationKey(template, poolIdentity));
    }

    /// <summary>Checked again next time (say, a pool being rebuilt from its durable copies was not ready yet).</summary>
    public void Unverify(TemplateInfo template, string? poolIdentity)
    {
        lock (_gate)
            _verified.Remove(VerificationKey(template, poolIdentity));
    }

    /// <summary>A template this node sealed: its bytes were written here, so they need no check.</summary>
    public void Sealed(TemplateInfo template, string? poolIdentity)
    {
        lock (_gate)
        {
            _known[template.Key] = template;
            _verified.Add(VerificationKey(template, poolIdentity));
        }
    }

    /// <summary>The header file a sandbox reads, written from the registry's copy when this node has none yet.</summary>
    public string HeaderFile(TemplateInfo template)
    {
        var path = HeaderPath(template);
        if (!File.Exists(path))
        {
            var temp = path + "." + Guid.NewGuid().ToString("N");
            File.WriteAllBytes(temp, template.Header);
            File.Move(temp, path, overwrite: true);
        }
        return path;
    }

    /// <summary>Where a sealed template's header lives; a capture moves its file here.</summary>
    public string HeaderPath(TemplateInfo template) => Path.Combine(directory, $"{template.Key}-{template.SealedAt.ToUnixTimeMilliseconds()}.tpl");

    /// <summary>A unique path for a header (or delta) being written.</summary>
    public string Scratch(string name, string extension) => Path.Combine(directory, $"{name}.{Guid.NewGuid():N}.{extension}");

    /// <summary>Drops what it knows of forgotten versions, and their header files (only read at a load, and written again when needed).</summary>
    public void Forget(Func<FunctionVersionKey, bool> forgotten)
    {
        lock (_gate)
        {
            foreach (var key in _known.Keys.Where(k => Parse(k) is { } v && forgotten(v)).ToList())
                _known.Remove(key);
            _verified.RemoveWhere(v => Parse(v.Split('/')[0]) is { } key && forgotten(key));
        }
        foreach (var path in Directory.EnumerateFiles(directory, "*.tpl"))
        {
            var match = HeaderName().Match(Path.GetFileName(path));
            if (match.Success && Parse(match.Groups["key"].Value) is { } key && forgotten(key))
            {
                try
                {
                    File.Delete(path);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // In use or gone: harmless, a header is rewritten whenever it is needed.
                }
            }
        }
    }

    private static FunctionVersionKey? Parse(string key) => FunctionVersionKey.TryParse(key);

    private static string VerificationKey(TemplateInfo template, string? poolIdentity)
        => $"{template.Key}/{template.SealedAt.ToUnixTimeMilliseconds()}/{poolIdentity}";

    [GeneratedRegex(@"^(?<key>.+@\d+)-\d+\.tpl$")]
    private static partial Regex HeaderName();
}
