namespace TrEnv.Contracts;

/// <summary>How an instance came to serve an invocation (the X-TrEnv-Start header).</summary>
public enum StartKind : byte
{
    Warm = 0,
    Template = 1,
    Cold = 2,
    /// <summary>Restored by copying the template's bytes: the CRIU-like baseline, never chosen by placement.</summary>
    CopyTemplate = 3,
}

public static class StartKindNames
{
    public static string ToHeader(this StartKind kind) => kind switch
    {
        StartKind.Warm => "warm",
        StartKind.Template => "template",
        StartKind.CopyTemplate => "template",
        _ => "cold",
    };
}
