using System.Diagnostics;

namespace TrEnv.Chaos;

/// <summary>The docker CLI, one command at a time.</summary>
public static class Docker
{
    public static async Task<(int Code, string Output, string Error)> RunAsync(params string[] args)
    {
        var info = new ProcessStartInfo("docker") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            info.ArgumentList.Add(a);
        using var p = Process.Start(info) ?? throw new InvalidOperationException("Could not run docker.");
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, (await output).Trim(), (await error).Trim());
    }

    /// <summary>Runs a docker command and returns its output; a failure throws with what docker said.</summary>
    public static async Task<string> CheckAsync(params string[] args)
    {
        var (code, output, error) = await RunAsync(args);
        return code == 0 ? output : throw new InvalidOperationException($"docker {string.Join(' ', args)} failed ({code}): {error}");
    }
}
