using System.Buffers.Binary;
using System.Text;

namespace TrEnv.Cluster.Invoke;

/// <summary>
/// The invoke channel's wire format, one TCP connection from a coordinator to a worker: each frame is a 4-byte
/// little-endian length (of what follows), a type byte, an 8-byte correlation id and the payload. The client
/// opens with <see cref="Hello"/> and waits for <see cref="Welcome"/>; then <see cref="Invoke"/> frames go one
/// way and <see cref="Result"/> frames come back, in any order, matched by id.
/// </summary>
public static class InvokeFrames
{
    public const byte Hello = 1;
    public const byte Welcome = 2;
    public const byte Invoke = 3;
    public const byte Result = 4;

    /// <summary>Bytes before the payload: length, type, id.</summary>
    public const int HeaderBytes = 13;

    /// <summary>Names the protocol and its version in the hello and the welcome; a peer that sends anything else is dropped.</summary>
    public static readonly byte[] Greeting = Encoding.ASCII.GetBytes("TRENV-INVOKE/1");

    public static byte[] Header(byte type, long id, int payloadLength)
    {
        var header = new byte[HeaderBytes];
        BinaryPrimitives.WriteInt32LittleEndian(header, payloadLength + 9);
        header[4] = type;
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(5), id);
        return header;
    }
}

/// <summary>The invoke channel failed: the connection broke, the peer spoke another protocol, or no answer came in time.</summary>
public sealed class InvokeChannelException(string message, bool timedOut = false, bool sent = true) : Exception(message)
{
    /// <summary>No answer came before the deadline; the connection is intact.</summary>
    public bool TimedOut { get; } = timedOut;

    /// <summary>False when the request never left this process, so the caller may try another path.</summary>
    public bool Sent { get; } = sent;
}
