using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Sandbox;
using TrEnv.Sandbox.Isolation;
using TrEnv.Worker.Artifacts;
using TrEnv.Worker.Capacity;
using TrEnv.Worker.Invocation;
using TrEnv.Worker.Isolation;
using TrEnv.Worker.Loading;
using TrEnv.Worker.Placement;
using TrEnv.Worker.Reporting;
using TrEnv.Worker.Retirement;
using TrEnv.Worker.Sessions;
using TrEnv.Worker.Templates;

namespace TrEnv.Worker;

/// <summary>
/// A worker's sandboxes, composed: isolation found at start, the placement pool, files and templates, the
/// invocation pipeline, sessions, upkeep and reports. The <see cref="WorkerActor"/> talks only to this.
/// </summary>
public sealed class SandboxManager : IAsyncDisposable
{
    private readonly NodeIsolation _isolation;
    private readonly PoolCache? _mirror; // rdma mode: the node-local mirror of the pool
    private readonly SandboxCgroup? _poolCharges; // pool pages sandboxes write when they capture or pause
    private readonly SandboxCgroup? _compileCharges; // compiles of deployed modules (one core, TRENV_COMPILE_MEMORY_MB)
    private readonly SandboxPool<IsolatedSandbox> _pool;
    private readonly ArtifactStore _artifacts;
    private readonly InvocationPipeline _invocations;
    private readonly VersionRetirement _retirement;
    private readonly Maintenance _maintenance;
    private readonly StatusReport _status;

    public SandboxManager(NodeSettings settings, SandboxHostCommand host, IRegistryClient registry, ILoggerFactory? logging = null)
    {
        logging ??= NullLoggerFactory.Instance;
        var log = logging.CreateLogger("TrEnv.Worker");
        Logs = new FunctionLogs(settings.Name);
        if (settings.PoolMode == PoolMode.Rdma)
        {
            // On tmpfs: userfaultfd serves missing pages of shmem mappings, and the page cache is what instances share.
            var id = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(settings.DataDirectory))))[..16];
            _mirror = new PoolCache(Path.Combine("/dev/shm", $"trenv-mirror-{id}", "pool"), settings.PoolSizeMb << 20, settings.PoolUrl, settings.PoolSecret,
                lazy: settings.PoolFetch != PoolFetch.Eager, log: log);
            log.LogInformation("worker {Node}: pool mode rdma ({Fetch}): templates come from {Url} into {Mirror}; the pool file is never opened",
                settings.Name, NodeChoices.Name(settings.PoolFetch), settings.PoolUrl, _mirror.Path);
        }
        var poolPath = _mirror?.Path ?? settings.PoolPath;
        var directories = WorkerDirectories.Create(settings.DataDirectory);
        _isolation = new NodeIsolation(settings, host, directories, log);
        _poolCharges = _isolation.Cgroups?.Create("pool");
        _compileCharges = _isolation.Cgroups?.Create("compile");
        _compileCharges?.SetLimits((long)settings.CompileMemoryMb << 20, 1.0); // one core: the other stays for sandboxes
        var compiler = new ModuleCompiler(directories.Modules, settings.CompileCacheDirectory, host, _compileCharges, TimeSpan.FromSeconds(settings.CompileTimeoutSeconds), settings.Name);
        _artifacts = new ArtifactStore(settings, directories, registry, compiler);
        var relay = new SandboxLogRelay(settings.Name, logging.CreateLogger("TrEnv.Sandbox"));
        var factory = new SandboxFactory(settings, host, _isolation, directories, poolPath, _mirror?.PageSocket, _poolCharges, relay.OnLine, log);
        _pool = new SandboxPool<IsolatedSandbox>(factory, settings.MaxSandboxes);
        var templates = new LocalTemplates(directories.Templates);
        var mappings = new TemplateMappings(settings.Name, _pool, registry);
        var bound = new MemoryBound(settings, _pool, mappings, log);
        var capture = new TemplateCapture(settings.Name, poolPath, registry, _mirror, templates, log);
        var loader = new InstanceLoader(settings, _pool, directories, poolPath, _mirror, templates, capture, log);
        _retirement = new VersionRetirement(_pool, templates, _artifacts, mappings);
        _invocations = new InvocationPipeline(settings, _pool, _artifacts, loader, bound, _retirement, templates, _mirror, Logs, log);
        Sessions = new SessionHost(settings, _pool, _artifacts, loader, templates, bound, mappings, registry, _mirror, poolPath, Logs, log);
        _maintenance = new Maintenance(settings, _pool, poolPath, bound, _retirement, Sessions, mappings, log);
        _status = new StatusReport(settings, _pool, _isolation, bound);
    }

    /// <summary>As GET /v1/cluster shows it, e.g. <c>namespaces+rootfs+cgroup-v1</c>.</summary>
    public string Isolation => _isolation.Name;

    /// <summary>The guests' stdout and stderr per function (GET /v1/functions/NAME/logs gathers them).</summary>
    public FunctionLogs Logs { get; }

    public SessionHost Sessions { get; }

    public Task<WorkerInvokeResult> InvokeAsync(WorkerInvoke request, CancellationToken ct) => _invocations.InvokeAsync(request, ct);

    public Task PrepareAheadAsync(WorkerPrepare prepare) => _invocations.PrepareAheadAsync(prepare);

    public Task<int> ForgetAsync(WorkerForget forget, CancellationToken ct) => _retirement.ForgetAsync(forget, ct);

    public Task<int> ReclaimAsync(string? function, bool destroy, CancellationToken ct) => _maintenance.ReclaimAsync(function, destroy, ct);

    public Task MaintainAsync(CancellationToken ct) => _maintenance.RunAsync(ct);

    public WorkerStatus Snapshot(string address) => _status.Snapshot(address);

    public async ValueTask DisposeAsync()
    {
        await _pool.DestroyAsync(_pool.All());
        _mirror?.Dispose();
        _artifacts.Dispose();
        _poolCharges?.Dispose();
        _compileCharges?.Dispose();
        _isolation.Dispose();
    }
}
