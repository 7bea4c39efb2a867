using Microsoft.Extensions.Logging;

namespace TrEnv.Cluster;

/// <summary>
/// Every node logs to stdout, one JSON object per line by default: TrEnv's categories at TRENV_LOG_LEVEL, Akka's at
/// information, the other frameworks' at warning. Invocation lines carry an InvocationId, the same one the client got in X-TrEnv-Invocation-Id.
/// </summary>
public static class NodeLogging
{
    public static ILoggingBuilder AddTrEnvLogging(this ILoggingBuilder logging, NodeSettings settings)
    {
        logging.ClearProviders();
        if (settings.LogFormat == "json")
        {
            logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                o.IncludeScopes = false; // the invocation id is in each line's state; request scopes would triple its size
            });
        }
        else
        {
            logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
        }
        var level = settings.LogLevel switch
        {
            "trace" => LogLevel.Trace,
            "debug" => LogLevel.Debug,
            "warning" => LogLevel.Warning,
            "error" => LogLevel.Error,
            _ => LogLevel.Information,
        };
        logging.SetMinimumLevel(LogLevel.Warning);
        logging.AddFilter("TrEnv", level);
        // Akka's information lines are membership changes (joins, leaves, downing): worth keeping.
        logging.AddFilter("Akka", LogLevel.Information);
        return logging;
    }
}
