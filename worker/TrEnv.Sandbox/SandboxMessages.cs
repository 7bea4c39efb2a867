using TrEnv.Contracts;

namespace TrEnv.Sandbox;

/// <summary>A message the worker sends to a sandbox host.</summary>
public interface ISandboxRequest
{
    byte Type { get; }
    void Write(FrameWriter w);
}

/// <summary>A message a sandbox host sends back; every request gets exactly one reply.</summary>
public interface ISandboxReply
{
    byte Type { get; }
    void Write(FrameWriter w);
}

/// <summary>How a Load brings the function to its post-init state.</summary>
public enum LoadSource : byte
{
    Init = 0,
    MapTemplate = 1,
    CopyTemplate = 2,
    /// <summary>Map from the node's mirror with pages fetched on first touch through <c>Load.PageSocket</c>.</summary>
    LazyTemplate = 3,
}

/// <summary>The sandbox protocol: one instance per host process, driven request by request.</summary>
public static class SandboxMessages
{
    public const byte LoadType = 1, InvokeType = 2, CaptureType = 3, ResetType = 4, StatsType = 5, ShutdownType = 6;
    public const byte LoadedType = 0x41, InvokedType = 0x42, CapturedType = 0x43, ResetDoneType = 0x44, StatsReplyType = 0x45, FailureType = 0x7F;

    /// <summary>
    /// Replaces the current instance with one of <paramref name="ModuleHash"/>, cold or from a template.
    /// <paramref name="LayerPath"/> is the function's read-only file layer, seen by the guest under its /tmp
    /// (through an overlay when the host owns its mount namespace). <paramref name="PageSocket"/> is the
    /// worker's page server for <see cref="LoadSource.LazyTemplate"/>. <paramref name="ReadOnlyDirectories"/>
    /// (host path, guest path) are a script runtime's libraries, preopened read-only after /tmp.
    /// <paramref name="DeltaPath"/> resumes a paused session: its delta header (pages in the same pool) is
    /// overlaid on the template; with no template path it is a full image restored by copying.
    /// </summary>
    public sealed record Load(
        string Function,
        string ModuleHash,
        string ModuleDirectory,
        LoadSource Source,
        string? TemplatePath,
        string? PoolPath,
        bool VerifyTemplateData,
        long MemoryLimitBytes,
        int TimeoutMs,
        int InitTimeoutMs,
        IReadOnlyList<KeyValuePair<string, string>> Environment,
        string? LayerPath = null,
        string? PageSocket = null,
        string? InvocationId = null,
        IReadOnlyList<KeyValuePair<string, string>>? ReadOnlyDirectories = null,
        string? DeltaPath = null) : ISandboxRequest
    {
        public byte Type => LoadType;

        /// <summary>Bound of the guest's /tmp (a tmpfs of this size where the sandbox has its own mounts); 0 is none.</summary>
        public long TmpBytes { get; init; }

        public void Write(FrameWriter w)
        {
            w.Str(Function).Str(ModuleHash).Str(ModuleDirectory).U8((byte)Source).Str(TemplatePath).Str(PoolPath)
             .Bool(VerifyTemplateData).I64(MemoryLimitBytes).I32(TimeoutMs).I32(InitTimeoutMs).I32(Environment.Count);
            foreach (var (k, v) in Environment)
                w.Str(k).Str(v);
            w.Str(LayerPath).Str(PageSocket).Str(InvocationId);
            var readOnly = ReadOnlyDirectories ?? [];
            w.I32(readOnly.Count);
            foreach (var (host, guest) in readOnly)
                w.Str(host).Str(guest);
            w.Str(DeltaPath).I64(TmpBytes);
        }

        public static Load Read(ref FrameReader r)
        {
            var load = new Load(r.Required(), r.Required(), r.Required(), (LoadSource)r.U8(), r.Str(), r.Str(), r.Bool(), r.I64(), r.I32(), r.I32(), []);
            var count = r.I32();
            var env = new List<KeyValuePair<string, string>>(Math.Clamp(count, 0, 4096));
            for (var i = 0; i < count; i++)
                env.Add(new(r.Required(), r.Required()));
            load = load with { Environment = env, LayerPath = r.Str(), PageSocket = r.Str(), InvocationId = r.Str() };
            var dirs = r.I32();
            var readOnly = new List<KeyValuePair<string, string>>(Math.Clamp(dirs, 0, 64));
            for (var i = 0; i < dirs; i++)
                readOnly.Add(new(r.Required(), r.Required()));
            return load with { ReadOnlyDirectories = readOnly, DeltaPath = r.Str(), TmpBytes = r.I64() };
        }
    }

