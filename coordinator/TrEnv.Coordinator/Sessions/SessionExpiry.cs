using Akka.Actor;
using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;

namespace TrEnv.Coordinator.Sessions;

/// <summary>
/// Which sessions have sat in the pool past the expiry: paused ones by when they paused, lost ones that kept a
/// pause by when they were lost. Active sessions never expire (their idle timeout pauses them first).
/// </summary>
public static class SessionExpiry
{
    public static IReadOnlyList<string> Due(IEnumerable<SessionInfo> sessions, DateTimeOffset now, TimeSpan ttl)
        => [.. sessions.Where(s => s.State switch
        {
            SessionStates.Paused => s.PausedAt is { } at && now - at >= ttl,
            SessionStates.Lost => s.StoredBytes > 0 && now - Max(s.LastActiveAt, s.PausedAt ?? s.LastActiveAt) >= ttl,
            _ => false,
        }).Select(s => s.Id)];

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;
}

/// <summary>
/// Deletes, with their stored bytes, the sessions <see cref="SessionExpiry"/> finds due, when
/// <c>TRENV_SESSION_PAUSED_TTL_S</c> is set. Every coordinator sweeps its catalog every 30 s; a delete is
/// idempotent, so two coordinators deleting one session is harmless.
/// </summary>
public sealed class SessionExpirySweeper(NodeSettings settings, SessionCatalog catalog, IRequiredActor<SessionRegion> sessions,
    SessionAdmission admission, ILogger<SessionExpirySweeper> log) : BackgroundService
{
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(30);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (settings.SessionPausedTtlSeconds <= 0)
            return;
        var ttl = TimeSpan.FromSeconds(settings.SessionPausedTtlSeconds);
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(Math.Min(Period.TotalSeconds, Math.Max(1, ttl.TotalSeconds / 2))));
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            foreach (var id in SessionExpiry.Due(catalog.List(null, null), DateTimeOffset.UtcNow, ttl))
            {
                try
                {
                    var reply = await sessions.ActorRef.Ask<IProtocolMessage>(new SessionCommands.Delete(id), TimeSpan.FromSeconds(30), stoppingToken);
                    if (reply is SessionReplies.View)
                    {
                        admission.Forget(id);
                        log.LogInformation("Session {SessionId} expired: paused longer than {TtlSeconds} s (TRENV_SESSION_PAUSED_TTL_S); deleted with its stored delta", id, settings.SessionPausedTtlSeconds);
                    }
                }
                catch (Exception e) when (e is AskTimeoutException || (e is not OperationCanceledException && !stoppingToken.IsCancellationRequested))
                {
                    // The registry is moving (a coordinator failed): the next sweep tries again.
                }
            }
        }
    }
}
