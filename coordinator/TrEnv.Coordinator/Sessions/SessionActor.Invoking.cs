using Akka.Actor;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Sessions;

// Running a call in the session's sandbox: resuming the session first when it is paused, or bringing it back
// from its last checkpoint when the worker that held it died.
public sealed partial class SessionActor
{
    /// <summary>How a call found the session: already live, resumed from its pause, or recovered from its checkpoint.</summary>
    private sealed record Arrival(IReadOnlyList<IEvent> Events, SessionEvents.Activated? Activated, SessionRecovery? Recovery);

    private static readonly Arrival Live = new([], null, null);

    private async Task<Outcome> InvokeAsync(SessionState st, SessionCommands.Invoke invoke, Arrival arrival)
    {
        var id = Id;
        var events = arrival.Events.ToList();
        var address = arrival.Activated?.Address ?? st.Address;
        var (worker, missing) = FindWorker(st, address);
        if (worker is null)
        {
            // The worker is gone; a checkpointed session comes back from its checkpoint and the call runs there.
            if (arrival.Activated is null && st.CanRecover && missing!.Events.Count > 0)
                return await RecoverThenInvokeAsync(st, invoke, [.. events, .. missing.Events]);
            return missing! with { Events = [.. events, .. missing!.Events] };
        }
        WorkerSessionReplies.Invoked reply;
        Interlocked.Increment(ref worker.InFlight);
        try
        {
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(worker.Gone.Token);
            reply = await worker.Invoker.Ask<WorkerSessionReplies.Invoked>(new WorkerSessionCommands.Invoke(id, invoke.InvocationId, invoke.Input) { TraceParent = TrEnv.Cluster.NodeTelemetry.CurrentTraceParent() },
                TimeSpan.FromMilliseconds(st.Version!.Limits.TimeoutMs) + TimeSpan.FromSeconds(30), gone.Token);
        }
        catch (OperationCanceledException) when (worker.Gone.IsCancellationRequested)
        {
            events.Add(new SessionEvents.Lost(id, $"Worker {worker.Status.Node} left the cluster while running a call of the session.", DateTimeOffset.UtcNow));
            // Whether the call ran is unknown, so it is not run again here: the caller decides.
            if (st.CanRecover)
                return Refuse(id, ErrorKinds.Unavailable, $"Worker {worker.Status.Node} left the cluster while running this call; what it did is gone. " +
                    $"The session's next call brings it back from its checkpoint of {st.LastSavedAt:O}.", events);
            return Refuse(id, ErrorKinds.SessionLost, $"Worker {worker.Status.Node} left the cluster while running this call; the session is lost.", events);
        }
        catch (AskTimeoutException)
        {
            return Refuse(id, ErrorKinds.Unavailable, $"Worker {worker.Status.Node} did not answer in time; the call may have run. The session stays on it.", events);
        }
        finally
        {
            Interlocked.Decrement(ref worker.InFlight);
        }
        if (reply.Result.BusyAfter >= 0)
            worker.ApplyBusy(reply.Result.BusyAfter, reply.Result.Sequence);
        if (reply.InstanceLost)
            events.Add(new SessionEvents.Lost(id, $"Its instance failed ({reply.Result.ErrorKind}: {reply.Result.ErrorMessage}); {SinceSaved(st)} is gone.", DateTimeOffset.UtcNow));
        var result = arrival.Activated is { } a ? reply.Result with { StartupMicros = (long)(a.StartMs * 1000) } : reply.Result;
        return new Outcome(events, s => new SessionReplies.Invoked(s.ToInfo(), result, arrival.Activated is not null, arrival.Recovery),
            Touch: reply.InstanceLost ? null : s => s.Called(DateTimeOffset.UtcNow));
    }

    private async Task<Outcome> ResumeThenInvokeAsync(SessionState st, SessionCommands.Invoke invoke)
    {
        var (activated, refused) = await ResumeCoreAsync(st, invoke.InvocationId, null);
        if (activated is null)
            return refused!;
        return await InvokeAsync(st.Apply(activated), invoke, new Arrival([activated], activated, null));
    }

    // The session's worker died after it was checkpointed: resume the last stored state elsewhere, then run the call.
    private async Task<Outcome> RecoverThenInvokeAsync(SessionState st, SessionCommands.Invoke invoke, IReadOnlyList<IEvent> prior)
    {
        foreach (var e in prior)
            st = st.Apply(e);
        var (recovered, activated, refused) = await RecoverCoreAsync(st, invoke.InvocationId, null);
        if (activated is null)
            return refused! with { Events = [.. prior, .. refused.Events] };
        return await InvokeAsync(st.Apply(recovered!).Apply(activated), invoke, new Arrival([.. prior, recovered!, activated], activated, recovered!.Recovery));
    }
}
