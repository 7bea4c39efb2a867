using System.Diagnostics;

namespace TrEnv.Chaos;

/// <summary>
/// One node as a real process (in its own network namespace when it has one), its output appended to
/// <c>logs/SERVICE.log</c> across restarts. Exits the runner did not cause are restarted, as compose's
/// <c>restart: unless-stopped</c> would.
/// </summary>
public sealed class NodeProcess(LocalNode node, string logDirectory, Action<string> log) : IChaosNode
{
    private Process? _process;
    // True from the runner's Start until its SignalAsync: the supervisor restarts only nodes that are wanted.
    private volatile bool _wanted;

    public LocalNode Node { get; } = node;
    public int? Pid => _process is { HasExited: false } p ? p.Id : null;
    public bool Running => _process is { HasExited: false };
    public DateTimeOffset StartedAt { get; private set; }
    public int Starts { get; private set; }

    /// <summary>Exits nobody asked for, with their exit codes (a node that downed itself, a crash).</summary>
    public List<string> UnplannedExits { get; } = [];

    public void Start()
    {
        _wanted = true;
        Launch();
    }

    private void Launch()
    {
        if (Running)
            throw new InvalidOperationException($"{Node.Service} is already running.");
        Directory.CreateDirectory(logDirectory);
        Directory.CreateDirectory(Node.DataDirectory);
        var logFile = Path.Combine(logDirectory, Node.Service + ".log");
        File.AppendAllText(logFile, $"==== trenv-chaos: start {Starts + 1} at {DateTimeOffset.UtcNow:O} ====\n");
        var command = new List<string>();
        // nsenter switches only the network namespace; `ip netns exec` would also remount /sys and hide the cgroup tree.
        if (Node.Namespace is { } ns)
            command.AddRange(["nsenter", $"--net=/run/netns/{ns}", "--"]);
        command.AddRange(["dotnet", Node.Dll]);
        // sh execs the command chain (nsenter execs too), so the PID is the node's own.
        var info = new ProcessStartInfo("sh") { UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("exec \"$@\" >>\"$TRENV_CHAOS_LOG\" 2>&1 </dev/null");
        info.ArgumentList.Add("sh");
        foreach (var part in command)
            info.ArgumentList.Add(part);
        foreach (var key in info.Environment.Keys.Where(k => k.StartsWith("TRENV_", StringComparison.Ordinal)).ToList())
            info.Environment.Remove(key);
        foreach (var (key, value) in Node.Environment)
            info.Environment[key] = value;
        info.Environment["TRENV_CHAOS_LOG"] = logFile;
        _process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {Node.Service}.");
        _process.EnableRaisingEvents = true;
        var started = _process;
        _process.Exited += (_, _) =>
        {
            if (_wanted && ReferenceEquals(started, _process))
            {
                var code = started.ExitCode;
                UnplannedExits.Add($"{DateTimeOffset.UtcNow:O} exit {code}");
                log($"{Node.Service} exited by itself (code {code}); restarting it as compose would");
                _ = Task.Delay(1000).ContinueWith(_ =>
                {
                    if (_wanted && ReferenceEquals(started, _process))
                        Launch();
                }, TaskScheduler.Default);
            }
        };
        StartedAt = DateTimeOffset.UtcNow;
        Starts++;
    }

    /// <summary>Sends a signal (9 or 15) and waits for the process to end; it stays down until <see cref="Start"/>.</summary>
    public async Task SignalAsync(int signal, TimeSpan wait)
    {
        _wanted = false;
        var p = _process;
        if (p is null || p.HasExited)
            return;
        _ = Tmds.Linux.LibC.kill(p.Id, signal);
        using var timeout = new CancellationTokenSource(wait);
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            log($"{Node.Service} did not exit within {wait.TotalSeconds:0} s of signal {signal}; killing it");
            _ = Tmds.Linux.LibC.kill(p.Id, 9);
            await p.WaitForExitAsync(CancellationToken.None);
        }
    }
}
