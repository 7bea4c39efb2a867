using System.Text.RegularExpressions;
using TrEnv.Contracts;

namespace TrEnv.Worker;

/// <summary>
/// What a deleted or replaced function version leaves on this node goes away: warm instances (idle ones now,
/// busy ones as they finish), template headers, and the modules and layers no live function uses.
/// </summary>
public sealed partial class SandboxManager
{
    // Function -> the lowest version still live; versions below it are forgotten.
    private readonly Dictionary<string, int> _forgotten = new(StringComparer.Ordinal);

    // Files waiting until no sandbox runs a forgotten version (a busy call may still read its module or layer).
    private readonly List<WorkerForget> _purges = [];

    public async Task<int> ForgetAsync(WorkerForget forget, CancellationToken ct)
    {
        List<Slot> victims;
        lock (_gate)
        {
            _forgotten[forget.Function] = Math.Max(_forgotten.GetValueOrDefault(forget.Function), forget.BelowVersion);
            victims = [.. _warm.Where(kv => IsForgottenLocked(kv.Key)).SelectMany(kv => kv.Value)];
            foreach (var slot in victims)
                Take(slot);
            foreach (var key in _localTemplates.Keys.Where(IsForgottenLocked).ToList())
                _localTemplates.Remove(key);
            _verified.RemoveWhere(v => IsForgottenLocked(v.Split('/')[0]));
            _purges.Add(forget);
        }
        await ResetToGenericAsync(victims, ct);
        DeleteTemplateHeaders();
        PurgeFiles();
        ReportMappings();
        return victims.Count;
    }

    private bool IsForgottenLocked(string key)
    {
        if (_forgotten.Count == 0)
            return false;
        var at = key.LastIndexOf('@');
        return at > 0 && int.TryParse(key.AsSpan(at + 1), out var version)
            && _forgotten.TryGetValue(key[..at], out var below) && version < below;
    }

    private async Task ReclaimForgottenAsync(Slot slot)
    {
        await ResetToGenericAsync([slot], CancellationToken.None);
        PurgeFiles();
        ReportMappings();
    }

    [GeneratedRegex(@"^(?<key>.+@\d+)-\d+\.tpl$")]
    private static partial Regex HeaderName();

    // Headers are only read at a load and written again from the registry's copy when needed: safe to delete.
    private void DeleteTemplateHeaders()
    {
        foreach (var path in Directory.EnumerateFiles(_templates, "*.tpl"))
        {
            var match = HeaderName().Match(Path.GetFileName(path));
            bool forgotten;
            lock (_gate)
                forgotten = match.Success && IsForgottenLocked(match.Groups["key"].Value);
            if (forgotten)
                TryDelete(path);
        }
    }

    // Modules and layers named by a forget, once no sandbox is running a forgotten version of its function.
    private void PurgeFiles()
    {
        List<WorkerForget> due;
        lock (_gate)
        {
            due = [.. _purges.Where(p => !_all.Any(s => s.Busy && s.Serving is { } serving && serving.StartsWith(p.Function + "@", StringComparison.Ordinal) && IsForgottenLocked(serving)))];
            foreach (var p in due)
                _purges.Remove(p);
        }
        foreach (var forget in due)
        {
            foreach (var sha in forget.Modules.Where(IsHash))
            {
                TryDelete(Path.Combine(_modules, sha + ".wasm"));
                TryDelete(Path.Combine(_modules, sha + ".cwasm"));
                _compiler.Forget(new ModuleHash(sha));
            }
            foreach (var sha in forget.Layers.Where(IsHash))
            {
                var directory = Path.Combine(_layers, sha);
                try
                {
                    // Renamed first, so a load never sees it half deleted; a load after this unpacks it again.
                    var doomed = Path.Combine(_layers, $".delete-{sha}-{Guid.NewGuid():N}");
                    Directory.Move(directory, doomed);
                    Directory.Delete(doomed, recursive: true);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Missing (never unpacked here) or in use: nothing to do.
                }
            }
        }
    }

    private static bool IsHash(string sha) => sha.Length == 64 && sha.All(char.IsAsciiHexDigitLower);

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"could not delete {path}: {e.Message}");
        }
    }
}
