namespace TrEnv.Sandbox;

/// <summary>
/// An exclusive lock shared by the processes of one machine (containers too, through a shared volume): an
/// advisory <c>flock</c> on a lock file, which .NET takes for <see cref="FileShare.None"/>. The kernel drops it
/// when its holder exits, so a killed worker never leaves the machine locked.
/// </summary>
public sealed class MachineLock : IDisposable
{
    private static readonly TimeSpan Retry = TimeSpan.FromMilliseconds(200);
    private readonly FileStream _file;

    private MachineLock(FileStream file) => _file = file;

    /// <summary>Waits for the lock until <paramref name="deadline"/>, then throws <see cref="TimeoutException"/>.</summary>
    public static async Task<MachineLock> TakeAsync(string path, TimeSpan deadline, CancellationToken ct)
    {
        var until = DateTime.UtcNow + deadline;
        while (true)
        {
            try
            {
                return new MachineLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException) when (DateTime.UtcNow < until)
            {
                await Task.Delay(Retry, ct);
            }
            catch (IOException e)
            {
                throw new TimeoutException($"{path} stayed locked by another process for {deadline.TotalSeconds:0} s.", e);
            }
        }
    }

    public void Dispose() => _file.Dispose();
}
