using Microsoft.Extensions.Logging;
using TrEnv.Sandbox;

namespace TrEnv.Worker.Reporting;

/// <summary>
/// Re-logs a sandbox host's structured lines with the node and the sandbox's pid, so one invocation id finds
/// the coordinator's, the worker's and the sandbox's lines alike.
/// </summary>
public sealed class SandboxLogRelay(string node, ILogger log)
{
    public void OnLine(SandboxProcess process, string line)
    {
        if (SandboxLog.Parse(line) is not { } fields || !log.IsEnabled(LogLevel.Information))
            return;
        var state = new SandboxLogState { new("Node", node), new("Sandbox", process.Pid) };
        foreach (var (k, v) in fields)
            state.Add(new(char.ToUpperInvariant(k[0]) + k[1..], v));
        var failed = fields.Any(f => f.Key == "event" && f.Value is string e && e.EndsWith("-failed", StringComparison.Ordinal));
        log.Log(failed ? LogLevel.Warning : LogLevel.Information, new EventId(10, "sandbox"), state, null, static (s, _) => s.ToString());
    }

    // The fields become the JSON line's State; the message reads them as key=value.
    private sealed class SandboxLogState : List<KeyValuePair<string, object?>>
    {
        public override string ToString() => "Sandbox " + string.Join(' ', this.Select(kv => $"{kv.Key}={kv.Value}"));
    }
}
