namespace TrEnv.Chaos;

/// <summary>A deploy as the client saw it; acknowledged when the coordinator answered 201.</summary>
public sealed record DeployRecord(string Name, ulong Salt, DateTimeOffset Start, DateTimeOffset End, bool Acknowledged, int Status, int Version, string? Sha256, string? Error);
