using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace TrEnv.Cluster;

/// <summary>
/// Typed settings of one node, bound from configuration where environment variables <c>TRENV_NAME</c>
/// arrive as key <c>NAME</c>. The same schema serves local processes, docker compose and tests.
/// </summary>
public sealed record NodeSettings
{
    /// <summary>TRENV_ROLES: comma-separated roles of this node (coordinator, worker, memory-pool).</summary>
    public IReadOnlyList<string> Roles { get; init; } = [Contracts.Roles.Coordinator];

    /// <summary>TRENV_NODE_NAME: a readable node name, used in headers and logs. Default: role-port.</summary>
    public string? NodeName { get; init; }

    /// <summary>TRENV_HOSTNAME: the address remoting binds to. Default 127.0.0.1.</summary>
    public string Hostname { get; init; } = "127.0.0.1";

    /// <summary>TRENV_PUBLIC_HOSTNAME: the address other nodes use to reach this one (compose service name). Default: Hostname.</summary>
    public string? PublicHostname { get; init; }

    /// <summary>TRENV_PORT: the Akka remoting port; 0 picks a free one. Default 4053.</summary>
    public int Port { get; init; } = 4053;

    /// <summary>
    /// TRENV_INVOKE_PORT (workers): the TCP port of the worker's invoke channel, the connection coordinators send
    /// invocations over (on TRENV_HOSTNAME, like remoting). 0 picks a free port, which the worker advertises in its
    /// status; -1 turns the channel off, so invocations go through Akka remoting. Default 0.
    /// </summary>
    public int InvokePort { get; init; }

    /// <summary>TRENV_SEEDS: comma-separated seed addresses (akka.tcp://trenv@host:port). Default: none, this node seeds itself.</summary>
    public IReadOnlyList<string> Seeds { get; init; } = [];

    /// <summary>TRENV_DATA_DIR: where the node keeps its modules, templates and SQLite journal. Default /var/lib/trenv.</summary>
    public string DataDirectory { get; init; } = "/var/lib/trenv";

    /// <summary>TRENV_DB: a PostgreSQL connection string for the journal; empty means SQLite under the data directory.</summary>
    public string? DatabaseConnection { get; init; }

    /// <summary>TRENV_HTTP_HOST and TRENV_HTTP_PORT: where a coordinator serves the HTTP API. Default 127.0.0.1:8080.</summary>
    public string HttpHost { get; init; } = "127.0.0.1";
    public int HttpPort { get; init; } = 8080;

    /// <summary>TRENV_ADMIN_TOKEN: bearer token required for deploy and delete when set.</summary>
    public string? AdminToken { get; init; }

    /// <summary>TRENV_INVOKE_TOKEN: bearer token required for invocations when set.</summary>
    public string? InvokeToken { get; init; }

    /// <summary>TRENV_MAX_MODULE_MB: largest module a deploy accepts. Default 64.</summary>
    public int MaxModuleMb { get; init; } = 64;

    /// <summary>TRENV_MAX_LAYER_MB: largest file layer (tar, as uploaded and as unpacked). Default 256.</summary>
    public int MaxLayerMb { get; init; } = 256;

    /// <summary>
    /// TRENV_MAX_UPLOADS: module and layer uploads one coordinator takes at once (each holds its body in memory
    /// until stored); the rest wait up to 30 s, then 503. Default 2.
    /// </summary>
    public int MaxUploads { get; init; } = 2;

    /// <summary>TRENV_MAX_INPUT_MB: largest invocation body. Default 6, as Lambda.</summary>
    public int MaxInputMb { get; init; } = 6;

    /// <summary>TRENV_POOL_PATH: the shared memory pool (CXL-emulated). Default /dev/shm/trenv/pool.</summary>
    public string PoolPath { get; init; } = "/dev/shm/trenv/pool";

    /// <summary>TRENV_POOL_SIZE_MB: the pool's capacity. Default 4096.</summary>
    public long PoolSizeMb { get; init; } = 4096;

    /// <summary>TRENV_POOL_MODE: how workers reach templates: "cxl" (map the shared pool file) or "rdma" (through the pool service). Default cxl.</summary>
    public PoolMode PoolMode { get; init; } = PoolMode.Cxl;

    /// <summary>
    /// TRENV_POOL_FETCH: in rdma mode, "eager" (fetch a template whole before its first restore here), "lazy"
    /// (pages on first touch) or "prefetch" (the template's recorded working set first, the rest lazily). Default lazy.
    /// </summary>
    public PoolFetch PoolFetch { get; init; } = PoolFetch.Lazy;