    /// <summary><paramref name="FilesMicros"/>: the part of the load spent preparing /tmp (mounting the layer).</summary>
    public sealed record Loaded(StartKind Start, bool ModuleWasCached, long LoadMicros, long MemoryBytes, byte[] Stdout, byte[] Stderr, long FilesMicros = 0) : ISandboxReply
    {
        public byte Type => LoadedType;
        public void Write(FrameWriter w) => w.U8((byte)Start).Bool(ModuleWasCached).I64(LoadMicros).I64(MemoryBytes).Bytes(Stdout).Bytes(Stderr).I64(FilesMicros);
        public static Loaded Read(ref FrameReader r) => new((StartKind)r.U8(), r.Bool(), r.I64(), r.I64(), r.Bytes(), r.Bytes(), r.I64());
    }

    /// <summary>
    /// Runs one invocation on the loaded instance. A zero timeout keeps the one given at load.
    /// <paramref name="InvocationId"/> only labels the host's log lines.
    /// </summary>
    public sealed record Invoke(byte[] Input, int TimeoutMs, string? InvocationId = null) : ISandboxRequest
    {
        public byte Type => InvokeType;
        public void Write(FrameWriter w) => w.Bytes(Input).I32(TimeoutMs).Str(InvocationId);
        public static Invoke Read(ref FrameReader r) => new(r.Bytes(), r.I32(), r.Str());
    }

    public sealed record Invoked(byte[] Output, long ExecMicros, byte[] Stdout, byte[] Stderr) : ISandboxReply
    {
        public byte Type => InvokedType;
        public void Write(FrameWriter w) => w.Bytes(Output).I64(ExecMicros).Bytes(Stdout).Bytes(Stderr);
        public static Invoked Read(ref FrameReader r) => new(r.Bytes(), r.I64(), r.Bytes(), r.Bytes());
    }

    /// <summary>
    /// Captures the loaded, idle instance into [RegionOffset, +RegionLength) of the pool and writes the
    /// header to <paramref name="HeaderPath"/>. When the region is too small nothing is written and the
    /// reply says how many bytes are required, so the caller can allocate first (send length 0 to ask).
    /// </summary>
    /// <remarks>With <paramref name="BaseTemplatePath"/> it captures a session delta: only the pages that differ from that template.
    /// <paramref name="Delta"/> without a base captures a full image of a session (every non-zero page) in the delta format.</remarks>
    public sealed record Capture(string PoolPath, long RegionOffset, long RegionLength, string HeaderPath, string CapturedBy,
        string? BaseTemplatePath = null, bool Delta = false) : ISandboxRequest
    {
        public byte Type => CaptureType;
        public void Write(FrameWriter w) => w.Str(PoolPath).I64(RegionOffset).I64(RegionLength).Str(HeaderPath).Str(CapturedBy).Str(BaseTemplatePath).Bool(Delta);
        public static Capture Read(ref FrameReader r) => new(r.Required(), r.I64(), r.I64(), r.Required(), r.Required(), r.Str(), r.Bool());
    }

