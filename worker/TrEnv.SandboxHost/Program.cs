using TrEnv.SandboxHost;

// Namespaces, mounts and overlays: the host runs on Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

// The sandbox host: one process, one instance at a time, driven over stdin/stdout frames.
// Diagnostics go to stderr; stdout carries protocol frames only.
// --own-mount-namespace: started under unshare, so mounts (the /tmp overlay) stay private to this sandbox.
// --rootfs BASE [--bind PATH]... [--bind-ro PATH]...: pivot into a root of BASE plus exactly those paths.
// --compile DIR HASH ...: compile one module into the module cache and exit (see CompileMode); may follow
// the arguments the namespace wrapper adds.
if (Array.IndexOf(args, "--compile") is var compileAt and >= 0)
    return CompileMode.Run(args[(compileAt + 1)..]);
var ownMountNamespace = false;
string? workdir = null, rootfs = null;
List<string> binds = [], readOnlyBinds = [];
for (var i = 0; i < args.Length; i++)
{
    var value = i + 1 < args.Length ? args[i + 1] : null;
    switch (args[i])
    {
        case "--own-mount-namespace":
            ownMountNamespace = true;
            continue;
        case "--workdir" when value is not null:
            workdir = value;
            break;
        case "--rootfs" when value is not null:
            rootfs = value;
            break;
        case "--bind" when value is not null:
            binds.Add(value);
            break;
        case "--bind-ro" when value is not null:
            readOnlyBinds.Add(value);
            break;
        default:
            workdir = null;
            i = args.Length;
            continue;
    }
    i++;
}
if (workdir is null || (rootfs is not null && !ownMountNamespace))
{
    await Console.Error.WriteLineAsync("usage: TrEnv.SandboxHost [--own-mount-namespace [--rootfs BASE [--bind PATH]... [--bind-ro PATH]...]] --workdir DIR");
    return 2;
}
if (rootfs is not null)
{
    try
    {
        SandboxRoot.Enter(workdir, rootfs, binds, readOnlyBinds);
    }
    catch (IOException e)
    {
        await Console.Error.WriteLineAsync($"sandbox: {e.Message}");
        return 4;
    }
}
using var host = new HostLoop(workdir, ownMountNamespace);
return host.Run(Console.OpenStandardInput(), Console.OpenStandardOutput());
