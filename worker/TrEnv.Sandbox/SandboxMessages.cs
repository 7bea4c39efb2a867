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
    /// What every load names: the module (by hash, in <paramref name="ModuleDirectory"/>) and the limits, environment
    /// and files its instance runs with. <see cref="LayerPath"/> is the function's read-only file layer, seen by the
    /// guest under its /tmp (through an overlay when the host owns its mount namespace); <see cref="ReadOnlyDirectories"/>
    /// (host path, guest path) are a script runtime's libraries, preopened read-only after /tmp.
    /// </summary>
    public sealed record InstanceSpec(
        string Function,
        string ModuleHash,
        string ModuleDirectory,
        long MemoryLimitBytes,
        int TimeoutMs,
        int InitTimeoutMs,
        IReadOnlyList<KeyValuePair<string, string>> Environment)
    {
        public string? LayerPath { get; init; }

        /// <summary>Bound of the guest's /tmp (a tmpfs of this size where the sandbox has its own mounts); 0 is none.</summary>
        public long TmpBytes { get; init; }

        public IReadOnlyList<KeyValuePair<string, string>> ReadOnlyDirectories { get; init; } = [];

        /// <summary>Only labels the host's log lines.</summary>
        public string? InvocationId { get; init; }

        /// <summary>The worker's span around the load (W3C traceparent); when it is sampled the host reports its own steps as <see cref="HostSpan"/>s.</summary>
        public string? TraceParent { get; init; }

        internal void Write(FrameWriter w)
        {
            w.Str(Function).Str(ModuleHash).Str(ModuleDirectory).I64(MemoryLimitBytes).I32(TimeoutMs).I32(InitTimeoutMs);
            Pairs(w, Environment);
            w.Str(LayerPath).I64(TmpBytes);
            Pairs(w, ReadOnlyDirectories);
            w.Str(InvocationId).Str(TraceParent);
        }

        internal static InstanceSpec Read(ref FrameReader r)
            => new(r.Required(), r.Required(), r.Required(), r.I64(), r.I32(), r.I32(), Pairs(ref r, 4096))
            {
                LayerPath = r.Str(),
                TmpBytes = r.I64(),
                ReadOnlyDirectories = Pairs(ref r, 64),
                InvocationId = r.Str(),
                TraceParent = r.Str(),
            };

        internal static void Pairs(FrameWriter w, IReadOnlyList<KeyValuePair<string, string>> pairs)
        {
            w.I32(pairs.Count);
            foreach (var (k, v) in pairs)
                w.Str(k).Str(v);
        }

        internal static List<KeyValuePair<string, string>> Pairs(ref FrameReader r, int most)
        {
            var count = r.I32();
            var pairs = new List<KeyValuePair<string, string>>(Math.Clamp(count, 0, most));
            for (var i = 0; i < count; i++)
                pairs.Add(new(r.Required(), r.Required()));
            return pairs;
        }
    }

    /// <summary>
    /// A template's pages: its header file, the pool (or the node's mirror of it) that holds them, and how they come
    /// in: <see cref="LoadSource.MapTemplate"/>, <see cref="LoadSource.CopyTemplate"/>, or <see cref="LoadSource.LazyTemplate"/>
    /// (faulted in through the worker's page server at <paramref name="PageSocket"/>). <paramref name="Verify"/> checks
    /// every run's hash against the pool's bytes first.
    /// </summary>
    public sealed record TemplatePages(string HeaderPath, string PoolPath, LoadSource Mode, bool Verify = false, string? PageSocket = null)
    {
        internal void Write(FrameWriter w) => w.Str(HeaderPath).Str(PoolPath).U8((byte)Mode).Bool(Verify).Str(PageSocket);

        internal static TemplatePages Read(ref FrameReader r) => new(r.Required(), r.Required(), (LoadSource)r.U8(), r.Bool(), r.Str());
    }

    /// <summary>
    /// Replaces the current instance with a new one of <see cref="InstanceSpec"/>: cold (<see cref="LoadCold"/>), from a
    /// template (<see cref="LoadFromTemplate"/>), or a paused session (<see cref="LoadSession"/>). One frame type; the
    /// first byte says which.
    /// </summary>
    public abstract record Load(InstanceSpec Instance) : ISandboxRequest
    {
        private const byte Cold = 0, FromTemplate = 1, Session = 2;

        public byte Type => LoadType;

        /// <summary>How the instance's memory is made, for the host's log line.</summary>
        public abstract LoadSource Source { get; }

        public void Write(FrameWriter w)
        {
            switch (this)
            {
                case LoadCold:
                    w.U8(Cold);
                    Instance.Write(w);
                    break;
                case LoadFromTemplate t:
                    w.U8(FromTemplate);
                    Instance.Write(w);
                    t.Template.Write(w);
                    break;
                case LoadSession s:
                    w.U8(Session);
                    Instance.Write(w);
                    w.Bool(s.Base is not null);
                    s.Base?.Write(w);
                    w.Str(s.PoolPath).Str(s.DeltaPath).I64(s.FilesOffset).I64(s.FilesLength).Str(s.FilesSha256);
                    break;
                default:
                    throw new InvalidOperationException($"Unknown load {GetType().Name}.");
            }
        }

        public static Load Read(ref FrameReader r)
        {
            var kind = r.U8();
            var instance = InstanceSpec.Read(ref r);
            return kind switch
            {
                Cold => new LoadCold(instance),
                FromTemplate => new LoadFromTemplate(instance, TemplatePages.Read(ref r)),
                Session => new LoadSession(instance, r.Bool() ? TemplatePages.Read(ref r) : null, r.Required(), r.Required(), r.I64(), r.I64(), r.Str()),
                _ => throw new InvalidDataException($"Unknown load kind {kind}."),
            };
        }
    }

    /// <summary>Instantiates the module and runs its initialisation (init): a cold start.</summary>
    public sealed record LoadCold(InstanceSpec Instance) : Load(Instance)
    {
        public override LoadSource Source => LoadSource.Init;
    }

    /// <summary>Restores the function's post-init state from its template, without running init.</summary>
    public sealed record LoadFromTemplate(InstanceSpec Instance, TemplatePages Template) : Load(Instance)
    {
        public override LoadSource Source => Template.Mode;
    }

    /// <summary>
    /// Resumes a paused session: its delta header at <paramref name="DeltaPath"/> (pages in <paramref name="PoolPath"/>)
    /// overlaid on its base template; with no base, the delta is a full image restored by copying. Never reseeded.
    /// Its /tmp changes (a <see cref="FileDelta"/> archive of <paramref name="FilesLength"/> bytes at
    /// <paramref name="FilesOffset"/> of the pool, checked against <paramref name="FilesSha256"/>) are applied over its layer.
    /// </summary>
    public sealed record LoadSession(InstanceSpec Instance, TemplatePages? Base, string PoolPath, string DeltaPath,
        long FilesOffset = 0, long FilesLength = 0, string? FilesSha256 = null) : Load(Instance)
    {
        public override LoadSource Source => Base?.Mode ?? LoadSource.CopyTemplate;
    }

    /// <summary><paramref name="FilesMicros"/>: the part of the load spent preparing /tmp (mounting the layer).</summary>
    public sealed record Loaded(StartKind Start, bool ModuleWasCached, long LoadMicros, long MemoryBytes, byte[] Stdout, byte[] Stderr, long FilesMicros = 0) : ISandboxReply
    {
        /// <summary>The load's steps as the host timed them, when its traceparent was sampled.</summary>
        public IReadOnlyList<HostSpan> Spans { get; init; } = [];

        public byte Type => LoadedType;

        public void Write(FrameWriter w)
        {
            w.U8((byte)Start).Bool(ModuleWasCached).I64(LoadMicros).I64(MemoryBytes).Bytes(Stdout).Bytes(Stderr).I64(FilesMicros);
            HostSpan.WriteAll(w, Spans);
        }

        public static Loaded Read(ref FrameReader r) => new((StartKind)r.U8(), r.Bool(), r.I64(), r.I64(), r.Bytes(), r.Bytes(), r.I64()) { Spans = HostSpan.ReadAll(ref r) };
    }

    /// <summary>
    /// Runs one invocation on the loaded instance. A zero timeout keeps the one given at load.
    /// <paramref name="InvocationId"/> only labels the host's log lines.
    /// </summary>
    public sealed record Invoke(byte[] Input, int TimeoutMs, string? InvocationId = null, string? TraceParent = null) : ISandboxRequest
    {
        public byte Type => InvokeType;
        public void Write(FrameWriter w) => w.Bytes(Input).I32(TimeoutMs).Str(InvocationId).Str(TraceParent);
        public static Invoke Read(ref FrameReader r) => new(r.Bytes(), r.I32(), r.Str(), r.Str());
    }

    public sealed record Invoked(byte[] Output, long ExecMicros, byte[] Stdout, byte[] Stderr) : ISandboxReply
    {
        /// <summary>The guest call as the host timed it, when the invoke's traceparent was sampled.</summary>
        public IReadOnlyList<HostSpan> Spans { get; init; } = [];

        public byte Type => InvokedType;

        public void Write(FrameWriter w)
        {
            w.Bytes(Output).I64(ExecMicros).Bytes(Stdout).Bytes(Stderr);
            HostSpan.WriteAll(w, Spans);
        }

        public static Invoked Read(ref FrameReader r) => new(r.Bytes(), r.I64(), r.Bytes(), r.Bytes()) { Spans = HostSpan.ReadAll(ref r) };
    }

    /// <summary>
    /// Captures the loaded, idle instance into [RegionOffset, +RegionLength) of the pool and writes the
    /// header to <paramref name="HeaderPath"/>. When the region is too small nothing is written and the
    /// reply says how many bytes are required, so the caller can allocate first (send length 0 to ask).
    /// </summary>
    /// <remarks>With <paramref name="BaseTemplatePath"/> it captures a session delta: only the pages that differ from that template.
    /// <paramref name="Delta"/> without a base captures a full image of a session (every non-zero page) in the delta format.
    /// With <paramref name="MaxFilesBytes"/> &gt;= 0 a delta also carries what the guest changed in /tmp (a <see cref="FileDelta"/>
    /// archive after the pages, at most that long: a larger one is not written and the reply says its size).</remarks>
    public sealed record Capture(string PoolPath, long RegionOffset, long RegionLength, string HeaderPath, string CapturedBy,
        string? BaseTemplatePath = null, bool Delta = false, long MaxFilesBytes = -1) : ISandboxRequest
    {
        public byte Type => CaptureType;
        public void Write(FrameWriter w) => w.Str(PoolPath).I64(RegionOffset).I64(RegionLength).Str(HeaderPath).Str(CapturedBy).Str(BaseTemplatePath).Bool(Delta).I64(MaxFilesBytes);
        public static Capture Read(ref FrameReader r) => new(r.Required(), r.I64(), r.I64(), r.Required(), r.Required(), r.Str(), r.Bool(), r.I64());
    }

    /// <summary>
    /// <paramref name="DirtyPages"/>: for a delta, the pages the guest wrote since its template was mapped (the delta's upper bound).
    /// <paramref name="FilesBytes"/>: the /tmp archive's length (the last bytes of <paramref name="RequiredBytes"/>), 0 when /tmp has no changes.
    /// </summary>
    public sealed record Captured(long RequiredBytes, bool Written, long NonZeroPages, long MemoryBytes, long CaptureMicros, long DirtyPages = 0,
        long FilesBytes = 0, string? FilesSha256 = null) : ISandboxReply
    {
        public byte Type => CapturedType;
        public void Write(FrameWriter w) => w.I64(RequiredBytes).Bool(Written).I64(NonZeroPages).I64(MemoryBytes).I64(CaptureMicros).I64(DirtyPages).I64(FilesBytes).Str(FilesSha256);
        public static Captured Read(ref FrameReader r) => new(r.I64(), r.Bool(), r.I64(), r.I64(), r.I64(), r.I64(), r.I64(), r.Str());
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
