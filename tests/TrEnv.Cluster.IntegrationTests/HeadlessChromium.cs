using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json;

namespace TrEnv.Tests;

/// <summary>
/// Debian's chromium, headless, driven over the Chrome DevTools Protocol on one page target: navigate,
/// evaluate JavaScript, take screenshots. Only ClientWebSocket and System.Text.Json; no browser driver package.
/// </summary>
public sealed class HeadlessChromium : IAsyncDisposable
{
    public const string Binary = "/usr/bin/chromium";

    private readonly Process _process;
    private readonly string _profile;
    private readonly ClientWebSocket _socket = new();
    private readonly ConcurrentDictionary<int, TaskCompletionSource<JsonElement>> _pending = new();
    private readonly SemaphoreSlim _send = new(1, 1);
    private readonly ConcurrentQueue<string> _stderr = new();
    private Task? _reader;
    private int _nextId;

    private HeadlessChromium(Process process, string profile)
    {
        _process = process;
        _profile = profile;
    }

    /// <summary>What chromium wrote to stderr (mostly harmless noise: dbus, GPU), for failure messages.</summary>
    public string Stderr => string.Join('\n', _stderr.TakeLast(40));

    public static async Task<HeadlessChromium> LaunchAsync(int width = 1400, int height = 1000)
    {
        if (!File.Exists(Binary))
            throw new InvalidOperationException($"{Binary} is missing: ./test.sh installs Debian's chromium (scripts/bootstrap.sh).");
        var profile = Directory.CreateTempSubdirectory("trenv-chromium-").FullName;
        var psi = new ProcessStartInfo(Binary) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        // Root needs --no-sandbox; a fresh profile is required for remote debugging; port 0 picks a free one.
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                     "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                     $"--user-data-dir={profile}", $"--window-size={width},{height}", "about:blank" })
            psi.ArgumentList.Add(a);
        psi.Environment["XDG_CONFIG_HOME"] = psi.Environment["XDG_CACHE_HOME"] = profile;
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var browser = new HeadlessChromium(process, profile);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            browser._stderr.Enqueue(e.Data);
            const string Marker = "DevTools listening on ";
            if (e.Data.StartsWith(Marker, StringComparison.Ordinal))
                listening.TrySetResult(new Uri(e.Data[Marker.Length..].Trim()));
        };
        process.OutputDataReceived += (_, _) => { };
        process.Exited += (_, _) => listening.TrySetException(new InvalidOperationException("chromium exited before it listened:\n" + browser.Stderr));
        process.Start();
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            var devtools = await listening.Task.WaitAsync(TimeSpan.FromSeconds(60));
            // The page target shows up in /json/list a moment after the browser listens.
            using var http = new HttpClient(new HttpClientHandler { UseProxy = false });
            Uri? page = null;
            await Poll.UntilAsync(async () =>
            {
                using var list = JsonDocument.Parse(await http.GetStringAsync($"http://127.0.0.1:{devtools.Port}/json/list"));
                page = list.RootElement.EnumerateArray().Where(t => t.GetProperty("type").GetString() == "page")
                    .Select(t => new Uri(t.GetProperty("webSocketDebuggerUrl").GetString()!)).FirstOrDefault();
                return page is not null;
            }, TimeSpan.FromSeconds(20), () => "chromium's page target");
            browser._socket.Options.Proxy = null;
            await browser._socket.ConnectAsync(page!, CancellationToken.None);
            browser._reader = Task.Run(browser.ReadLoopAsync);
            await browser.SendAsync("Page.enable");
            await browser.SendAsync("Emulation.setDeviceMetricsOverride", new { width, height, deviceScaleFactor = 1, mobile = false });
            return browser;
        }
        catch
        {
            await browser.DisposeAsync();
            throw;
        }
    }

    public async Task NavigateAsync(string url)
    {
        var result = await SendAsync("Page.navigate", new { url });
        if (result.TryGetProperty("errorText", out var error))
            throw new InvalidOperationException($"chromium could not open {url}: {error.GetString()}");
        await Poll.UntilAsync(async () => await EvaluateAsync<string>("document.readyState") == "complete", TimeSpan.FromSeconds(20), () => $"{url} to load");
    }

    /// <summary>Evaluates <paramref name="expression"/> in the page and returns its value; a JavaScript exception is thrown here.</summary>
    public async Task<T?> EvaluateAsync<T>(string expression)
    {
        var result = await SendAsync("Runtime.evaluate", new { expression, returnByValue = true, awaitPromise = true });
        if (result.TryGetProperty("exceptionDetails", out var exception))
            throw new InvalidOperationException($"{expression} threw in the page: {exception.GetRawText()}");
        var value = result.GetProperty("result");
        return value.TryGetProperty("value", out var v) ? v.Deserialize<T>() : default;
    }

    public async Task<byte[]> ScreenshotAsync()
        => Convert.FromBase64String((await SendAsync("Page.captureScreenshot", new { format = "png" })).GetProperty("data").GetString()!);

    private async Task<JsonElement> SendAsync(string method, object? parameters = null)
    {
        var id = Interlocked.Increment(ref _nextId);
        var reply = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new { id, method, @params = parameters ?? new { } });
        await _send.WaitAsync();
        try
        {
            await _socket.SendAsync(bytes, WebSocketMessageType.Text, true, CancellationToken.None);
        }
        finally
        {
            _send.Release();
        }
        return await reply.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }

    // Replies (with an id) complete their callers; events (a method, no id) are ignored. Messages may span frames.
    private async Task ReadLoopAsync()
    {
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        try
        {
            while (_socket.State == WebSocketState.Open)
            {
                message.SetLength(0);
                ValueWebSocketReceiveResult r;
                do
                {
                    r = await _socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None);
                    if (r.MessageType == WebSocketMessageType.Close)
                        return;
                    message.Write(buffer, 0, r.Count);
                }
                while (!r.EndOfMessage);
                using var doc = JsonDocument.Parse(message.GetBuffer().AsMemory(0, (int)message.Length));
                if (doc.RootElement.TryGetProperty("id", out var id) && _pending.TryRemove(id.GetInt32(), out var waiting))
                {
                    if (doc.RootElement.TryGetProperty("error", out var error))
                        waiting.TrySetException(new InvalidOperationException("CDP error: " + error.GetRawText()));
                    else
                        waiting.TrySetResult(doc.RootElement.GetProperty("result").Clone());
                }
            }
        }
        catch (Exception e) when (e is WebSocketException or ObjectDisposedException)
        {
        }
        finally
        {
            foreach (var waiting in _pending.Values)
                waiting.TrySetException(new InvalidOperationException("The DevTools connection closed."));
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_socket.State == WebSocketState.Open)
                await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(3));
        }
        catch (Exception e) when (e is WebSocketException or TimeoutException or OperationCanceledException)
        {
        }
        _socket.Dispose();
        try
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
        }
        if (_reader is not null)
            await _reader.WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(_ => { }, TaskScheduler.Default);
        _process.Dispose();
        try
        {
            Directory.Delete(_profile, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
