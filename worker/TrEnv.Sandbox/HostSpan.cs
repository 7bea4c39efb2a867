namespace TrEnv.Sandbox;

/// <summary>
/// A step the sandbox host timed for a sampled request: it has no network of its own to export spans, so it reports
/// them in its reply and its worker exports them (service trenv-sandbox-host). <paramref name="Parent"/> is the index
/// of an earlier span of the same reply, or -1 for the request's own span.
/// </summary>
public sealed record HostSpan(string Name, long StartUnixMicros, long DurationMicros, int Parent, IReadOnlyList<KeyValuePair<string, string>> Attributes)
{
    private const int MaxSpans = 64;

    /// <summary>
    /// Whether a traceparent asks for recording (bit 0 of its flags), so a host reports spans only when they will be
    /// exported. Other bits may be set too: .NET marks the trace ids it generates random (0x02), so a trace a
    /// coordinator starts itself arrives with flags 03.
    /// </summary>
    public static bool Sampled(string? traceParent)
        => traceParent is { Length: 55 } && traceParent[52] == '-'
           && byte.TryParse(traceParent.AsSpan(53, 2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out var flags)
           && (flags & 1) == 1;

    public static long NowUnixMicros() => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) / 10;

    internal static void WriteAll(FrameWriter w, IReadOnlyList<HostSpan> spans)
    {
        w.I32(spans.Count);
        foreach (var s in spans)
        {
            w.Str(s.Name).I64(s.StartUnixMicros).I64(s.DurationMicros).I32(s.Parent);
            SandboxMessages.InstanceSpec.Pairs(w, s.Attributes);
        }
    }

    internal static IReadOnlyList<HostSpan> ReadAll(ref FrameReader r)
    {
        var count = r.I32();
        if (count is < 0 or > MaxSpans)
            throw new InvalidDataException($"A reply reports {count} spans; at most {MaxSpans} are allowed.");
        var spans = new HostSpan[count];
        for (var i = 0; i < count; i++)
        {
            var (name, start, duration, parent) = (r.Required(), r.I64(), r.I64(), r.I32());
            if (parent < -1 || parent >= i)
                throw new InvalidDataException($"Span {i} names parent {parent}, which is not an earlier span.");
            spans[i] = new HostSpan(name, start, duration, parent, SandboxMessages.InstanceSpec.Pairs(ref r, 32));
        }
        return spans;
    }
}
