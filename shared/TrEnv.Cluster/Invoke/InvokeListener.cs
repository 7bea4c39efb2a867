using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using TrEnv.Cluster.Serialization;
using TrEnv.Contracts;

namespace TrEnv.Cluster.Invoke;

/// <summary>
/// A worker's end of the invoke channel: accepts coordinators' connections and runs each invocation frame through
/// <c>handler</c> as it arrives (many at once per connection), answering with a result frame when it finishes.
/// The same trust as Akka remoting: it listens on the node's cluster address and nowhere else.
/// </summary>
public sealed partial class InvokeListener : IDisposable
{
    private readonly Socket _listener;
    private readonly Func<WorkerInvoke, Task<WorkerInvokeResult>> _handler;
    private readonly Func<WorkerInvoke, Exception, WorkerInvokeResult> _failed;
    private readonly int _maxFrameBytes;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<FrameSocket, byte> _connections = new();
    private readonly CancellationTokenSource _stop = new();

    /// <summary>
    /// Listens on <paramref name="bindHost"/>:<paramref name="port"/> (0 picks a free port) and advertises
    /// <paramref name="publicHost"/> with the port bound.
    /// </summary>
    public InvokeListener(string bindHost, string publicHost, int port, int maxInputBytes,
        Func<WorkerInvoke, Task<WorkerInvokeResult>> handler, Func<WorkerInvoke, Exception, WorkerInvokeResult> failed, ILogger log)
    {
        _handler = handler;
        _failed = failed;
        _log = log;
        // The input plus the version, limits and template a frame carries alongside it.
        _maxFrameBytes = maxInputBytes + (1 << 20);
        var address = IPAddress.TryParse(bindHost, out var ip) ? ip : Dns.GetHostAddresses(bindHost).First(a => a.AddressFamily == AddressFamily.InterNetwork);
        _listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(address, port));
        _listener.Listen(64);
        Endpoint = $"{publicHost}:{((IPEndPoint)_listener.LocalEndPoint!).Port}";
        _ = AcceptLoopAsync();
    }

    /// <summary>host:port where coordinators reach this listener; workers put it in their status broadcast.</summary>
    public string Endpoint { get; }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested)
                    return;
                LogAcceptFailed(_log, e.Message);
                continue;
            }
            _ = ServeAsync(new FrameSocket(socket, _maxFrameBytes), socket.RemoteEndPoint?.ToString() ?? "?");
        }
    }

    private async Task ServeAsync(FrameSocket connection, string peer)
    {
        _connections[connection] = 0;
        try
        {
            using var hello = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var first = await connection.ReceiveAsync(hello.Token).ConfigureAwait(false);
            if (first is not { Type: InvokeFrames.Hello } h || !h.Payload.AsSpan().SequenceEqual(InvokeFrames.Greeting))
            {
                LogRefused(_log, peer);
                return;
            }
            connection.Send(InvokeFrames.Welcome, 0, InvokeFrames.Greeting);
            while (await connection.ReceiveAsync(_stop.Token).ConfigureAwait(false) is { } frame)
            {
                if (frame.Type != InvokeFrames.Invoke)
                    throw new InvalidDataException($"unexpected frame type {frame.Type}");
                _ = RunAsync(connection, frame.Id, HotPathCodec.DecodeInvoke(frame.Payload));
            }
        }
        catch (Exception e)
        {
            // A socket error or a frame the codec cannot read: this peer is dropped, the others keep being served.
            if (!_stop.IsCancellationRequested)
                LogDropped(_log, peer, e.Message);
        }
        finally
        {
            _connections.TryRemove(connection, out _);
            connection.Close("served");
        }
    }

    // Runs inline up to the invocation's first wait, so a warm call costs no extra thread hop.
    private async Task RunAsync(FrameSocket connection, long id, WorkerInvoke invoke)
    {
        WorkerInvokeResult result;
        try
        {
            result = await _handler(invoke).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            result = _failed(invoke, e);
        }
        // A coordinator that went away meanwhile no longer waits for it; Send drops it on a closed connection.
        connection.Send(InvokeFrames.Result, id, HotPathCodec.Encode(result));
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        foreach (var connection in _connections.Keys)
            connection.Close("the worker is stopping");
    }

    [LoggerMessage(EventId = 40, Level = LogLevel.Warning, Message = "Invoke channel: accepting a connection failed: {Error}")]
    private static partial void LogAcceptFailed(ILogger log, string error);

    [LoggerMessage(EventId = 41, Level = LogLevel.Warning, Message = "Invoke channel: {Peer} did not greet with the invoke protocol; connection closed")]
    private static partial void LogRefused(ILogger log, string peer);

    [LoggerMessage(EventId = 42, Level = LogLevel.Information, Message = "Invoke channel: connection from {Peer} closed ({Reason})")]
    private static partial void LogDropped(ILogger log, string peer, string reason);
}
