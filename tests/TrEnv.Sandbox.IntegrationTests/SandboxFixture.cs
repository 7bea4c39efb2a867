using TrEnv.Engine;
using TrEnv.MemoryPool;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.Tests;

/// <summary>Real sandbox host processes over a shared module directory and pool file.</summary>
public sealed class SandboxFixture : IDisposable
{
    private readonly TempDir _dir = new("trenv-sandbox");
    private readonly RegionAllocator _allocator;
    private int _sandboxes;

    public SandboxFixture()
    {
        Host = SandboxHostCommand.Resolve();
        ModuleDirectory = _dir.Sub("modules");
        TemplateDirectory = _dir.Sub("templates");
        PoolPath = Path.Combine(_dir.Path, "pool");
        Pool = PoolDevice.OpenOrCreate(PoolPath, 2L << 30);
        _allocator = new RegionAllocator(Pool.Capacity);
        _rootBase = new(() => TrEnv.Sandbox.Isolation.SandboxRootfs.BuildBase(_dir.Sub("rootfs-base"), Host).Base);
    }

    public SandboxHostCommand Host { get; }
    public string ModuleDirectory { get; }
    public string TemplateDirectory { get; }
    public string PoolPath { get; }
    public PoolDevice Pool { get; }

    private readonly Lazy<string?> _rootBase;

    /// <summary>
    /// The host in its own namespaces and root filesystem (binds: modules, templates, pool; the host's own
    /// directory read-only), or null when this process may not make namespaces or the host cannot run from a
    /// root of its own (the JIT host).
    /// </summary>
    public SandboxHostCommand? Isolated(bool network = false, IReadOnlyList<string>? readOnly = null)
    {
        if (!TrEnv.Sandbox.Isolation.Namespaces.Available || _rootBase.Value is not { } root)
            return null;
        return TrEnv.Sandbox.Isolation.Namespaces.Wrap(Host,
            new TrEnv.Sandbox.Isolation.SandboxRootfs(root, [ModuleDirectory, TemplateDirectory, PoolPath], [Path.GetDirectoryName(Host.FileName)!, .. readOnly ?? []]), network);
    }

    public string Sub(string name) => _dir.Sub(name);

    public SandboxProcess Start(TimeSpan? hardDeadlineGrace = null)
        => SandboxProcess.Start(Host, _dir.Sub($"sb{Interlocked.Increment(ref _sandboxes)}"), hardDeadlineGrace);

    public string Put(string guest) => ModuleCache.Put(ModuleDirectory, TestGuests.Bytes(guest)).Hex;

    public string PutBytes(byte[] wasm) => ModuleCache.Put(ModuleDirectory, wasm).Hex;

    public InstanceSpec Spec(string function, string hash, long memoryLimit = 256L << 20, int timeoutMs = 10_000)
        => new(function, hash, ModuleDirectory, memoryLimit, timeoutMs, 60_000, []);

    public LoadCold ColdLoad(string function, string hash, long memoryLimit = 256L << 20, int timeoutMs = 10_000)
        => new(Spec(function, hash, memoryLimit, timeoutMs));

    public LoadFromTemplate TemplateLoad(string function, string hash, string templatePath, LoadSource source = LoadSource.MapTemplate, bool verify = false)
        => new(Spec(function, hash), new TemplatePages(templatePath, PoolPath, source, verify));

    /// <summary>Captures the sandbox's loaded instance: ask the size, allocate, write.</summary>
    public async Task<string> CaptureAsync(SandboxProcess sandbox, string name)
    {
        var header = Path.Combine(TemplateDirectory, name + ".tpl");
        var probe = await sandbox.CaptureAsync(new Capture(PoolPath, 0, 0, header, "test"));
        Assert.False(probe.Written);
        Region region;
        lock (_allocator)
            region = _allocator.Allocate(probe.RequiredBytes);
        var done = await sandbox.CaptureAsync(new Capture(PoolPath, region.Offset, region.Length, header, "test"));
        Assert.True(done.Written);
        return header;
    }

    public void Dispose()
    {
        Pool.Dispose();
        _dir.Dispose();
    }
}
