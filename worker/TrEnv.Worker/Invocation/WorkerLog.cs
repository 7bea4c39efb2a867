using Microsoft.Extensions.Logging;
using TrEnv.Cluster;
using TrEnv.Worker.Placement;

namespace TrEnv.Worker.Invocation;

/// <summary>The worker's invocation log lines and the sentences of its refusals.</summary>
public static partial class WorkerLog
{
    public static string NoRoomMessage(NodeSettings settings, NoRoom why) => why == NoRoom.Memory
        ? $"Worker {settings.Name} is at its memory bound (TRENV_WORKER_MEMORY_MB={settings.WorkerMemoryMb}) with no idle instance to evict."
        : $"Worker {settings.Name} has no free sandbox (all {settings.MaxSandboxes} busy).";

    /// <summary>Warm calls log at debug (one line per call costs throughput); every other start at information.</summary>
    [LoggerMessage(EventId = 1,
        Message = "Invocation {InvocationId} of {Function} v{Version}: {Start} start ({SandboxKind} sandbox {Pid}), startup {StartupUs} µs, exec {ExecUs} µs")]
    public static partial void Invoked(ILogger log, LogLevel level, string invocationId, string function, int version, string start, string sandboxKind, int pid, long startupUs, long execUs);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "Invocation {InvocationId} of {Function} v{Version} failed ({Kind}, {Start} start): {Error}")]
    public static partial void Failed(ILogger log, string invocationId, string function, int version, string kind, string start, string error);
}
