using System.Buffers.Binary;
using System.Net.Sockets;

namespace TrEnv.Cluster.Invoke;

/// <summary>
/// One end of an invoke channel connection. Sends go out on the caller's thread when no send is under way; frames
/// queued meanwhile leave together in the next gathered write, so a burst costs one system call, not one each.
/// Receives parse as many whole frames as one read brought.
/// </summary>
public sealed class FrameSocket : IDisposable
{
    private readonly Socket _socket;
    private readonly int _maxFrameBytes;
    private readonly Lock _gate = new();
    private List<ArraySegment<byte>> _queued = [];
    private List<ArraySegment<byte>> _spare = [];
    private bool _sending;
    private byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;
    private int _closed;

    public FrameSocket(Socket socket, int maxFrameBytes)
    {
        _socket = socket;
        _maxFrameBytes = maxFrameBytes;
        socket.NoDelay = true;
    }

    /// <summary>Raised once, when the connection breaks or is closed, with what happened.</summary>
    public event Action<string>? Closed;

    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>Queues a frame and, unless another send is under way, sends it and anything queued behind it.</summary>
    public void Send(byte type, long id, byte[] payload)
    {
        lock (_gate)
        {
            if (_closed != 0)
                return;
            _queued.Add(InvokeFrames.Header(type, id, payload.Length));
            if (payload.Length > 0)
                _queued.Add(payload);
            if (_sending)
                return;
            _sending = true;
        }
        _ = SendQueuedAsync();
    }

    private async Task SendQueuedAsync()
    {
        try
        {
            while (true)
            {
                List<ArraySegment<byte>> batch;
                lock (_gate)
                {
                    if (_queued.Count == 0 || _closed != 0)
                    {
                        _sending = false;
                        return;
                    }
                    batch = _queued;
                    _queued = _spare;
                    _spare = batch;
                }
                var total = 0;
                foreach (var segment in batch)
                    total += segment.Count;
                var sent = await _socket.SendAsync(batch, SocketFlags.None).ConfigureAwait(false);
                // A stream socket sends all of it or fails; a short count means the peer is gone.
                if (sent != total)
                    throw new SocketException((int)SocketError.ConnectionReset);
                batch.Clear();
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            lock (_gate)
                _sending = false;
            Close($"sending failed ({e.Message})");
        }
    }

    /// <summary>The next frame, or null when the peer closed the connection between frames.</summary>
    public async ValueTask<(byte Type, long Id, byte[] Payload)?> ReceiveAsync(CancellationToken ct = default)
    {
        while (true)
        {
            if (TryParse(out var frame))
                return frame;
            if (_start > 0 && _start == _end)
                _start = _end = 0;
            if (_end == _buffer.Length)
            {
                // Make room: slide the partial frame to the front, or grow for a frame larger than the buffer.
                var pending = _end - _start;
                var target = pending < _buffer.Length / 2 ? _buffer : new byte[_buffer.Length * 2];
                Buffer.BlockCopy(_buffer, _start, target, 0, pending);
                _buffer = target;
                _start = 0;
                _end = pending;
            }
            var read = await _socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, ct).ConfigureAwait(false);
            if (read == 0)
            {
                if (_end != _start)
                    throw new InvalidDataException("The connection ended inside a frame.");
                return null;
            }
            _end += read;
        }
    }

    private bool TryParse(out (byte Type, long Id, byte[] Payload) frame)
    {
        frame = default;
        var available = _end - _start;
        if (available < 4)
            return false;
        var length = BinaryPrimitives.ReadInt32LittleEndian(_buffer.AsSpan(_start));
        if (length < 9 || length > _maxFrameBytes)
            throw new InvalidDataException($"An invoke channel frame of {length} bytes is out of range (9 to {_maxFrameBytes}).");
        if (available < 4 + length)
        {
            if (_buffer.Length < 4 + length)
            {
                var grown = new byte[Math.Max(_buffer.Length * 2, 4 + length)];
                Buffer.BlockCopy(_buffer, _start, grown, 0, available);
                _buffer = grown;
                _start = 0;
                _end = available;
            }
            return false;
        }
        var type = _buffer[_start + 4];
        var id = BinaryPrimitives.ReadInt64LittleEndian(_buffer.AsSpan(_start + 5));
        var payload = _buffer.AsSpan(_start + InvokeFrames.HeaderBytes, length - 9).ToArray();
        _start += 4 + length;
        frame = (type, id, payload);
        return true;
    }

    /// <summary>Closes the connection once; the first reason given is the one <see cref="Closed"/> reports.</summary>
    public void Close(string reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
            return;
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        _socket.Dispose();
        Closed?.Invoke(reason);
    }

    public void Dispose() => Close("closed");
}
