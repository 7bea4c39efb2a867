using TrEnv.SandboxHost;

// The sandbox host: one process, one instance at a time, driven over stdin/stdout frames.
// Diagnostics go to stderr; stdout carries protocol frames only.
// --own-mount-namespace: started under unshare, so mounts (the /tmp overlay) stay private to this sandbox.
var ownMountNamespace = args.Contains("--own-mount-namespace");
var at = Array.IndexOf(args, "--workdir");
var workdir = at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
if (workdir is null)
{
    await Console.Error.WriteLineAsync("usage: TrEnv.SandboxHost [--own-mount-namespace] --workdir DIR");
    return 2;
}
using var host = new HostLoop(workdir, ownMountNamespace);
return host.Run(Console.OpenStandardInput(), Console.OpenStandardOutput());
