using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text;
using Google.Protobuf;

namespace TrEnv.Bench.Tracing;

/// <summary>One span as an OTLP exporter sent it: ids in hex, times in Unix nanoseconds, the exporting service's name.</summary>
public sealed record OtlpSpan(string Service, string TraceId, string SpanId, string ParentSpanId, string Name, long StartNanos, long EndNanos,
    IReadOnlyDictionary<string, string> Attributes)
{
    public double Millis => (EndNanos - StartNanos) / 1e6;
}

/// <summary>
/// A local OTLP/HTTP receiver (protobuf encoding, <c>OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf</c>): keeps the spans
/// posted to /v1/traces and accepts (and drops) /v1/metrics and /v1/logs, so nodes can export to it in tests and
/// in <c>scripts/trace-tree.sh</c>. Only the fields a span tree needs are decoded.
/// </summary>
public sealed class OtlpSink : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentQueue<OtlpSpan> _spans = new();
    private readonly Task _serving;

    public OtlpSink(int port)
    {
        Port = port;
        _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        _listener.Start();
        _serving = Task.Run(ServeAsync);
    }

    public int Port { get; }

    /// <summary>The OTEL_* variables that point a node's exporter here, batching briefly.</summary>
    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["OTEL_EXPORTER_OTLP_ENDPOINT"] = $"http://127.0.0.1:{Port}",
        ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
        ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
        ["OTEL_METRIC_EXPORT_INTERVAL"] = "5000",
    };

    public IReadOnlyList<OtlpSpan> Spans => [.. _spans];

    public IReadOnlyList<OtlpSpan> Trace(string traceId) => [.. _spans.Where(s => s.TraceId == traceId)];

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            try
            {
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                if (context.Request.Url?.AbsolutePath == "/v1/traces")
                    foreach (var span in Decode(body.ToArray()))
                        _spans.Enqueue(span);
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
            }
            catch (InvalidProtocolBufferException)
            {
                context.Response.StatusCode = 400;
            }
            context.Response.Close();
        }
    }

    /// <summary>Decodes an ExportTraceServiceRequest (field numbers of opentelemetry-proto's trace and common messages).</summary>
    public static IEnumerable<OtlpSpan> Decode(byte[] request)
    {
        var spans = new List<OtlpSpan>();
        foreach (var resourceSpans in Repeated(request, 1))
        {
            var service = "";
            var scopeSpans = new List<byte[]>();
            Fields(resourceSpans, (field, input) =>
            {
                if (field == 1)
                    service = Attributes(input.ReadBytes().ToByteArray()).GetValueOrDefault("service.name", "");
                else if (field == 2)
                    scopeSpans.Add(input.ReadBytes().ToByteArray());
                else
                    input.SkipLastField();
            });
            foreach (var scope in scopeSpans)
                foreach (var span in Repeated(scope, 2))
                    spans.Add(Span(service, span));
        }
        return spans;
    }

    private static OtlpSpan Span(string service, byte[] span)
    {
        string traceId = "", spanId = "", parent = "", name = "";
        long start = 0, end = 0;
        var attributes = new Dictionary<string, string>(StringComparer.Ordinal);
        Fields(span, (field, input) =>
        {
            switch (field)
            {
                case 1: traceId = Convert.ToHexStringLower(input.ReadBytes().ToByteArray()); break;
                case 2: spanId = Convert.ToHexStringLower(input.ReadBytes().ToByteArray()); break;
                case 4: parent = Convert.ToHexStringLower(input.ReadBytes().ToByteArray()); break;
                case 5: name = input.ReadString(); break;
                case 7: start = (long)input.ReadFixed64(); break;
                case 8: end = (long)input.ReadFixed64(); break;
                case 9:
                    var (key, value) = KeyValue(input.ReadBytes().ToByteArray());
                    attributes[key] = value;
                    break;
                default: input.SkipLastField(); break;
            }
        });
        return new OtlpSpan(service, traceId, spanId, parent, name, start, end, attributes);
    }

    // Resource: attributes (1) are KeyValues.
    private static Dictionary<string, string> Attributes(byte[] resource)
    {
        var attributes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var kv in Repeated(resource, 1))
        {
            var (key, value) = KeyValue(kv);
            attributes[key] = value;
        }
        return attributes;
    }

    // KeyValue: key (1), value (2) an AnyValue: string (1), bool (2), int (3), double (4); others as "".
    private static (string Key, string Value) KeyValue(byte[] kv)
    {
        string key = "", value = "";
        Fields(kv, (field, input) =>
        {
            if (field == 1)
                key = input.ReadString();
            else if (field == 2)
                Fields(input.ReadBytes().ToByteArray(), (f, any) =>
                {
                    value = f switch
                    {
                        1 => any.ReadString(),
                        2 => any.ReadBool() ? "true" : "false",
                        3 => any.ReadInt64().ToString(CultureInfo.InvariantCulture),
                        4 => any.ReadDouble().ToString(CultureInfo.InvariantCulture),
                        _ => Skip(any),
                    };
                });
            else
                input.SkipLastField();
        });
        return (key, value);
    }

    private static string Skip(CodedInputStream input)
    {
        input.SkipLastField();
        return "";
    }

    private static List<byte[]> Repeated(byte[] message, int wanted)
    {
        var items = new List<byte[]>();
        Fields(message, (field, input) =>
        {
            if (field == wanted)
                items.Add(input.ReadBytes().ToByteArray());
            else
                input.SkipLastField();
        });
        return items;
    }

    private static void Fields(byte[] message, Action<int, CodedInputStream> read)
    {
        var input = new CodedInputStream(message);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
            read(WireFormat.GetTagFieldNumber(tag), input);
    }

    /// <summary>One trace as an indented tree: each span's name, service and duration, children in start order.</summary>
    public static string Render(IReadOnlyList<OtlpSpan> trace)
    {
        var ids = trace.Select(s => s.SpanId).ToHashSet(StringComparer.Ordinal);
        var children = trace.ToLookup(s => ids.Contains(s.ParentSpanId) ? s.ParentSpanId : "");
        var origin = trace.Count == 0 ? 0 : trace.Min(s => s.StartNanos);
        var text = new StringBuilder();
        void Walk(OtlpSpan span, int depth)
        {
            var label = $"{new string(' ', depth * 2)}{span.Name}";
            text.AppendLine(CultureInfo.InvariantCulture, $"{label,-48} {span.Service,-20} +{(span.StartNanos - origin) / 1e6,8:F3} ms {span.Millis,9:F3} ms");
            foreach (var child in children[span.SpanId].OrderBy(c => c.StartNanos))
                Walk(child, depth + 1);
        }
        foreach (var root in children[""].OrderBy(s => s.StartNanos))
            Walk(root, 0);
        return text.ToString();
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        try
        {
            _serving.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }
}
