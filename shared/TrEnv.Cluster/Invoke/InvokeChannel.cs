using System.Collections.Concurrent;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using TrEnv.Cluster.Serialization;
using TrEnv.Contracts;

namespace TrEnv.Cluster.Invoke;

/// <summary>
/// A coordinator's end of the invoke channel to one worker incarnation: one TCP connection, opened at the first
/// call and again after it breaks, carrying every invocation placed on that worker. Calls in flight when the
/// connection breaks fail at once; a call unanswered by its deadline fails on the next sweep (every second), so
/// no call pays for a timer of its own.
/// </summary>
public sealed partial class InvokeChannel : IDisposable
{
    /// <summary>After a failed connect, calls take the other path for this long before the channel is tried again.</summary>
    public static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(3);
    private const int MaxResultBytes = 512 << 20;

    private readonly string _host;
    private readonly int _port;
    private readonly string _worker;
    private readonly ILogger _log;
    private readonly Lock _gate = new();
    private readonly Timer _sweeper;
    private Connection? _connection;
    private Task<Connection>? _connecting;
    private long _retryAt;
    private long _nextId;
    private bool _disposed;

    /// <param name="endpoint">host:port, as the worker advertises it.</param>
    public InvokeChannel(string endpoint, string worker, ILogger log)
    {
        var colon = endpoint.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(endpoint.AsSpan(colon + 1), out _port))
            throw new ArgumentException($"The invoke endpoint \"{endpoint}\" is not host:port.", nameof(endpoint));
        _host = endpoint[..colon];
        _worker = worker;
        _log = log;
        _sweeper = new Timer(_ => Sweep(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>
    /// Sends the invocation and waits for its result. Throws <see cref="InvokeChannelException"/> when the channel
    /// cannot be used (<c>Sent</c> false: nothing left this process), breaks, or no answer comes by the deadline.
    /// </summary>
    public async Task<WorkerInvokeResult> InvokeAsync(WorkerInvoke invoke, TimeSpan deadline)
    {
        var connection = Volatile.Read(ref _connection);
        if (connection is null || connection.Socket.IsClosed)
            connection = await ConnectAsync().ConfigureAwait(false);
        var id = Interlocked.Increment(ref _nextId);
        var call = new Call(Environment.TickCount64 + (long)deadline.TotalMilliseconds, deadline);
        connection.Calls[id] = call;
        connection.Socket.Send(InvokeFrames.Invoke, id, HotPathCodec.Encode(invoke));
        if (connection.Socket.IsClosed && connection.Calls.TryRemove(id, out _))
            call.TrySetException(new InvokeChannelException($"The connection to worker {_worker} broke ({connection.ClosedReason}); the invocation may not have run."));
        return await call.Task.ConfigureAwait(false);
    }

    private async Task<Connection> ConnectAsync()
    {
        Task<Connection> connecting;
        lock (_gate)
        {
            if (_disposed)
                throw new InvokeChannelException($"Worker {_worker} left the cluster.", sent: false);
            if (_connection is { } live && !live.Socket.IsClosed)
                return live;
            if (_connecting is null)
            {
                if (Environment.TickCount64 < _retryAt)
                    throw new InvokeChannelException($"The invoke channel to worker {_worker} is down; retrying it shortly.", sent: false);
                _connecting = ConnectCoreAsync();
            }
            connecting = _connecting;
        }
        try
        {
            return await connecting.ConfigureAwait(false);
        }
        catch (Exception e) when (e is not InvokeChannelException)
        {
            throw new InvokeChannelException($"Could not open the invoke channel to worker {_worker} at {_host}:{_port}: {e.Message}", sent: false);
        }
    }

    private async Task<Connection> ConnectCoreAsync()
    {
        Socket? socket = null;
        try
        {
            socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            using var timeout = new CancellationTokenSource(ConnectTimeout);
            await socket.ConnectAsync(_host, _port, timeout.Token).ConfigureAwait(false);
            var frames = new FrameSocket(socket, MaxResultBytes);
            frames.Send(InvokeFrames.Hello, 0, InvokeFrames.Greeting);
            var welcome = await frames.ReceiveAsync(timeout.Token).ConfigureAwait(false);
            if (welcome is not { Type: InvokeFrames.Welcome } w || !w.Payload.AsSpan().SequenceEqual(InvokeFrames.Greeting))
            {
                frames.Close("no welcome");
                throw new InvalidDataException("the worker did not answer with the invoke protocol");
            }
            var connection = new Connection(frames);
            frames.Closed += reason => Fail(connection, reason);
            lock (_gate)
            {
                _connection = connection;
                _connecting = null;
                if (_disposed)
                    frames.Close($"worker {_worker} left the cluster");
            }
            _ = ReadAsync(connection);
            LogConnected(_log, _worker, _host, _port);
            return connection;
        }
        catch (Exception e)
        {
            socket?.Dispose();
            lock (_gate)
            {
                _connecting = null;
                _retryAt = Environment.TickCount64 + (long)RetryAfter.TotalMilliseconds;
            }
            LogConnectFailed(_log, _worker, _host, _port, e.Message);
            throw;
        }
    }

    private async Task ReadAsync(Connection connection)
    {
        string reason;
        try
        {
            while (await connection.Socket.ReceiveAsync().ConfigureAwait(false) is { } frame)
            {
                if (frame.Type != InvokeFrames.Result)
                    throw new InvalidDataException($"unexpected frame type {frame.Type}");
                if (connection.Calls.TryRemove(frame.Id, out var call))
                    call.TrySetResult(HotPathCodec.DecodeResult(frame.Payload));
            }
            reason = "the worker closed it";
        }
        catch (Exception e)
        {
            // Whatever broke the stream (a socket error, a frame the codec cannot read), the calls on it fail now.
            reason = e.Message;
        }
        connection.Socket.Close(reason);
    }

    private void Fail(Connection connection, string reason)
    {
        connection.ClosedReason = reason;
        foreach (var id in connection.Calls.Keys)
        {
            if (connection.Calls.TryRemove(id, out var call))
                call.TrySetException(new InvokeChannelException($"The connection to worker {_worker} broke ({reason}); the invocation may not have run."));
        }
    }

    private void Sweep()
    {
        if (Volatile.Read(ref _connection) is not { } connection || connection.Calls.IsEmpty)
            return;
        var now = Environment.TickCount64;
        foreach (var (id, call) in connection.Calls)
        {
            if (call.DeadlineTick <= now && connection.Calls.TryRemove(id, out _))
                call.TrySetException(new InvokeChannelException($"Worker {_worker} did not answer within {call.Deadline.TotalSeconds:0} s.", timedOut: true));
        }
    }

    /// <summary>The worker left or was replaced: the connection closes and the calls still waiting on it fail.</summary>
    public void Dispose()
    {
        Connection? connection;
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
            connection = _connection;
        }
        _sweeper.Dispose();
        connection?.Socket.Close($"worker {_worker} left the cluster");
    }

    private sealed class Connection(FrameSocket socket)
    {
        public FrameSocket Socket { get; } = socket;
        public ConcurrentDictionary<long, Call> Calls { get; } = new();
        public string ClosedReason { get; set; } = "closed";
    }

    // Continuations run on the thread pool, never on the reader: one slow caller must not hold up every other answer.
    private sealed class Call(long deadlineTick, TimeSpan deadline) : TaskCompletionSource<WorkerInvokeResult>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public long DeadlineTick { get; } = deadlineTick;
        public TimeSpan Deadline { get; } = deadline;
    }

    [LoggerMessage(EventId = 43, Level = LogLevel.Information, Message = "Invoke channel to worker {Worker} open ({Host}:{Port})")]
    private static partial void LogConnected(ILogger log, string worker, string host, int port);

    [LoggerMessage(EventId = 44, Level = LogLevel.Warning, Message = "Invoke channel to worker {Worker} at {Host}:{Port} could not be opened ({Error}); invocations go through remoting meanwhile")]
    private static partial void LogConnectFailed(ILogger log, string worker, string host, int port, string error);
}
