using TrEnv.Contracts;
using static TrEnv.Coordinator.Api.ApiErrors;

namespace TrEnv.Coordinator.Api;

/// <summary>
/// Bounds what uploads cost a coordinator: at most <c>TRENV_MAX_UPLOADS</c> module or layer bodies are in memory at
/// once, a request waits at most <see cref="Wait"/> for its turn (then 503 with Retry-After), and once admitted its
/// body must arrive within <see cref="BodyDeadline"/> (then 408), so a slow client cannot hold a turn.
/// </summary>
public sealed class UploadGate(int slots)
{
    public static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan BodyDeadline = TimeSpan.FromSeconds(120);

    private readonly SemaphoreSlim _slots = new(slots, slots);

    public int Slots { get; } = slots;

    /// <summary>A turn, or null when none came within <see cref="Wait"/>.</summary>
    public async Task<IDisposable?> EnterAsync(CancellationToken ct)
        => await _slots.WaitAsync(Wait, ct) ? new Turn(_slots) : null;

    public IResult Busy() => Error(503, ErrorKinds.Unavailable,
        $"This coordinator is taking {Slots} uploads already and none finished within {Wait.TotalSeconds:0} s (TRENV_MAX_UPLOADS); retry shortly.", 5);

    /// <summary>Reads an upload's body under <see cref="BodyDeadline"/>: the bytes, or the answer to give instead.</summary>
    public static async Task<(byte[]? Body, IResult? Refused)> ReadAsync(HttpRequest request, long limit, Func<IResult> tooLarge, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(BodyDeadline);
        try
        {
            var body = await BodyReader.ReadAsync(request, limit, deadline.Token);
            return body is null ? (null, tooLarge()) : (body, null);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return (null, Error(408, ErrorKinds.RequestTimeout, $"The upload's body did not arrive within {BodyDeadline.TotalSeconds:0} s."));
        }
    }

    private sealed class Turn(SemaphoreSlim slots) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
                slots.Release();
        }
    }
}
