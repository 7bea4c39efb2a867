using TrEnv.Contracts;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Tests;

public sealed class ProtocolTests
{
    public static TheoryData<ISandboxRequest> Requests() =>
    [
        new LoadFromTemplate(new InstanceSpec("f", new string('a', 64), "/m", 1L << 30, 1500, 60_000, [new("K", "V"), new("EMPTY", ""), new("ÜNICODE", "✓")])
            {
                LayerPath = "/layers/f", InvocationId = "inv-1", ReadOnlyDirectories = [new("/runtimes/python/lib", "/usr/local/lib")], TmpBytes = 512L << 20,
            }, new TemplatePages("/t/x.tpl", "/dev/shm/pool", LoadSource.MapTemplate, Verify: true)),
        new LoadCold(new InstanceSpec("g", new string('b', 64), "/m", 0, 0, 0, [])),
        new LoadCold(new InstanceSpec("g", new string('b', 64), "/m", 0, 0, 0, []) { TraceParent = Parent }),
        new LoadSession(new InstanceSpec("h", new string('c', 64), "/m", 1L << 28, 100, 200, []),
            new TemplatePages("/t/h.tpl", "/mirror/pool", LoadSource.LazyTemplate, PageSocket: "/run/pages.sock"), "/mirror/pool", "/t/resume.dlt"),
        new LoadSession(new InstanceSpec("i", new string('d', 64), "/m", 1L << 28, 100, 200, []), null, "/dev/shm/pool", "/t/full.dlt"),
        new LoadSession(new InstanceSpec("j", new string('e', 64), "/m", 1L << 28, 100, 200, []), null, "/dev/shm/pool", "/t/files.dlt", 1L << 33, 4097, new string('f', 64)),
        new Invoke([1, 2, 3, 0, 255], 250, "0123456789abcdef"),
        new Invoke([], 0),
        new Invoke([1], 100, "id", Parent),
        new Capture("/dev/shm/pool", 4096, 8192, "/t/h.tpl", "node-1"),
        new Capture("/dev/shm/pool", 0, 0, "/t/s.dlt", "node-1", "/t/base.tpl", Delta: true, MaxFilesBytes: 64L << 20),
        new Reset(),
        new Stats(),
        new Shutdown(),
    ];

    public static TheoryData<ISandboxReply> Replies() =>
    [
        new Loaded(StartKind.Template, true, 123, 65536, [1], []),
        new Invoked([9, 8, 7], 42, [(byte)'o'], [(byte)'e']),
        new Invoked([1], 42, [], []) { Spans = [new HostSpan("trenv.guest.call", 1_765_000_000_000_000, 42, -1, [new("faas.name", "f")])] },
        new Loaded(StartKind.Template, true, 123, 65536, [], []) { Spans = [new HostSpan("trenv.sandbox.load", 1_765_000_000_000_000, 123, -1, []),
            new HostSpan("trenv.sandbox.restore", 1_765_000_000_000_050, 70, 0, [new("k", "v"), new("ü", "✓")])] },
        new Captured(4096, true, 1, 65536, 77),
        new Captured(8192 + 300, true, 2, 65536, 90, 3, 300, new string('a', 64)),
        new ResetDone(5),
        new StatsReply(1234, 10 << 20, 3 << 20, 65536, null, 7, "aot"),
        new Failure(ErrorKinds.Trap, "The guest trapped.", true, [], []),
        new Failure(ErrorKinds.Exception, "KeyError: 'k'", false, [(byte)'o'], "Traceback (most recent call last):\n"u8.ToArray()),
    ];

    [Theory]
    [MemberData(nameof(Requests))]
    public void Every_request_round_trips_through_a_frame(ISandboxRequest request)
    {
        var (type, payload) = RoundTrip(request.Type, request.Write);
        var back = ReadRequest(type, payload);
        Assert.Equal(request.GetType(), back.GetType());
        Assert.Equal(Normalize(request), Normalize(back));
    }

    [Theory]
    [MemberData(nameof(Replies))]
    public void Every_reply_round_trips_through_a_frame(ISandboxReply reply)
    {
        var (type, payload) = RoundTrip(reply.Type, reply.Write);
        var back = ReadReply(type, payload);
        Assert.Equal(Normalize(reply), Normalize(back));
    }

    private const string Parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    [Fact]
    public void A_reply_whose_span_names_a_parent_not_before_it_is_refused_and_only_sampled_parents_ask_for_spans()
    {
        var bad = new Invoked([], 1, [], []) { Spans = [new HostSpan("a", 0, 1, 0, [])] };
        var (type, payload) = RoundTrip(bad.Type, bad.Write);
        Assert.Throws<InvalidDataException>(() => ReadReply(type, payload));
        Assert.True(HostSpan.Sampled(Parent));
        Assert.False(HostSpan.Sampled(Parent[..^2] + "00"));
        Assert.True(HostSpan.Sampled(Parent[..^2] + "03")); // sampled, random trace id: what .NET starts a trace with
        Assert.False(HostSpan.Sampled(Parent[..^2] + "02"));
        Assert.False(HostSpan.Sampled(Parent[..^2] + "zz"));
        Assert.False(HostSpan.Sampled(null));
        Assert.False(HostSpan.Sampled("garbage-01"));
    }

