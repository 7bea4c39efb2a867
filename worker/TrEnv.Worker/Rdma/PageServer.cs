using System.Net.Sockets;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace TrEnv.Worker;

/// <summary>
/// The unix socket lazily restored sandboxes ask for missing pages on (userfaultfd): each request is filled
/// into the node's mirror by the given callback before it is answered.
/// </summary>
internal sealed class PageServer : IDisposable
{
    private readonly Socket _listener;
    private readonly Func<long, long, CancellationToken, Task> _fill;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();

    public PageServer(string socketPath, Func<long, long, CancellationToken, Task> fill, ILogger log)
    {
        SocketPath = socketPath;
        _fill = fill;
        _log = log;
        File.Delete(socketPath);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        if (OperatingSystem.IsLinux())
            File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _listener.Listen(64);
        _ = AcceptAsync();
    }

    public string SocketPath { get; }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            _ = ServeAsync(client);
        }
    }

    // One sandbox's fault handler: requests of (mirror offset, length) answered with a status once the
    // bytes are in the mirror.
    private async Task ServeAsync(Socket client)
    {
        using (client)
        {
            var request = new byte[16];
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    if (!await ReadExactlyAsync(client, request))
                        return;
                    var offset = BitConverter.ToInt64(request, 0);
                    var length = BitConverter.ToInt64(request, 8);
                    long status = 0;
                    try
                    {
                        await _fill(offset, length, _stop.Token);
                    }
                    catch (Exception e) when (e is RpcException or IOException or InvalidOperationException)
                    {
                        _log.LogError("page server: [{Offset}, +{Length}) could not be fetched: {Error}", offset, length, e.Message);
                        status = -1;
                    }
                    await client.SendAsync(BitConverter.GetBytes(status), SocketFlags.None, _stop.Token);
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
                {
                    return;
                }
            }
        }
    }

    private static async Task<bool> ReadExactlyAsync(Socket socket, byte[] buffer)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(done), SocketFlags.None);
            if (n == 0)
                return false;
            done += n;
        }
        return true;
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        File.Delete(SocketPath);
    }
}
