using TrEnv.Contracts;
using TrEnv.Worker.Artifacts;

namespace TrEnv.Worker.Loading;

/// <summary>How an instance came to be: the X-TrEnv-Start of a call that loaded one.</summary>
public enum LoadKind
{
    Cold,
    Template,
    Resume,
}

/// <summary>What a load needs: the version, its prepared files, and the template the coordinator knows of (if any).</summary>
public sealed record FunctionLoad(FunctionVersionKey Key, FunctionVersion Version, PreparedVersion Prepared, TemplateInfo? Template, string InvocationId);

/// <summary>A finished load: how, and the template it captured (a cold start that was granted the capture).</summary>
public sealed record LoadOutcome(LoadKind Kind, TemplateInfo? Captured);

public static class LoadKindNames
{
    public static string ToWire(this LoadKind kind) => kind switch
    {
        LoadKind.Template => "template",
        LoadKind.Resume => "resume",
        _ => "cold",
    };
}
