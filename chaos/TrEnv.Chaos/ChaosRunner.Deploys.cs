using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;

namespace TrEnv.Chaos;

/// <summary>The deploy load: a new function every few seconds, each deploy recorded as the client saw it.</summary>
public sealed partial class ChaosRunner
{
    private async Task DeployLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(o.DeployEverySeconds), stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var d = await DeployAsync(CancellationToken.None);
            if (d.Acknowledged)
                _load.Add(new ChaosFunction(d.Name, d.Salt));
        }
    }

    /// <summary>Deploys the chaos guest under a new name and salt; a refused connection goes to the other coordinator.</summary>
    private async Task<DeployRecord> DeployAsync(CancellationToken ct)
    {
        var name = $"chaos-{Interlocked.Increment(ref _deployed)}";
        var salt = (ulong)_random.NextInt64(1, long.MaxValue);
        var start = DateTimeOffset.UtcNow;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(o.RequestDeadlineSeconds));
        DeployRecord record;
        while (true)
        {
            var endpoint = _coordinators.Pick();
            if (endpoint is null)
            {
                record = new DeployRecord(name, salt, start, DateTimeOffset.UtcNow, false, 0, 0, null, "no coordinator accepted connections");
                break;
            }
            try
            {
                using var content = new ByteArrayContent(_module);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
                using var r = await _http.PutAsync($"{endpoint}/v1/functions/{name}?timeoutMs=10000&memoryMb=64&env.SALT={salt}", content, timeout.Token);
                var body = await r.Content.ReadAsStringAsync(timeout.Token);
                if (r.StatusCode == HttpStatusCode.Created)
                {
                    using var doc = JsonDocument.Parse(body);
                    record = new DeployRecord(name, salt, start, DateTimeOffset.UtcNow, true, 201, doc.RootElement.GetProperty("version").GetInt32(), doc.RootElement.GetProperty("sha256").GetString(), null);
                }
                else
                {
                    record = new DeployRecord(name, salt, start, DateTimeOffset.UtcNow, false, (int)r.StatusCode, 0, null, body.Length > 300 ? body[..300] : body);
                }
                break;
            }
            catch (HttpRequestException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
            {
                _coordinators.MarkDown(endpoint);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException)
            {
                record = new DeployRecord(name, salt, start, DateTimeOffset.UtcNow, false, 0, 0, null, e.Message);
                break;
            }
        }
        _deploys.Enqueue(record);
        return record;
    }
}
