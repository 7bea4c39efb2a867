using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace TrEnv.Sandbox;

/// <summary>
/// The sandbox wire format: each frame is a little-endian u32 length, then a one-byte message type,
/// then the payload written field by field. No reflection, so the NativeAOT host can read it.
/// </summary>
public static class Framing
{
    /// <summary>Largest frame either side accepts: inputs and outputs are capped well below this.</summary>
    public const int MaxFrameBytes = 64 << 20;

    /// <summary>A whole frame in one array: length, type, payload.</summary>
    public static byte[] Frame(byte type, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[5 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)(payload.Length + 1));
        frame[4] = type;
        payload.CopyTo(frame.AsSpan(5));
        return frame;
    }

    public static async ValueTask WriteFrameAsync(Stream stream, byte type, ReadOnlyMemory<byte> payload, CancellationToken ct = default)
    {
        await stream.WriteAsync(Frame(type, payload.Span), ct).ConfigureAwait(false);
        await stream.FlushAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Writes a frame with one write call, so the reader wakes once.</summary>
    public static void WriteFrame(Stream stream, byte type, ReadOnlySpan<byte> payload)
    {
        var frame = System.Buffers.ArrayPool<byte>.Shared.Rent(5 + payload.Length);
        try
        {
            BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)(payload.Length + 1));
            frame[4] = type;
            payload.CopyTo(frame.AsSpan(5));
            stream.Write(frame, 0, 5 + payload.Length);
            stream.Flush();
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(frame);
        }
    }

    /// <summary>Reads one frame; null at a clean end of stream.</summary>
    public static async ValueTask<(byte Type, byte[] Payload)?> ReadFrameAsync(Stream stream, CancellationToken ct = default)
    {
        var head = new byte[5];
        if (!await ReadExactlyOrEndAsync(stream, head, ct).ConfigureAwait(false))
            return null;
        var length = BinaryPrimitives.ReadUInt32LittleEndian(head);
        if (length < 1 || length > MaxFrameBytes)
            throw new InvalidDataException($"Sandbox frame length {length} is out of range.");
        var payload = new byte[length - 1];
        if (!await ReadExactlyOrEndAsync(stream, payload, ct).ConfigureAwait(false))
            throw new EndOfStreamException("The sandbox stream ended inside a frame.");
        return (head[4], payload);
    }

    private static async ValueTask<bool> ReadExactlyOrEndAsync(Stream stream, Memory<byte> buffer, CancellationToken ct)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer[read..], ct).ConfigureAwait(false);
            if (n == 0)
                return read == 0 && buffer.Length > 0 ? false : throw new EndOfStreamException("The sandbox stream ended inside a frame.");
            read += n;
        }
        return true;
    }
}

/// <summary>Appends protocol fields to a growing buffer.</summary>
public sealed class FrameWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);

    public ReadOnlyMemory<byte> Written => _buffer.WrittenMemory;

    public FrameWriter U8(byte v) { _buffer.Write([v]); return this; }
    public FrameWriter Bool(bool v) => U8(v ? (byte)1 : (byte)0);

    public FrameWriter I32(int v)
    {
        BinaryPrimitives.WriteInt32LittleEndian(_buffer.GetSpan(4), v);
        _buffer.Advance(4);
        return this;
    }

    public FrameWriter I64(long v)
    {
        BinaryPrimitives.WriteInt64LittleEndian(_buffer.GetSpan(8), v);
        _buffer.Advance(8);
        return this;
    }

    public FrameWriter Bytes(ReadOnlySpan<byte> v)
    {
        I32(v.Length);
        _buffer.Write(v);
        return this;
    }

    public FrameWriter Str(string? v)
    {
        if (v is null)
            return I32(-1);
        var count = Encoding.UTF8.GetByteCount(v);
        I32(count);
        Encoding.UTF8.GetBytes(v, _buffer.GetSpan(count));
        _buffer.Advance(count);
        return this;
    }
}

/// <summary>Reads protocol fields in the order they were written; any overrun is a protocol error.</summary>
public ref struct FrameReader(ReadOnlySpan<byte> payload)
{
    private ReadOnlySpan<byte> _rest = payload;

    public byte U8() => Take(1)[0];
    public bool Bool() => U8() != 0;
    public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));
    public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public byte[] Bytes()
    {
        var len = I32();
        return len < 0 ? throw new InvalidDataException("Negative byte-array length in a sandbox frame.") : Take(len).ToArray();
    }

    public string? Str()
    {
        var len = I32();
        return len < 0 ? null : Encoding.UTF8.GetString(Take(len));
    }

    public string Required() => Str() ?? throw new InvalidDataException("A required string is missing from a sandbox frame.");

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > _rest.Length)
            throw new InvalidDataException("A sandbox frame is shorter than its fields.");
        var head = _rest[..count];
        _rest = _rest[count..];
        return head;
    }
}
