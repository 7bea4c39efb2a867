using TrEnv.Engine;

namespace TrEnv.Tests;

/// <summary>One engine and module cache shared by the tests of a class, as in a sandbox process.</summary>
public sealed class EngineFixture : IDisposable
{
    private readonly TempDir _dir = new("trenv-engine");

    public EngineFixture()
    {
        Engine = new WasmEngine();
        Cache = new ModuleCache(Engine, Path.Combine(_dir.Path, "modules"));
        PoolPath = Path.Combine(_dir.Path, "pool");
    }

    public WasmEngine Engine { get; }
    public ModuleCache Cache { get; }
    public string PoolPath { get; }
    public string Scratch => _dir.Path;

    public GuestModule Load(string guest) => Cache.Add(TestGuests.Bytes(guest));

    public void Dispose()
    {
        Engine.Dispose();
        _dir.Dispose();
    }
}
