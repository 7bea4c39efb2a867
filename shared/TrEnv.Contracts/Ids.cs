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