    /// <summary>TRENV_POOL_GRPC_HOST, TRENV_POOL_GRPC_PORT: where a memory-pool node serves the pool over gRPC (port 0: not at all). Default TRENV_HOSTNAME, 4070.</summary>
    public string? PoolGrpcHost { get; init; }

    public int PoolGrpcPort { get; init; } = 4070;

    /// <summary>TRENV_POOL_URL: where workers reach the pool service. Default http://127.0.0.1:4070.</summary>
    public string PoolUrl { get; init; } = "http://127.0.0.1:4070";

    /// <summary>TRENV_POOL_SECRET: shared secret of the pool service; unset means no authentication.</summary>
    public string? PoolSecret { get; init; }

    /// <summary>TRENV_SANDBOX_HOST: the published sandbox host directory. Default: beside the worker.</summary>
    public string? SandboxHost { get; init; }

    /// <summary>TRENV_PRESTART_SANDBOXES: idle generic sandboxes a worker keeps started. Default 4.</summary>
    public int PrestartSandboxes { get; init; } = 4;

    /// <summary>TRENV_MAX_SANDBOXES: sandboxes a worker runs at most. Default 64.</summary>
    public int MaxSandboxes { get; init; } = 64;

    /// <summary>
    /// TRENV_WORKER_MEMORY_MB: memory all of a worker's sandboxes may use together (their resident memory).
    /// Over it, idle instances are evicted least recently used first. 0 means no bound. Default 0.
    /// </summary>
    public int WorkerMemoryMb { get; init; }

    /// <summary>TRENV_SANDBOX_ISOLATION: "auto" (namespaces and cgroups when root) or "process" (plain processes). Default auto.</summary>
    public SandboxIsolation SandboxIsolation { get; init; } = SandboxIsolation.Auto;

    /// <summary>TRENV_KEEP_ALIVE_S: idle time after which a warm instance is reclaimed (scale to zero). Default 600.</summary>
    public int KeepAliveSeconds { get; init; } = 600;

    /// <summary>TRENV_SESSION_IDLE_S: the default idle time after which an agent session is paused (a create may set its own). Default 300.</summary>
    public int SessionIdleSeconds { get; init; } = 300;

    /// <summary>
    /// TRENV_SESSION_SANDBOX_PERCENT: the share of the cluster's sandboxes that active sessions may hold
    /// together; the rest stays for functions. A create or resume past it answers 429. Default 50.
    /// </summary>
    public int SessionSandboxPercent { get; init; } = 50;

    /// <summary>TRENV_SESSIONS_PER_FUNCTION: active sessions one function may have at once (429 past it). Default 32.</summary>
    public int SessionsPerFunction { get; init; } = 32;

    /// <summary>
    /// TRENV_SESSION_POOL_PERCENT (memory-pool node): share of the pool paused sessions' deltas may hold together;
    /// a pause past it is refused with 507 <c>pool_quota</c> and the session stays active. Default 50.
    /// </summary>
    public int SessionPoolPercent { get; init; } = 50;

    /// <summary>
    /// TRENV_TEMPLATE_POOL_PERCENT (memory-pool node): share of the pool one function version's template may hold;
    /// a larger one is not captured and the function runs cold. Default 25.
    /// </summary>
    public int TemplatePoolPercent { get; init; } = 25;

    /// <summary>
    /// TRENV_SESSION_MAX_FILES_MB (workers): the most a session's /tmp changes may hold when it is paused, checkpointed
    /// or forked (they are stored beside its memory); past it the pause answers 413 and the session stays active. Default 64.
    /// </summary>
    public int SessionMaxFilesMb { get; init; } = 64;

    /// <summary>
    /// TRENV_INTERPRETER_TIMEOUT_MS (coordinators): how long one cell of a Python interpreter session may run; past it
    /// the instance is discarded (the session is lost, or recovered from its checkpoint). Default 30000.
    /// </summary>
    public int InterpreterTimeoutMs { get; init; } = 30_000;

    /// <summary>TRENV_INTERPRETER_MEMORY_MB (coordinators): the linear memory an interpreter session may grow to. Default 512.</summary>
    public int InterpreterMemoryMb { get; init; } = 512;

    /// <summary>
    /// TRENV_SESSION_PAUSED_TTL_S (coordinators): a session paused (or lost after a pause) longer than this is deleted
    /// with its stored delta; 0 keeps paused sessions until they are deleted. Default 0.
    /// </summary>
    public int SessionPausedTtlSeconds { get; init; }