    /// <summary><paramref name="DirtyPages"/>: for a delta, the pages the guest wrote since its template was mapped (the delta's upper bound).</summary>
    public sealed record Captured(long RequiredBytes, bool Written, long NonZeroPages, long MemoryBytes, long CaptureMicros, long DirtyPages = 0) : ISandboxReply
    {
        public byte Type => CapturedType;
        public void Write(FrameWriter w) => w.I64(RequiredBytes).Bool(Written).I64(NonZeroPages).I64(MemoryBytes).I64(CaptureMicros).I64(DirtyPages);
        public static Captured Read(ref FrameReader r) => new(r.I64(), r.Bool(), r.I64(), r.I64(), r.I64(), r.I64());
    }

    /// <summary>Drops the instance and everything the guest left behind (its /tmp, its logs), ready for any function.</summary>
    public sealed record Reset : ISandboxRequest
    {
        public byte Type => ResetType;
        public void Write(FrameWriter w) { }
    }

    public sealed record ResetDone(long ResetMicros) : ISandboxReply
    {
        public byte Type => ResetDoneType;
        public void Write(FrameWriter w) => w.I64(ResetMicros);
        public static ResetDone Read(ref FrameReader r) => new(r.I64());
    }

    public sealed record Stats : ISandboxRequest
    {
        public byte Type => StatsType;
        public void Write(FrameWriter w) { }
    }

    public sealed record StatsReply(int Pid, long RssBytes, long PssBytes, long MemoryBytes, string? Function, long Invocations, string Engine) : ISandboxReply
    {
        public byte Type => StatsReplyType;
        public void Write(FrameWriter w) => w.I32(Pid).I64(RssBytes).I64(PssBytes).I64(MemoryBytes).Str(Function).I64(Invocations).Str(Engine);
        public static StatsReply Read(ref FrameReader r) => new(r.I32(), r.I64(), r.I64(), r.I64(), r.Str(), r.I64(), r.Required());
    }

    public sealed record Shutdown : ISandboxRequest
    {
        public byte Type => ShutdownType;
        public void Write(FrameWriter w) { }
    }

    /// <summary>
    /// The request failed. <paramref name="InstanceDiscarded"/> says the instance was dropped and the sandbox is empty;
    /// <paramref name="Stdout"/> and <paramref name="Stderr"/> are what the guest wrote before it failed (a traceback, say).
    /// </summary>
    public sealed record Failure(string Kind, string Message, bool InstanceDiscarded, byte[]? Stdout = null, byte[]? Stderr = null) : ISandboxReply
    {
        public byte Type => FailureType;
        public void Write(FrameWriter w) => w.Str(Kind).Str(Message).Bool(InstanceDiscarded).Bytes(Stdout ?? []).Bytes(Stderr ?? []);
        public static Failure Read(ref FrameReader r) => new(r.Required(), r.Required(), r.Bool(), r.Bytes(), r.Bytes());
    }

    public static ISandboxRequest ReadRequest(byte type, ReadOnlySpan<byte> payload)
    {
        var r = new FrameReader(payload);
        return type switch
        {
            LoadType => Load.Read(ref r),
            InvokeType => Invoke.Read(ref r),
            CaptureType => Capture.Read(ref r),
            ResetType => new Reset(),
            StatsType => new Stats(),
            ShutdownType => new Shutdown(),
            _ => throw new InvalidDataException($"Unknown sandbox request type {type}."),
        };
    }

    public static ISandboxReply ReadReply(byte type, ReadOnlySpan<byte> payload)
    {
        var r = new FrameReader(payload);
        return type switch
        {
            LoadedType => Loaded.Read(ref r),
            InvokedType => Invoked.Read(ref r),
            CapturedType => Captured.Read(ref r),
            ResetDoneType => ResetDone.Read(ref r),
            StatsReplyType => StatsReply.Read(ref r),
            FailureType => Failure.Read(ref r),
            _ => throw new InvalidDataException($"Unknown sandbox reply type {type}."),
        };
    }
}
