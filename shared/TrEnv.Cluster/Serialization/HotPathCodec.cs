using System.Text;
using TrEnv.Contracts;

namespace TrEnv.Cluster.Serialization;

/// <summary>
/// Binary encoding of the two messages on every invocation (coordinator to worker and back): field by
/// field in a fixed order, version byte first. JSON stays for everything else; these two are never journaled.
/// </summary>
internal static class HotPathCodec
{
    // 2: limits carry cpu, network and layer; 3: results carry the worker's state sequence; 4: limits carry the runtime;
    // 5: limits carry the init deadline and the /tmp bound; 6: results carry the start kind and sandbox origin as bytes;
    // 7: an invocation carries its trace context.
    private const byte Current = 7;
    private const byte Oldest = 2;

    public static byte[] Encode(WorkerInvoke m)
    {
        using var stream = new MemoryStream(128 + m.Input.Length);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(Current);
        w.Write(m.InvocationId);
        w.Write(m.Function);
        Write(w, m.Version);
        Write(w, m.Template);
        Bytes(w, m.Input);
        w.Write(m.TraceParent ?? "");
        w.Flush();
        return stream.ToArray();
    }

    public static WorkerInvoke DecodeInvoke(byte[] bytes)
    {
        using var r = Reader(bytes);
        var invoke = new WorkerInvoke(r.ReadString(), r.ReadString(), ReadVersion(r, bytes[0]), ReadTemplate(r), Bytes(r));
        return bytes[0] >= 7 && r.ReadString() is { Length: > 0 } traceParent ? invoke with { TraceParent = traceParent } : invoke;
    }

    public static byte[] Encode(WorkerInvokeResult m)
    {
        using var stream = new MemoryStream(128 + m.Output.Length);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(Current);
        w.Write(m.InvocationId);
        w.Write(m.Ok);
        Bytes(w, m.Output);
        w.Write((byte)m.Start);
        w.Write((byte)m.Sandbox);
        w.Write(m.Node);
        w.Write(m.StartupMicros);
        w.Write(m.ExecMicros);
        Nullable(w, m.ErrorKind);
        Nullable(w, m.ErrorMessage);
        Write(w, m.CapturedTemplate);
        w.Write(m.BusyAfter);
        w.Write(m.Sequence);
        w.Flush();
        return stream.ToArray();
    }

    public static WorkerInvokeResult DecodeResult(byte[] bytes)
    {
        using var r = Reader(bytes);
        var typed = bytes[0] >= 6;
        var result = new WorkerInvokeResult(r.ReadString(), r.ReadBoolean(), Bytes(r),
            typed ? (StartKind)r.ReadByte() : StartKindNames.FromHeader(r.ReadString()),
            typed ? (SandboxOrigin)r.ReadByte() : StartKindNames.OriginFromHeader(r.ReadString()), r.ReadString(),
            r.ReadInt64(), r.ReadInt64(), Nullable(r), Nullable(r), ReadTemplate(r), r.ReadInt32());
        return bytes[0] >= 3 ? result with { Sequence = r.ReadInt64() } : result;
    }

    private static BinaryReader Reader(byte[] bytes)
    {
        var r = new BinaryReader(new MemoryStream(bytes), Encoding.UTF8);
        var version = r.ReadByte();
        return version is >= Oldest and <= Current ? r : throw new System.Runtime.Serialization.SerializationException($"Unknown hot-path encoding version {version}.");
    }

    private static void Write(BinaryWriter w, FunctionVersion v)
    {
        w.Write(v.Version);
        w.Write(v.Sha256);
        w.Write(v.SizeBytes);
        w.Write(v.Limits.MemoryMb);
        w.Write(v.Limits.TimeoutMs);
        w.Write(v.Limits.Concurrency);
        w.Write(v.Limits.Env.Count);
        foreach (var (k, value) in v.Limits.Env)
        {
            w.Write(k);
            w.Write(value);
        }
        w.Write(v.DeployedAt.ToUnixTimeMilliseconds());
        w.Write(v.Limits.CpuMillicores);
        w.Write(v.Limits.Network);
        w.Write(v.Limits.Layer ?? "");
        w.Write(v.Limits.Runtime ?? "");
        w.Write(v.Limits.InitTimeoutMs);
        w.Write(v.Limits.TmpMb);
    }

    private static FunctionVersion ReadVersion(BinaryReader r, byte encoding)
    {
        var version = r.ReadInt32();
        var sha = r.ReadString();
        var size = r.ReadInt64();
        int memory = r.ReadInt32(), timeout = r.ReadInt32(), concurrency = r.ReadInt32(), count = r.ReadInt32();
        var env = new Dictionary<string, string>(count, StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
            env[r.ReadString()] = r.ReadString();
        var deployedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.ReadInt64());
        int cpu = r.ReadInt32();
        var network = r.ReadBoolean();
        var layer = r.ReadString();
        var runtime = encoding >= 4 ? r.ReadString() : "";
        int init = encoding >= 5 ? r.ReadInt32() : FunctionLimits.DefaultInitTimeoutMs, tmp = encoding >= 5 ? r.ReadInt32() : FunctionLimits.DefaultTmpMb;
        return new FunctionVersion(version, sha, size,
            new FunctionLimits(memory, timeout, concurrency, env, cpu, network, layer.Length == 0 ? null : layer, runtime.Length == 0 ? null : runtime, init, tmp), deployedAt);
    }

    private static void Write(BinaryWriter w, TemplateInfo? t)
    {
        w.Write(t is not null);
        if (t is null)
            return;
        w.Write(t.Key);
        w.Write(t.Function);
        w.Write(t.Version);
        w.Write(t.Sha256);
        w.Write(t.Region.Offset);
        w.Write(t.Region.Length);
        w.Write(t.NonZeroPages);
        w.Write(t.MemoryBytes);
        w.Write(t.CapturedBy);
        w.Write(t.SealedAt.ToUnixTimeMilliseconds());
        Bytes(w, t.Header);
    }

    private static TemplateInfo? ReadTemplate(BinaryReader r)
        => !r.ReadBoolean() ? null
            : new TemplateInfo(r.ReadString(), r.ReadString(), r.ReadInt32(), r.ReadString(), new PoolRegion(r.ReadInt64(), r.ReadInt64()),
                r.ReadInt64(), r.ReadInt64(), r.ReadString(), DateTimeOffset.FromUnixTimeMilliseconds(r.ReadInt64()), Bytes(r));

    private static void Bytes(BinaryWriter w, byte[] b)
    {
        w.Write(b.Length);
        w.Write(b);
    }

    private static byte[] Bytes(BinaryReader r)
    {
        var length = r.ReadInt32();
        return length >= 0 ? r.ReadBytes(length) : throw new System.Runtime.Serialization.SerializationException("Negative byte-array length.");
    }

    private static void Nullable(BinaryWriter w, string? s)
    {
        w.Write(s is not null);
        if (s is not null)
            w.Write(s);
    }

    private static string? Nullable(BinaryReader r) => r.ReadBoolean() ? r.ReadString() : null;
}