    /// <summary>
    /// TRENV_RUNTIMES_DIR: where the script runtimes are installed (python/python.wasm and python/lib/...), as
    /// scripts/build-python.sh leaves them. Coordinators read the modules from it, workers the read-only libraries.
    /// Default /var/cache/trenv/runtimes.
    /// </summary>
    public string RuntimesDirectory { get; init; } = "/var/cache/trenv/runtimes";

    /// <summary>
    /// TRENV_COMPILE_CACHE_DIR (workers): a directory the workers of one machine share (a compose volume), where a
    /// script runtime's module is compiled once for all of them, one compile at a time. Default: the worker's own
    /// module directory under TRENV_DATA_DIR.
    /// </summary>
    public string? CompileCacheDirectory { get; init; }

    /// <summary>
    /// TRENV_COMPILE_TIMEOUT_S (workers): how long compiling a deployed module may take; past it the compile is
    /// stopped and calls answer 504 <c>timeout</c> naming the compile (for ten minutes, without compiling again). Default 60.
    /// </summary>
    public int CompileTimeoutSeconds { get; init; } = 60;

    /// <summary>TRENV_COMPILE_MEMORY_MB (workers): memory compiling a deployed module may use (past it: 507 <c>memory</c>). Default 2048.</summary>
    public int CompileMemoryMb { get; init; } = 2048;

    /// <summary>
    /// TRENV_UNREFERENCED_TTL_S (coordinators): stored module and layer bytes that no function version and no
    /// session has referenced for this long (a deleted function's, a layer uploaded but never deployed) are
    /// removed from the journal; 0 keeps them for ever. Default 3600.
    /// </summary>
    public int UnreferencedTtlSeconds { get; init; } = 3600;

    /// <summary>TRENV_LOG_LEVEL: the level of TrEnv's own log categories (trace, debug, information, warning, error). Default information.</summary>
    public string LogLevel { get; init; } = "information";

    /// <summary>TRENV_LOG_FORMAT: json (one object per line, for jq and log shippers) or text. Default json.</summary>
    public string LogFormat { get; init; } = "json";

    public const string SystemName = "trenv";

    /// <summary>
    /// Every key <see cref="From"/> reads, as the environment variable a node sees. The one configuration
    /// schema of local processes (scripts/cluster.sh), docker compose and the chaos runner; a test checks
    /// it against what <see cref="From"/> actually reads.
    /// </summary>
    public static IReadOnlyList<string> Variables { get; } = new[]
    {
        "ROLES", "NODE_NAME", "HOSTNAME_BIND", "HOSTNAME", "PUBLIC_HOSTNAME", "PORT", "INVOKE_PORT", "SEEDS", "DATA_DIR", "DB",
        "HTTP_HOST", "HTTP_PORT", "ADMIN_TOKEN", "INVOKE_TOKEN", "MAX_MODULE_MB", "MAX_INPUT_MB", "MAX_LAYER_MB",
        "WORKER_MEMORY_MB", "POOL_PATH", "POOL_SIZE_MB", "SANDBOX_HOST", "POOL_MODE", "POOL_FETCH", "POOL_GRPC_HOST",
        "POOL_GRPC_PORT", "POOL_URL", "POOL_SECRET", "PRESTART_SANDBOXES", "MAX_SANDBOXES", "KEEP_ALIVE_S", "SESSION_IDLE_S",
        "SESSION_SANDBOX_PERCENT", "SESSIONS_PER_FUNCTION", "MAX_UPLOADS", "SESSION_POOL_PERCENT", "SESSION_PAUSED_TTL_S", "TEMPLATE_POOL_PERCENT",
        "SANDBOX_ISOLATION", "LOG_LEVEL", "LOG_FORMAT", "RUNTIMES_DIR", "COMPILE_CACHE_DIR", "COMPILE_TIMEOUT_S", "COMPILE_MEMORY_MB", "UNREFERENCED_TTL_S",
        "SESSION_MAX_FILES_MB", "INTERPRETER_TIMEOUT_MS", "INTERPRETER_MEMORY_MB",
    }.Select(k => "TRENV_" + k).ToArray();

    public bool HasRole(string role) => Roles.Contains(role, StringComparer.Ordinal);

    public string Name => NodeName ?? $"{string.Join('+', Roles)}-{Port}";

    public string SelfAddress => $"akka.tcp://{SystemName}@{PublicHostname ?? Hostname}:{Port}";

    public string SqliteConnection => $"Data Source={Path.Combine(DataDirectory, "journal.db")};Cache=Shared;Pooling=True";

