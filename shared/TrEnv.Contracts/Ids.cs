namespace TrEnv.Contracts;

/// <summary>A module's identity: the lowercase hex SHA-256 of its bytes.</summary>
public readonly record struct ModuleHash(string Hex)
{
    public static ModuleHash Of(ReadOnlySpan<byte> wasm)
        => new(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(wasm)));

    public static bool IsValid(string hex)
        => hex.Length == 64 && hex.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');

    public override string ToString() => Hex;
}

/// <summary>
/// One version of one function: what a warm instance, a template and a placement hint are keyed by.
/// Its text form, <c>name@version</c>, is the template key stored in the journal.
/// </summary>
public readonly record struct FunctionVersionKey(string Name, int Version)
{
    public override string ToString() => $"{Name}@{Version}";

    /// <summary>Reads <c>name@version</c>; null for any other text (a session's owner key, say).</summary>
    public static FunctionVersionKey? TryParse(string? text)
    {
        var at = text?.LastIndexOf('@') ?? -1;
        return at > 0 && int.TryParse(text!.AsSpan(at + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var version)
            ? new FunctionVersionKey(text![..at], version)
            : null;
    }
}