    [Fact]
    public void Sandbox_log_lines_parse_back_to_their_fields_and_other_lines_do_not()
    {
        var line = SandboxLog.Format("invoke", "id-1", "f\"n", ("micros", 42L), ("ok", true), ("skipped", null), ("kind", "trap"));
        Assert.StartsWith(SandboxLog.Prefix, line, StringComparison.Ordinal);
        var fields = SandboxLog.Parse(line)!.ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal(new Dictionary<string, object?> { ["event"] = "invoke", ["invocationId"] = "id-1", ["function"] = "f\"n", ["micros"] = 42L, ["ok"] = true, ["kind"] = "trap" }, fields);
        Assert.Null(SandboxLog.Parse("sandbox: protocol error, exiting"));
        Assert.Null(SandboxLog.Parse(SandboxLog.Prefix + ",broken"));
    }

    [Fact]
    public void A_truncated_frame_is_a_protocol_error_not_a_hang()
    {
        var w = new FrameWriter();
        new Invoke([1, 2, 3], 10).Write(w);
        using var stream = new MemoryStream();
        Framing.WriteFrame(stream, InvokeType, w.Written.Span);
        var bytes = stream.ToArray();
        Assert.Throws<EndOfStreamException>(() => new FrameStreamReader(new MemoryStream(bytes[..^2])).Read());
        Assert.Throws<EndOfStreamException>(() => new FrameStreamReader(new MemoryStream(bytes[..3])).Read());
        Assert.Null(new FrameStreamReader(new MemoryStream([])).Read());
    }

    [Fact]
    public void Oversized_and_short_payloads_are_refused()
    {
        using var huge = new MemoryStream([0xFF, 0xFF, 0xFF, 0x7F, 1]);
        Assert.Throws<InvalidDataException>(() => new FrameStreamReader(huge).Read());
        Assert.Throws<InvalidDataException>(() => ReadRequest(InvokeType, [1, 0]));
        Assert.Throws<InvalidDataException>(() => ReadRequest(99, []));
    }

    [Theory]
    [InlineData(1, 64 * 1024)]
    [InlineData(3, 64 * 1024)]
    [InlineData(1 << 20, 64 * 1024)]
    [InlineData(7, 16)]
    public void The_buffered_reader_returns_every_frame_however_the_bytes_arrive(int chunk, int bufferBytes)
    {
        var payloads = new[] { Array.Empty<byte>(), new byte[] { 1, 2, 3 }, Enumerable.Range(0, 200_000).Select(i => (byte)i).ToArray(), new byte[] { 9 } };
        using var all = new MemoryStream();
        for (var i = 0; i < payloads.Length; i++)
            Framing.WriteFrame(all, (byte)(i + 1), payloads[i]);
        var reader = new FrameStreamReader(new Chunked(all.ToArray(), chunk), bufferBytes);
        for (var i = 0; i < payloads.Length; i++)
        {
            var frame = reader.Read()!.Value;
            Assert.Equal((byte)(i + 1), frame.Type);
            Assert.Equal(payloads[i], frame.Payload);
        }
        Assert.Null(reader.Read());
    }

    // A stream that hands out at most chunk bytes per read, as a pipe may.
    private sealed class Chunked(byte[] data, int chunk) : MemoryStream(data)
    {
        public override int Read(byte[] buffer, int offset, int count) => base.Read(buffer, offset, Math.Min(count, chunk));
    }

    private static (byte Type, byte[] Payload) RoundTrip(byte type, Action<FrameWriter> write)
    {
        var w = new FrameWriter();
        write(w);
        using var stream = new MemoryStream();
        Framing.WriteFrame(stream, type, w.Written.Span);
        stream.Position = 0;
        return new FrameStreamReader(stream).Read()!.Value;
    }

    // Records compare arrays by reference; compare their contents through a printable form instead.
    private static string Normalize(object message)
    {
        var parts = message.GetType().GetProperties().OrderBy(p => p.Name).Select(p => p.GetValue(message) switch
        {
            byte[] b => $"{p.Name}=[{string.Join(',', b)}]",
            System.Collections.IEnumerable e and not string => $"{p.Name}=[{string.Join(',', e.Cast<object>().Select(x => x is HostSpan h ? Normalize(h) : x))}]",
            // A part of a message (the instance a load names, a template's pages): compared field by field too.
            { } v when v.GetType().DeclaringType == typeof(SandboxMessages) => $"{p.Name}={{{Normalize(v)}}}",
            var v => $"{p.Name}={v}",
        });
        return string.Join(';', parts);
    }
}
