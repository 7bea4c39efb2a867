using System.Globalization;
using System.Text.Json;

namespace TrEnv.Chaos;

/// <summary>Reporting: the run's summary and its JSON and number formats.</summary>
public sealed partial class ChaosRunner
{
    private ChaosSummary Summarise(DateTimeOffset started, IReadOnlyList<string> profiles, List<RoundSummary> rounds, List<string> final)
    {
        var records = _load.Records.ToList();
        var violations = rounds.SelectMany(r => r.Violations.Select(v => $"round {r.Round}: {v}")).Concat(final).ToList();
        return new ChaosSummary
        {
            Started = started,
            Ended = DateTimeOffset.UtcNow,
            Command = o.Command,
            Profile = string.Join(',', profiles),
            Engine = o.Engine,
            NetworkNamespaces = _nodes.Any(n => n.Node.Namespace is not null),
            RecoveryBoundSeconds = o.RecoveryBoundSeconds,
            Nodes = _nodes.Select(n => (object)new { service = n.Node.Service, kind = KindName(n.Node.Kind), address = n.Node.AkkaAddress, http = n.Node.HttpUrl, netns = n.Node.Namespace, container = (n as ContainerNode)?.Container, starts = n.Starts }).ToList(),
            Rounds = rounds,
            Requests = records.Count,
            Succeeded = records.Count(r => r.Outcome == "ok"),
            Failed = records.Count(r => r.Outcome != "ok"),
            WrongAnswers = records.Count(r => r.Outcome == "wrong") + final.Count(f => f.Contains(" wrong ", StringComparison.Ordinal)),
            Hung = records.Count(r => r.Outcome == "hung"),
            DeploysAcknowledged = _deploys.Count(d => d.Acknowledged),
            LostDeploys = violations.Count(v => v.Contains("lost deploy", StringComparison.Ordinal)),
            TemplatesSeen = _templates.Count,
            LostTemplates = violations.Count(v => v.Contains("lost templates", StringComparison.Ordinal)),
            MaxRecoverySeconds = rounds.Select(r => r.RecoverySeconds).DefaultIfEmpty(0).Max(),
            MaxLastFailedStartSeconds = rounds.Select(r => r.LastFailedStartSeconds).DefaultIfEmpty(0).Max(),
            RoundsOverBound = rounds.Count(r => (o.Engine == "docker" ? r.LastFailedStartSeconds : r.RecoverySeconds) > o.RecoveryBoundSeconds),
            Violations = violations,
            Ok = violations.Count == 0,
        };
    }

    public static string ToJson(ChaosSummary s)
        => JsonSerializer.Serialize(s, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase, DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull });

    public static string Seconds(double s) => s.ToString("0.00", CultureInfo.InvariantCulture);
}
