using System.Globalization;
using System.Text;

namespace TrEnv.Cli;

/// <summary>
/// Guest-written text made safe to print on a terminal: control characters (escape sequences included, C0,
/// DEL and C1) become visible <c>\xNN</c> / <c>\uNNNN</c> escapes, so a guest cannot move the cursor, retitle
/// the window or hide lines. Tabs stay.
/// </summary>
public static class TerminalText
{
    public static string Safe(string? text)
    {
        if (string.IsNullOrEmpty(text))
            return "";
        StringBuilder? escaped = null;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            var control = c != '\t' && (c < 0x20 || c == 0x7f || c is >= '\u0080' and <= '\u009f' || c is '\u2028' or '\u2029' or '\u202e' or '\u202d');
            if (!control)
            {
                escaped?.Append(c);
                continue;
            }
            escaped ??= new StringBuilder(text.Length + 16).Append(text, 0, i);
            escaped.Append(c <= 0xff ? string.Create(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}") : string.Create(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}"));
        }
        return escaped?.ToString() ?? text;
    }
}
