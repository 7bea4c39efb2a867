using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using TrEnv.Cluster.Invoke;
using TrEnv.Contracts;

namespace TrEnv.Tests;

/// <summary>The invoke channel over loopback: a listener with a scripted handler, a channel as a coordinator holds one.</summary>
public sealed class InvokeChannelTests
{
    private static readonly FunctionVersion Version = new(1, "00", 10, new FunctionLimits(64, 1000, 4, new Dictionary<string, string>()), DateTimeOffset.UnixEpoch);

    private static WorkerInvoke Call(string id, string input) => new(id, "f", Version, null, Encoding.UTF8.GetBytes(input));

    private static WorkerInvokeResult Answer(WorkerInvoke i, string output)
        => new(i.InvocationId, true, Encoding.UTF8.GetBytes(output), StartKind.Warm, SandboxOrigin.Reused, "w1", 1, 2, null, null, null, 3, 9);

    private static WorkerInvokeResult Failed(WorkerInvoke i, Exception e)
        => new(i.InvocationId, false, [], StartKind.Cold, SandboxOrigin.New, "w1", 0, 0, ErrorKinds.Internal, e.Message, null);

    private static InvokeListener Listen(Func<WorkerInvoke, Task<WorkerInvokeResult>> handler, int maxInput = 1 << 20)
        => new("127.0.0.1", "127.0.0.1", 0, maxInput, handler, Failed, NullLogger.Instance);

    [Fact]
    public async Task Many_calls_in_flight_at_once_each_get_their_own_answer_whatever_order_they_finish_in()
    {
        using var listener = Listen(async i =>
        {
            await Task.Delay(Random.Shared.Next(0, 20));
            return Answer(i, new string(Encoding.UTF8.GetString(i.Input).Reverse().ToArray()));
        });
        using var channel = new InvokeChannel(listener.Endpoint, "w1", NullLogger.Instance);
        var calls = Enumerable.Range(0, 300).Select(n => channel.InvokeAsync(Call($"i{n}", $"abc{n}"), TimeSpan.FromSeconds(30))).ToList();
        var results = await Task.WhenAll(calls);
        for (var n = 0; n < results.Length; n++)
        {
            Assert.Equal($"i{n}", results[n].InvocationId);
            Assert.Equal(new string($"abc{n}".Reverse().ToArray()), Encoding.UTF8.GetString(results[n].Output));
            Assert.Equal((StartKind.Warm, SandboxOrigin.Reused, 3, 9L), (results[n].Start, results[n].Sandbox, results[n].BusyAfter, results[n].Sequence));
        }
    }

    [Fact]
    public async Task A_handler_that_throws_answers_an_internal_error_and_the_connection_keeps_serving()
    {
        using var listener = Listen(i => Encoding.UTF8.GetString(i.Input) == "boom"
            ? throw new InvalidOperationException("the pipeline broke")
            : Task.FromResult(Answer(i, "ok")));
        using var channel = new InvokeChannel(listener.Endpoint, "w1", NullLogger.Instance);
        var failed = await channel.InvokeAsync(Call("a", "boom"), TimeSpan.FromSeconds(10));
        Assert.Equal((false, ErrorKinds.Internal, "the pipeline broke"), (failed.Ok, failed.ErrorKind, failed.ErrorMessage));
        Assert.True((await channel.InvokeAsync(Call("b", "fine"), TimeSpan.FromSeconds(10))).Ok);
    }

    [Fact]
    public async Task A_peer_that_speaks_another_protocol_or_sends_an_oversized_frame_is_dropped_and_others_are_served()
    {
        using var listener = Listen(i => Task.FromResult(Answer(i, "ok")), maxInput: 1024);
        var port = int.Parse(listener.Endpoint.Split(':')[1]);
        using (var junk = new Socket(SocketType.Stream, ProtocolType.Tcp))
        {
            await junk.ConnectAsync("127.0.0.1", port);
            await junk.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
            var buffer = new byte[64];
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            Assert.Equal(0, await junk.ReceiveAsync(buffer, SocketFlags.None, wait.Token)); // closed, nothing answered
        }
        using var channel = new InvokeChannel(listener.Endpoint, "w1", NullLogger.Instance);
        // Over the listener's frame bound (the input limit plus 1 MiB): the connection is dropped and the call fails at once.
        var huge = new WorkerInvoke("big", "f", Version, null, new byte[(1 << 20) + 4096]);
        var broke = await Assert.ThrowsAsync<InvokeChannelException>(() => channel.InvokeAsync(huge, TimeSpan.FromSeconds(30)).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(broke.TimedOut);
        // The next call opens a new connection and is served.
        Assert.True((await channel.InvokeAsync(Call("c", "x"), TimeSpan.FromSeconds(10))).Ok);
    }

    [Fact]
    public async Task Calls_in_flight_fail_at_once_when_the_worker_goes_away_not_at_their_deadline()
    {
        var never = new TaskCompletionSource<WorkerInvokeResult>();
        var arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var listener = Listen(_ =>
        {
            arrived.TrySetResult();
            return never.Task;
        });
        using var channel = new InvokeChannel(listener.Endpoint, "w1", NullLogger.Instance);
        var pending = channel.InvokeAsync(Call("a", "x"), TimeSpan.FromMinutes(5));
        await arrived.Task.WaitAsync(TimeSpan.FromSeconds(10)); // the worker is running it
        listener.Dispose();
        var e = await Assert.ThrowsAsync<InvokeChannelException>(() => pending.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(e.Sent);
        Assert.False(e.TimedOut);
        // Nothing listens any more: the next call says nothing was sent, so the caller may take another path.
        var refused = await Assert.ThrowsAsync<InvokeChannelException>(() => channel.InvokeAsync(Call("b", "x"), TimeSpan.FromSeconds(5)));
        Assert.False(refused.Sent);
    }

    [Fact]
    public async Task A_call_unanswered_by_its_deadline_times_out_and_a_disposed_channel_fails_what_it_held()
    {
        var never = new TaskCompletionSource<WorkerInvokeResult>();
        using var listener = Listen(_ => never.Task);
        var channel = new InvokeChannel(listener.Endpoint, "w1", NullLogger.Instance);
        var timedOut = await Assert.ThrowsAsync<InvokeChannelException>(() => channel.InvokeAsync(Call("a", "x"), TimeSpan.FromMilliseconds(500)));
        Assert.True(timedOut.TimedOut);

        var held = channel.InvokeAsync(Call("b", "x"), TimeSpan.FromMinutes(5));
        channel.Dispose();
        var gone = await Assert.ThrowsAsync<InvokeChannelException>(() => held.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(gone.TimedOut);
        var after = await Assert.ThrowsAsync<InvokeChannelException>(() => channel.InvokeAsync(Call("c", "x"), TimeSpan.FromSeconds(5)));
        Assert.False(after.Sent);
    }
}
