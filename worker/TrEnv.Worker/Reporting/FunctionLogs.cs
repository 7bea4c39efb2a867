using System.Text;
using TrEnv.Contracts;

namespace TrEnv.Worker.Reporting;

/// <summary>
/// What each function's guests wrote to stdout and stderr on this worker, kept as lines in a bounded ring per
/// function (oldest dropped first), for the most recently active functions only. A log, not an archive.
/// </summary>
public sealed class FunctionLogs(string node, int maxBytesPerFunction = 256 * 1024, int maxFunctions = 512)
{
    private readonly Dictionary<string, Ring> _rings = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public void Append(string function, int version, byte[] stdout, byte[] stderr)
    {
        if (stdout.Length == 0 && stderr.Length == 0)
            return;
        var at = DateTimeOffset.UtcNow;
        lock (_gate)
        {
            if (!_rings.TryGetValue(function, out var ring))
            {
                if (_rings.Count >= maxFunctions)
                    _rings.Remove(_rings.MinBy(kv => kv.Value.LastWrite).Key);
                _rings[function] = ring = new Ring();
            }
            ring.LastWrite = at;
            foreach (var (stream, bytes) in new[] { ("stdout", stdout), ("stderr", stderr) })
            {
                foreach (var text in Lines(bytes))
                {
                    ring.Lines.Enqueue(new LogLine(at, node, version, stream, text));
                    ring.Bytes += text.Length + 32;
                }
            }
            while (ring.Bytes > maxBytesPerFunction && ring.Lines.TryDequeue(out var dropped))
                ring.Bytes -= dropped.Text.Length + 32;
        }
    }

    /// <summary>The last <paramref name="maxLines"/> lines of the function, oldest first.</summary>
    public IReadOnlyList<LogLine> Tail(string function, int maxLines)
    {
        lock (_gate)
            return _rings.TryGetValue(function, out var ring) ? ring.Lines.Skip(Math.Max(0, ring.Lines.Count - maxLines)).ToList() : [];
    }

    private static IEnumerable<string> Lines(byte[] bytes)
    {
        if (bytes.Length == 0)
            return [];
        var text = Encoding.UTF8.GetString(bytes);
        var lines = text.Split('\n');
        return text.EndsWith('\n') ? lines[..^1] : lines;
    }

    private sealed class Ring
    {
        public Queue<LogLine> Lines { get; } = new();
        public long Bytes;
        public DateTimeOffset LastWrite;
    }
}