    public static NodeSettings From(IConfiguration c)
    {
        var d = new NodeSettings();
        return new NodeSettings
        {
            Roles = List(c["ROLES"]) is { Count: > 0 } roles ? roles : d.Roles,
            NodeName = Text(c["NODE_NAME"]),
            Hostname = Text(c["HOSTNAME_BIND"]) ?? Text(c["HOSTNAME"]) ?? d.Hostname,
            PublicHostname = Text(c["PUBLIC_HOSTNAME"]),
            Port = Int(c, "PORT", d.Port),
            InvokePort = Int(c, "INVOKE_PORT", d.InvokePort),
            Seeds = List(c["SEEDS"]),
            DataDirectory = Text(c["DATA_DIR"]) ?? d.DataDirectory,
            DatabaseConnection = Text(c["DB"]),
            HttpHost = Text(c["HTTP_HOST"]) ?? d.HttpHost,
            HttpPort = Int(c, "HTTP_PORT", d.HttpPort),
            AdminToken = Text(c["ADMIN_TOKEN"]),
            InvokeToken = Text(c["INVOKE_TOKEN"]),
            MaxModuleMb = Int(c, "MAX_MODULE_MB", d.MaxModuleMb),
            MaxInputMb = Int(c, "MAX_INPUT_MB", d.MaxInputMb),
            MaxLayerMb = Int(c, "MAX_LAYER_MB", d.MaxLayerMb),
            MaxUploads = Int(c, "MAX_UPLOADS", d.MaxUploads),
            WorkerMemoryMb = Int(c, "WORKER_MEMORY_MB", d.WorkerMemoryMb),
            PoolPath = Text(c["POOL_PATH"]) ?? d.PoolPath,
            PoolSizeMb = Int(c, "POOL_SIZE_MB", (int)d.PoolSizeMb),
            SandboxHost = Text(c["SANDBOX_HOST"]),
            PoolMode = NodeChoices.Parse("POOL_MODE", Text(c["POOL_MODE"]), d.PoolMode),
            PoolFetch = NodeChoices.Parse("POOL_FETCH", Text(c["POOL_FETCH"]), d.PoolFetch),
            PoolGrpcHost = Text(c["POOL_GRPC_HOST"]),
            PoolGrpcPort = Int(c, "POOL_GRPC_PORT", d.PoolGrpcPort),
            PoolUrl = Text(c["POOL_URL"]) ?? d.PoolUrl,
            PoolSecret = Text(c["POOL_SECRET"]),
            PrestartSandboxes = Int(c, "PRESTART_SANDBOXES", d.PrestartSandboxes),
            MaxSandboxes = Int(c, "MAX_SANDBOXES", d.MaxSandboxes),
            KeepAliveSeconds = Int(c, "KEEP_ALIVE_S", d.KeepAliveSeconds),
            SessionIdleSeconds = Int(c, "SESSION_IDLE_S", d.SessionIdleSeconds),
            SessionSandboxPercent = Int(c, "SESSION_SANDBOX_PERCENT", d.SessionSandboxPercent),
            SessionsPerFunction = Int(c, "SESSIONS_PER_FUNCTION", d.SessionsPerFunction),
            SessionPoolPercent = Int(c, "SESSION_POOL_PERCENT", d.SessionPoolPercent),
            TemplatePoolPercent = Int(c, "TEMPLATE_POOL_PERCENT", d.TemplatePoolPercent),
            SessionPausedTtlSeconds = Int(c, "SESSION_PAUSED_TTL_S", d.SessionPausedTtlSeconds),
            InterpreterTimeoutMs = Int(c, "INTERPRETER_TIMEOUT_MS", d.InterpreterTimeoutMs),
            SessionMaxFilesMb = Int(c, "SESSION_MAX_FILES_MB", d.SessionMaxFilesMb),
            InterpreterMemoryMb = Int(c, "INTERPRETER_MEMORY_MB", d.InterpreterMemoryMb),
            SandboxIsolation = NodeChoices.Parse("SANDBOX_ISOLATION", Text(c["SANDBOX_ISOLATION"]), d.SandboxIsolation),
            LogLevel = Text(c["LOG_LEVEL"])?.ToLowerInvariant() ?? d.LogLevel,
            RuntimesDirectory = Text(c["RUNTIMES_DIR"]) ?? d.RuntimesDirectory,
            CompileCacheDirectory = Text(c["COMPILE_CACHE_DIR"]),
            CompileTimeoutSeconds = Int(c, "COMPILE_TIMEOUT_S", d.CompileTimeoutSeconds),
            CompileMemoryMb = Int(c, "COMPILE_MEMORY_MB", d.CompileMemoryMb),
            UnreferencedTtlSeconds = Int(c, "UNREFERENCED_TTL_S", d.UnreferencedTtlSeconds),
            LogFormat = Text(c["LOG_FORMAT"])?.ToLowerInvariant() ?? d.LogFormat,
        }.Validate();
    }

