using TrEnv.SandboxHost;

// The sandbox host: one process, one instance at a time, driven over stdin/stdout frames.
// Diagnostics go to stderr; stdout carries protocol frames only.
var workdir = args.Length == 2 && args[0] == "--workdir" ? args[1] : null;
if (workdir is null)
{
    await Console.Error.WriteLineAsync("usage: TrEnv.SandboxHost --workdir DIR");
    return 2;
}
using var host = new HostLoop(workdir);
return host.Run(Console.OpenStandardInput(), Console.OpenStandardOutput());
