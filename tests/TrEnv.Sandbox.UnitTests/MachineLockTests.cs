using TrEnv.Sandbox;

namespace TrEnv.Tests;

public sealed class MachineLockTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("trenv-lock-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task A_second_holder_waits_for_the_first_and_gives_up_at_its_deadline()
    {
        var path = Path.Combine(_dir, "compile.lock");
        var first = await MachineLock.TakeAsync(path, TimeSpan.FromSeconds(1), CancellationToken.None);

        await Assert.ThrowsAsync<TimeoutException>(() => MachineLock.TakeAsync(path, TimeSpan.FromMilliseconds(500), CancellationToken.None));

        var second = MachineLock.TakeAsync(path, TimeSpan.FromSeconds(30), CancellationToken.None);
        Assert.False(second.IsCompleted);
        first.Dispose();
        using var held = await second.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
