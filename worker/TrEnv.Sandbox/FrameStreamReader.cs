using System.Buffers.Binary;

namespace TrEnv.Sandbox;

/// <summary>
/// Reads sandbox frames from a blocking stream through one buffer, so a frame that arrived whole costs one read
/// system call (header and payload together) and frames that arrived together cost one between them. A payload
/// larger than the buffer is read straight into its own array.
/// </summary>
public sealed class FrameStreamReader(Stream stream, int bufferBytes = 64 * 1024)
{
    private readonly byte[] _buffer = new byte[Math.Max(bufferBytes, 16)];
    private int _start;
    private int _end;

    /// <summary>The next frame; null at a clean end of stream (between frames).</summary>
    public (byte Type, byte[] Payload)? Read()
    {
        if (!Fill(5))
            return null;
        var length = BinaryPrimitives.ReadUInt32LittleEndian(_buffer.AsSpan(_start));
        if (length < 1 || length > Framing.MaxFrameBytes)
            throw new InvalidDataException($"Sandbox frame length {length} is out of range.");
        var type = _buffer[_start + 4];
        _start += 5;
        var payload = new byte[length - 1];
        var buffered = Math.Min(payload.Length, _end - _start);
        _buffer.AsSpan(_start, buffered).CopyTo(payload);
        _start += buffered;
        for (var read = buffered; read < payload.Length;)
        {
            var n = stream.Read(payload, read, payload.Length - read);
            if (n == 0)
                throw new EndOfStreamException("The sandbox stream ended inside a frame.");
            read += n;
        }
        return (type, payload);
    }

    // Makes at least count bytes available from _start; false when the stream ends before any byte of them.
    private bool Fill(int count)
    {
        if (_end - _start >= count)
            return true;
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        while (_end < count)
        {
            var n = stream.Read(_buffer, _end, _buffer.Length - _end);
            if (n == 0)
                return _end == 0 ? false : throw new EndOfStreamException("The sandbox stream ended inside a frame.");
            _end += n;
        }
        return true;
    }
}
