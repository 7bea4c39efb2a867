namespace TrEnv.Chaos;

/// <summary>One round: the fault, how long until every request succeeded again, and what broke an invariant.</summary>
public sealed record RoundSummary
{
    public int Round { get; init; }
    public string Fault { get; init; } = "";
    public string Target { get; init; } = "";
    public string? Signal { get; init; }
    public bool Restarted { get; init; }
    public DateTimeOffset At { get; init; }
    /// <summary>From the fault until the last failed request ended; 0 when none failed.</summary>
    public double RecoverySeconds { get; init; }
    /// <summary>When the last failed request started, after the fault: requests started later all succeeded (the docker engine's bound).</summary>
    public double LastFailedStartSeconds { get; init; }
    public int Succeeded { get; init; }
    public int Failed { get; init; }
    /// <summary>Requests sent to another coordinator because the first refused the connection (they never reached it).</summary>
    public int Rerouted { get; init; }
    public Dictionary<string, int> FailedBy { get; init; } = [];
    /// <summary>Latency of the successful invocations of the round as the client saw it: p50, p99, max (ms).</summary>
    public double[] OkLatencyMs { get; init; } = [];
    public double MaxFailedRequestSeconds { get; init; }
    /// <summary>A few failed requests as the client saw them: when (seconds after the fault), where, and the answer.</summary>
    public List<string> FailureSamples { get; init; } = [];
    public double? NodeBackSeconds { get; init; }
    public double? MembershipConvergedSeconds { get; init; }
    public int DeploysAcknowledged { get; init; }
    public int DeploysFailed { get; init; }
    public double MaxDeploySeconds { get; init; }
    public List<string> DeployFailures { get; init; } = [];
    public int TemplatesKnown { get; init; }
    public List<string> UnplannedExits { get; init; } = [];
    public List<string> Violations { get; init; } = [];
}

public sealed record ChaosSummary
{
    public DateTimeOffset Started { get; init; }
    public DateTimeOffset Ended { get; init; }
    public string Command { get; init; } = "";
    public string Profile { get; init; } = "";
    public string Engine { get; init; } = "local";
    public bool NetworkNamespaces { get; init; }
    public double RecoveryBoundSeconds { get; init; }
    public List<object> Nodes { get; init; } = [];
    public List<RoundSummary> Rounds { get; init; } = [];
    public int Requests { get; init; }
    public int Succeeded { get; init; }
    public int Failed { get; init; }
    public int WrongAnswers { get; init; }
    public int Hung { get; init; }
    public int DeploysAcknowledged { get; init; }
    public int LostDeploys { get; init; }
    public int TemplatesSeen { get; init; }
    public int LostTemplates { get; init; }
    public double MaxRecoverySeconds { get; init; }
    public double MaxLastFailedStartSeconds { get; init; }
    public int RoundsOverBound { get; init; }
    public List<string> Violations { get; init; } = [];
    public bool Ok { get; init; }
}
