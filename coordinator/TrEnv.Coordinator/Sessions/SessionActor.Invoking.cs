using Akka.Actor;
using TrEnv.Contracts;

namespace TrEnv.Coordinator.Sessions;

// Running a call in the session's sandbox, resuming the session first when it is paused.
public sealed partial class SessionActor
{
    private async Task<Outcome> InvokeAsync(SessionState st, SessionCommands.Invoke invoke, (IEvent Activated, long StartupMicros)? resumed)
    {
        var id = Id;
        var events = resumed is { } r ? new List<IEvent> { r.Activated } : [];
        var address = resumed?.Activated is SessionEvents.Activated a ? a.Address : st.Address;
        var (worker, missing) = FindWorker(st, address);
        if (worker is null)
            return missing! with { Events = [.. events, .. missing.Events] };
        WorkerSessionReplies.Invoked reply;
        Interlocked.Increment(ref worker.InFlight);
        try
        {
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(worker.Gone.Token);
            reply = await worker.Invoker.Ask<WorkerSessionReplies.Invoked>(new WorkerSessionCommands.Invoke(id, invoke.InvocationId, invoke.Input),
                TimeSpan.FromMilliseconds(st.Version!.Limits.TimeoutMs) + TimeSpan.FromSeconds(30), gone.Token);
        }
        catch (OperationCanceledException) when (worker.Gone.IsCancellationRequested)
        {
            events.Add(new SessionEvents.Lost(id, $"Worker {worker.Status.Node} left the cluster while running a call of the session; its state since the last pause is gone.", DateTimeOffset.UtcNow));
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
            events.Add(new SessionEvents.Lost(id, $"Its instance failed ({reply.Result.ErrorKind}: {reply.Result.ErrorMessage}); its state since the last pause is gone.", DateTimeOffset.UtcNow));
        var result = resumed is { } rs ? reply.Result with { StartupMicros = rs.StartupMicros } : reply.Result;
        return new Outcome(events, s => new SessionReplies.Invoked(s.ToInfo(), result, resumed is not null),
            Touch: reply.InstanceLost ? null : s => s with { Invocations = s.Invocations + 1, LastActiveAt = DateTimeOffset.UtcNow });
    }

    private async Task<Outcome> ResumeThenInvokeAsync(SessionState st, SessionCommands.Invoke invoke)
    {
        var (activated, refused) = await ResumeCoreAsync(st, invoke.InvocationId, null);
        if (activated is null)
            return refused!;
        return await InvokeAsync(st.Apply(activated), invoke, (activated, (long)(activated.StartMs * 1000)));
    }
}