    /// <summary>Loads TRENV_* environment variables (prefix stripped) over optional in-memory overrides.</summary>
    public static NodeSettings FromEnvironment(IDictionary<string, string?>? overrides = null)
    {
        var builder = new ConfigurationBuilder().AddEnvironmentVariables("TRENV_");
        if (overrides is not null)
            builder.AddInMemoryCollection(overrides);
        return From(builder.Build());
    }

    private NodeSettings Validate()
    {
        var unknown = Roles.Where(r => r is not (Contracts.Roles.Coordinator or Contracts.Roles.Worker or Contracts.Roles.MemoryPool)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"TRENV_ROLES has unknown role(s) {string.Join(", ", unknown)}; use coordinator, worker or memory-pool.");
        if (Port is < 0 or > 65535 || HttpPort is < 0 or > 65535)
            throw new ArgumentException("TRENV_PORT and TRENV_HTTP_PORT must be between 0 and 65535.");
        if (InvokePort is < -1 or > 65535)
            throw new ArgumentException("TRENV_INVOKE_PORT must be between 0 and 65535, or -1 for no invoke channel.");
        if (PoolGrpcPort is < 0 or > 65535 || !Uri.TryCreate(PoolUrl, UriKind.Absolute, out _))
            throw new ArgumentException("TRENV_POOL_GRPC_PORT must be between 0 and 65535 and TRENV_POOL_URL an absolute URL such as http://10.0.0.1:4070.");
        if (MaxModuleMb <= 0 || MaxInputMb <= 0 || PoolSizeMb <= 0 || MaxLayerMb <= 0 || MaxUploads <= 0)
            throw new ArgumentException("TRENV_MAX_MODULE_MB, TRENV_MAX_INPUT_MB, TRENV_MAX_LAYER_MB, TRENV_MAX_UPLOADS and TRENV_POOL_SIZE_MB must be positive.");
        if (LogLevel is not ("trace" or "debug" or "information" or "warning" or "error"))
            throw new ArgumentException($"TRENV_LOG_LEVEL must be trace, debug, information, warning or error, not \"{LogLevel}\".");
        if (LogFormat is not ("json" or "text"))
            throw new ArgumentException($"TRENV_LOG_FORMAT must be json or text, not \"{LogFormat}\".");
        if (SessionPoolPercent is < 0 or > 100 || SessionPausedTtlSeconds < 0)
            throw new ArgumentException("TRENV_SESSION_POOL_PERCENT must be between 0 and 100 and TRENV_SESSION_PAUSED_TTL_S at least 0.");
        if (UnreferencedTtlSeconds is > 0 and < 5)
            throw new ArgumentException("TRENV_UNREFERENCED_TTL_S must be 0 (keep for ever) or at least 5: a deploy in flight must fit in it.");
        if (CompileTimeoutSeconds <= 0 || CompileMemoryMb < 64)
            throw new ArgumentException("TRENV_COMPILE_TIMEOUT_S must be positive and TRENV_COMPILE_MEMORY_MB at least 64.");
        if (TemplatePoolPercent is < 1 or > 100)
            throw new ArgumentException("TRENV_TEMPLATE_POOL_PERCENT must be between 1 and 100.");
        if (SessionSandboxPercent is < 0 or > 100 || SessionsPerFunction < 0)
            throw new ArgumentException("TRENV_SESSION_SANDBOX_PERCENT must be between 0 and 100 and TRENV_SESSIONS_PER_FUNCTION 0 or more (0 allows no session).");
        if (WorkerMemoryMb < 0)
            throw new ArgumentException("TRENV_WORKER_MEMORY_MB must be 0 (no bound) or positive.");
        if (SessionMaxFilesMb is < 0 or > 10240)
            throw new ArgumentException("TRENV_SESSION_MAX_FILES_MB must be between 0 (a session keeps no files across a pause) and 10240.");
        if (InterpreterTimeoutMs is < 1 or > 900_000 || InterpreterMemoryMb is < 64 or > 4096)
            throw new ArgumentException("TRENV_INTERPRETER_TIMEOUT_MS must be between 1 and 900000 and TRENV_INTERPRETER_MEMORY_MB between 64 and 4096.");
        return this;
    }

    private static string? Text(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    private static List<string> List(string? value)
        => value is null ? [] : value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    private static int Int(IConfiguration c, string key, int fallback)
    {
        var text = Text(c[key]);
        if (text is null)
            return fallback;
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new ArgumentException($"TRENV_{key} must be an integer, not \"{text}\".");
    }
}
