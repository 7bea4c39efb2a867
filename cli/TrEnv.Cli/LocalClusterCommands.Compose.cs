using System.Diagnostics;

namespace TrEnv.Cli;

/// <summary>
/// <c>trenv up --compose</c> and <c>trenv down --compose</c>: compose/docker-compose.yml on a Docker engine through
/// scripts/images.sh (engine, base images or stand-ins, the TrEnv images) and scripts/compose.sh (whichever of
/// <c>docker compose</c> and <c>docker-compose</c> is installed), then the same readiness and sample deploys as
/// the local cluster.
/// </summary>
internal sealed partial class LocalClusterCommands
{
    private async Task<int> ComposeUp(string root, string profile, string? token, bool noBuild, CancellationToken ct)
    {
        if (profile is not ("cxl" or "rdma"))
            return Usage($"--profile is cxl or rdma, not \"{profile}\".");
        var env = new List<(string, string)> { ("COMPOSE_PROFILES", profile) };
        if (noBuild)
            env.Add(("TRENV_IMAGES_NO_BUILD", "1"));
        stdout.WriteLine("preparing the engine and the images (scripts/images.sh)…");
        if (await Stream(root, "scripts/images.sh", [], env, ct) is not 0)
            return Fail("preparing the images failed; its output is above.");
        stdout.WriteLine($"starting compose/docker-compose.yml (profile {profile})…");
        if (await Stream(root, "scripts/compose.sh", ["up", "-d", "--no-build", "--remove-orphans"], env, ct) is not 0)
            return Fail("docker compose up failed; its output is above (scripts/compose.sh logs SERVICE shows a service's log).");

        // The services compose started: docker-compose 1.29's config --services and ps --services ignore profiles.
        var ids = (await Capture(root, "scripts/compose.sh", ["ps", "-q"], env, ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var services = ids.Length == 0 ? [] : (await Capture(root, "docker", ["inspect", "-f", "{{index .Config.Labels \"com.docker.compose.service\"}}", .. ids], [], ct))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var nodes = services.Count(s => s != "postgres");
        var workers = services.Count(s => s.Contains("worker", StringComparison.Ordinal));
        var url = $"http://127.0.0.1:{ComposeVariable(root, "TRENV_HTTP_PUBLISH", "8080")}";
        var second = $"http://127.0.0.1:{ComposeVariable(root, "TRENV_HTTP_PUBLISH_2", "8081")}";
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromMinutes(5);
        var last = "";
        while (true)
        {
            var (joined, workersUp, poolUp, ready) = await Progress(http, url);
            var secondReady = await Answers(http, second + "/readyz");
            var line = $"nodes joined {joined}/{nodes}, workers reporting {workersUp}/{workers}, pool {(poolUp ? "answering" : "not yet")}, coordinators ready {(ready ? 1 : 0) + (secondReady ? 1 : 0)}/2";
            if (line != last)
                stdout.WriteLine(line);
            last = line;
            if (ready && secondReady && joined >= nodes && workersUp >= workers && poolUp)
                break;
            if (DateTimeOffset.UtcNow > deadline)
                return Fail($"the compose cluster was not ready within 5 minutes ({line}); scripts/compose.sh ps and scripts/compose.sh logs show why.");
            await Task.Delay(500, ct);
        }

        // The samples ship in the coordinator image (/app/guests), so the host needs no guest toolchain.
        var container = (await Capture(root, "scripts/compose.sh", ["ps", "-q", "coordinator-1"], env, ct)).Trim();
        var guests = Path.Combine(Path.GetTempPath(), $"trenv-guests-{Environment.ProcessId}");
        try
        {
            if (container.Length == 0 || await Stream(root, "docker", ["cp", $"{container}:/app/guests", guests], [], ct) is not 0)
                return Fail("could not copy the sample guests out of coordinator-1.");
            if (await DeploySamples(http, url, token, guests, guests, ct) is { } failed)
                return Fail(failed);
        }
        finally
        {
            if (Directory.Exists(guests))
                Directory.Delete(guests, recursive: true);
        }
        stdout.WriteLine($"TrEnv ready: {url}");
        stdout.WriteLine($"  second coordinator: {second}");
        stdout.WriteLine($"  trenv invoke hello -d world --url {url}");
        stdout.WriteLine("  trenv down --compose removes its containers, networks and volumes.");
        return ExitCodes.Ok;
    }

    private async Task<int> ComposeDown(string root, CancellationToken ct)
    {
        // Both profiles, so that whichever one is running goes.
        var code = await Stream(root, "scripts/compose.sh", ["down", "-v", "--remove-orphans", "--timeout", "20"], [("COMPOSE_PROFILES", "cxl,rdma")], ct);
        if (code is not 0)
            return Fail("docker compose down failed; its output is above.");
        stdout.WriteLine("removed the compose cluster (containers, networks, volumes)");
        return ExitCodes.Ok;
    }

    /// <summary>A compose variable as compose resolves it: the environment, then compose/.env, then the default.</summary>
    private static string ComposeVariable(string root, string name, string fallback)
    {
        if (Environment.GetEnvironmentVariable(name) is { Length: > 0 } set)
            return set;
        var envFile = Path.Combine(root, "compose", ".env");
        if (File.Exists(envFile))
            foreach (var line in File.ReadLines(envFile))
                if (line.StartsWith(name + "=", StringComparison.Ordinal) && line[(name.Length + 1)..].Trim() is { Length: > 0 } value)
                    return value;
        return fallback;
    }

    /// <summary>Runs a command with its output passed through as it comes.</summary>
    private async Task<int> Stream(string root, string file, IEnumerable<string> args, IEnumerable<(string Key, string Value)> env, CancellationToken ct)
    {
        var info = new ProcessStartInfo(file.Contains('/') ? Path.Combine(root, file) : file, args)
        {
            WorkingDirectory = root, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var (k, v) in env)
            info.Environment[k] = v;
        using var p = Process.Start(info)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) stdout.WriteLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) stdout.WriteLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        await p.WaitForExitAsync(ct);
        return p.ExitCode;
    }

    private static async Task<string> Capture(string root, string file, IEnumerable<string> args, IEnumerable<(string Key, string Value)> env, CancellationToken ct)
    {
        var info = new ProcessStartInfo(file.Contains('/') ? Path.Combine(root, file) : file, args) { WorkingDirectory = root, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (k, v) in env)
            info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync(ct);
        _ = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        return await output;
    }
}
