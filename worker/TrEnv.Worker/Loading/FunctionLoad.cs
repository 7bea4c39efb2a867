using TrEnv.Contracts;
using TrEnv.Worker.Artifacts;

namespace TrEnv.Worker.Loading;

/// <summary>What a load needs: the version, its prepared files, and the template the coordinator knows of (if any).</summary>
public sealed record FunctionLoad(FunctionVersionKey Key, FunctionVersion Version, PreparedVersion Prepared, TemplateInfo? Template, string InvocationId);

/// <summary>A finished load: how (cold, template or resume), and the template it captured (a cold start that was granted the capture).</summary>
public sealed record LoadOutcome(StartKind Kind, TemplateInfo? Captured);
