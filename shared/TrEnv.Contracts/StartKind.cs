namespace TrEnv.Contracts;

/// <summary>How an instance came to serve an invocation (the X-TrEnv-Start header).</summary>
public enum StartKind : byte
{
    Warm = 0,
    Template = 1,
    Cold = 2,
    /// <summary>Restored by copying the template's bytes: the CRIU-like baseline, never chosen by placement.</summary>
    CopyTemplate = 3,

    /// <summary>A paused agent session restored from its delta over its template.</summary>
    Resume = 4,
}

/// <summary>How an invocation got its sandbox (the X-TrEnv-Sandbox header).</summary>
public enum SandboxOrigin : byte
{
    /// <summary>A warm instance of the same version (REUSE).</summary>
    Reused = 0,

    /// <summary>A sandbox that ran another function, or the LRU warm instance switched (SWITCH).</summary>
    Repurposed = 1,

    /// <summary>A sandbox started for this call, or a pre-started one never used (NEW).</summary>
    New = 2,

    /// <summary>The sandbox an agent session holds.</summary>
    Session = 3,
}

public static class StartKindNames
{
    public static string ToHeader(this StartKind kind) => kind switch
    {
        StartKind.Warm => "warm",
        StartKind.Template => "template",
        StartKind.CopyTemplate => "template",
        StartKind.Resume => "resume",
        _ => "cold",
    };

    /// <summary>Reads a header value back (a result encoded before the kinds were typed).</summary>
    public static StartKind FromHeader(string text) => text switch
    {
        "warm" => StartKind.Warm,
        "template" => StartKind.Template,
        "resume" => StartKind.Resume,
        _ => StartKind.Cold,
    };

    public static string ToHeader(this SandboxOrigin origin) => origin switch
    {
        SandboxOrigin.Reused => "reused",
        SandboxOrigin.Repurposed => "repurposed",
        SandboxOrigin.Session => "session",
        _ => "new",
    };

    public static SandboxOrigin OriginFromHeader(string text) => text switch
    {
        "reused" => SandboxOrigin.Reused,
        "repurposed" => SandboxOrigin.Repurposed,
        "session" => SandboxOrigin.Session,
        _ => SandboxOrigin.New,
    };
}
