using System.Buffers;
using System.Text;
using System.Text.Json;

namespace TrEnv.Sandbox;

/// <summary>
/// The sandbox host's structured log: one JSON object per stderr line, starting with <see cref="Prefix"/>,
/// which the worker re-logs with its node and the sandbox's pid. Free text on stderr stays crash diagnostics.
/// </summary>
public static class SandboxLog
{
    public const string Prefix = "{\"trenv\":\"sandbox\"";

    /// <summary>Writes one line: <paramref name="event"/> plus the fields that are not null.</summary>
    public static void Write(TextWriter to, string @event, string? invocationId, string? function, params (string Key, object? Value)[] fields)
        => to.WriteLine(Format(@event, invocationId, function, fields));

    public static string Format(string @event, string? invocationId, string? function, params (string Key, object? Value)[] fields)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("trenv", "sandbox");
            w.WriteString("event", @event);
            if (invocationId is not null)
                w.WriteString("invocationId", invocationId);
            if (function is not null)
                w.WriteString("function", function);
            foreach (var (key, value) in fields)
            {
                switch (value)
                {
                    case null:
                        break;
                    case long l:
                        w.WriteNumber(key, l);
                        break;
                    case int i:
                        w.WriteNumber(key, i);
                        break;
                    case bool b:
                        w.WriteBoolean(key, b);
                        break;
                    default:
                        w.WriteString(key, value.ToString());
                        break;
                }
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Reads a line written by <see cref="Write"/> back into its fields; null when it is not one.</summary>
    public static IReadOnlyList<KeyValuePair<string, object?>>? Parse(string line)
    {
        if (!line.StartsWith(Prefix, StringComparison.Ordinal))
            return null;
        try
        {
            using var doc = JsonDocument.Parse(line);
            var fields = new List<KeyValuePair<string, object?>>();
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.NameEquals("trenv"))
                    continue;
                object? value = p.Value.ValueKind switch
                {
                    JsonValueKind.Number when p.Value.TryGetInt64(out var n) => n,
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    JsonValueKind.String => p.Value.GetString(),
                    _ => p.Value.GetRawText(),
                };
                fields.Add(new(p.Name, value));
            }
            return fields;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
