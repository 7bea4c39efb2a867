using System.Globalization;

namespace TrEnv.Chaos;

/// <summary>
/// One compose service as its container: faults through the docker CLI (kill, stop, start, pause, network
/// disconnect), and exits or restarts the runner did not cause noticed from the engine's restart count.
/// While the runner holds a node down its restart policy is off, so that the engine does not bring it back
/// before the runner says so.
/// </summary>
public sealed class ContainerNode(LocalNode node, string container, string network, Action<string> log) : IChaosNode
{
    private int _restartCount;
    private DateTimeOffset _checked;
    private bool _running = true;

    public LocalNode Node { get; } = node;
    public string Container { get; } = container;
    public int Starts { get; private set; } = 1;
    public DateTimeOffset StartedAt { get; private set; } = DateTimeOffset.UtcNow;
    public List<string> UnplannedExits { get; } = [];

    /// <summary>True while the container runs (a paused one runs too); refreshed from the engine at most every 500 ms.</summary>
    public bool Running
    {
        get
        {
            if (DateTimeOffset.UtcNow - _checked > TimeSpan.FromMilliseconds(500))
                RefreshAsync().GetAwaiter().GetResult();
            return _running;
        }
    }

    /// <summary>Reads the container's state; a restart count that grew without the runner is an unplanned exit.</summary>
    public async Task RefreshAsync()
    {
        var (code, output, _) = await Docker.RunAsync("inspect", "-f", "{{.State.Running}} {{.RestartCount}} {{.State.ExitCode}}", Container);
        _checked = DateTimeOffset.UtcNow;
        if (code != 0)
        {
            _running = false;
            return;
        }
        var parts = output.Split(' ');
        _running = parts[0] == "true";
        var restarts = int.Parse(parts[1], CultureInfo.InvariantCulture);
        if (restarts > _restartCount)
        {
            UnplannedExits.Add($"{DateTimeOffset.UtcNow:O} restarted by the engine after exit {parts[2]} ({restarts - _restartCount} time(s))");
            log($"{Node.Service} exited by itself (exit {parts[2]}); the engine restarted it");
            _restartCount = restarts;
            Starts++;
            StartedAt = DateTimeOffset.UtcNow;
        }
    }

    public async Task InitAsync()
    {
        _restartCount = int.Parse(await Docker.CheckAsync("inspect", "-f", "{{.RestartCount}}", Container), CultureInfo.InvariantCulture);
        _checked = DateTimeOffset.UtcNow;
    }

    public void Start()
    {
        Docker.CheckAsync("start", Container).GetAwaiter().GetResult();
        Docker.CheckAsync("update", "--restart", "unless-stopped", Container).GetAwaiter().GetResult();
        _restartCount = int.Parse(Docker.CheckAsync("inspect", "-f", "{{.RestartCount}}", Container).GetAwaiter().GetResult(), CultureInfo.InvariantCulture);
        _running = true;
        _checked = DateTimeOffset.UtcNow;
        Starts++;
        StartedAt = DateTimeOffset.UtcNow;
    }

    /// <summary>KILL: <c>docker kill</c> (SIGKILL to the container's init, so everything in it dies at once). TERM: <c>docker stop</c>.</summary>
    public async Task SignalAsync(int signal, TimeSpan wait)
    {
        await Docker.CheckAsync("update", "--restart", "no", Container);
        if (signal == 9)
            await Docker.CheckAsync("kill", "--signal", "KILL", Container);
        else
            await Docker.CheckAsync("stop", "--time", ((int)wait.TotalSeconds).ToString(CultureInfo.InvariantCulture), Container);
        _running = false;
        _checked = DateTimeOffset.UtcNow;
    }

    /// <summary><c>docker restart</c>: a graceful stop and a start, as an operator's restart does.</summary>
    public async Task RestartAsync()
    {
        await Docker.CheckAsync("restart", "--time", "10", Container);
        _restartCount = int.Parse(await Docker.CheckAsync("inspect", "-f", "{{.RestartCount}}", Container), CultureInfo.InvariantCulture);
        Starts++;
        StartedAt = DateTimeOffset.UtcNow;
    }

    /// <summary>Freezes every process of the container (cgroup freezer): it answers nothing, yet its address and its kernel's TCP stack stay.</summary>
    public async Task PauseAsync()
    {
        // The cgroup v1 freezer gives up ("unable to freeze") when a task is caught in an uninterruptible wait,
        // such as a parent in vfork while a sandbox process starts: those windows are short, so try again.
        for (var attempt = 1; ; attempt++)
        {
            var (code, _, error) = await Docker.RunAsync("pause", Container);
            if (code == 0)
                return;
            if (attempt == 5 || !error.Contains("unable to freeze", StringComparison.Ordinal))
                throw new InvalidOperationException($"docker pause {Container} failed ({code}): {error}");
            log($"docker pause {Node.Service}: {error}; trying again");
            await Task.Delay(200);
        }
    }

    public Task UnpauseAsync() => Docker.CheckAsync("unpause", Container);

    /// <summary>Takes the container off the compose network: its address goes silent for everyone.</summary>
    public Task DisconnectAsync() => Docker.CheckAsync("network", "disconnect", network, Container);

    /// <summary>Puts it back under its service name, as compose attached it.</summary>
    public Task ConnectAsync() => Docker.CheckAsync("network", "connect", "--alias", Node.Service, network, Container);

    /// <summary>Its address on the compose network.</summary>
    public Task<string> AddressAsync()
        => Docker.CheckAsync("inspect", "-f", $"{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}", Container);

    /// <summary>The engine's view of its compose health check.</summary>
    public async Task<bool> HealthyAsync()
    {
        var (code, output, _) = await Docker.RunAsync("inspect", "-f", "{{.State.Running}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", Container);
        return code == 0 && output is "true healthy" or "true none";
    }
}
