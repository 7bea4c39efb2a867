using Akka.Actor;
using Akka.Hosting;
using TrEnv.Contracts;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Observability;

/// <summary>
/// Asks the memory pool for its usage once a second, so gauges read a recent value at scrape time without an
/// ask on the scrape path. <see cref="Last"/> is null until the pool first answers, and again after it stops answering.
/// </summary>
public sealed class PoolUsageSampler(IRequiredActor<PoolProxy> pool) : BackgroundService
{
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan Stale = TimeSpan.FromSeconds(10);
    private volatile Sample? _last;

    public PoolReplies.Usage? Last => _last is { } s && DateTimeOffset.UtcNow - s.At < Stale ? s.Usage : null;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Period);
        do
        {
            try
            {
                var usage = await pool.ActorRef.Ask<PoolReplies.Usage>(new PoolCommands.Stats(PoolCommands.DefaultPool), TimeSpan.FromSeconds(2), stoppingToken);
                _last = new Sample(usage, DateTimeOffset.UtcNow);
            }
            catch (AskTimeoutException)
            {
                // The pool is away; the gauges go quiet once the last sample is stale.
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The actor system is still starting or already stopping: try again next tick.
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    private sealed record Sample(PoolReplies.Usage Usage, DateTimeOffset At);
}
