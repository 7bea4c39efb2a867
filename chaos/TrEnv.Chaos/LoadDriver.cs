using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TrEnv.Chaos;

/// <summary>A function the load invokes, with what it must answer.</summary>
public sealed record ChaosFunction(string Name, ulong Salt);

/// <summary>One invocation as the client saw it. Outcome: ok, wrong, error (an HTTP error answer), connection (lost mid-request), hung.</summary>
public sealed record RequestRecord(string Function, string Endpoint, DateTimeOffset Start, DateTimeOffset End, int Status, string? Node,
    string Outcome, string? Detail, int Reroutes)
{
    public double Seconds => (End - Start).TotalSeconds;
}

/// <summary>
/// The coordinators as a load balancer would see them: a refused connection takes one out of rotation (the
/// request goes to another, as it never reached the first), and a probe of <c>/readyz</c> brings it back.
/// </summary>
public sealed class Coordinators
{
    private readonly ConcurrentDictionary<string, bool> _up = new(StringComparer.Ordinal);
    private int _next;

    public Coordinators(IEnumerable<string> urls)
    {
        foreach (var u in urls)
            _up[u] = true;
    }

    public IReadOnlyList<string> All => _up.Keys.Order(StringComparer.Ordinal).ToList();
    public IReadOnlyList<string> Up => All.Where(u => _up[u]).ToList();

    public string? Pick()
    {
        var up = Up;
        return up.Count == 0 ? null : up[(int)((uint)Interlocked.Increment(ref _next) % up.Count)];
    }

    public void MarkDown(string url) => _up[url] = false;

    public void MarkUp(string url) => _up[url] = true;

    public async Task ProbeAsync(HttpClient http, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            foreach (var url in All.Where(u => !_up[u]))
            {
                try
                {
                    using var t = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                    using var r = await http.GetAsync(url + "/readyz", t.Token);
                    if (r.IsSuccessStatusCode)
                        MarkUp(url);
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
                {
                }
            }
            try
            {
                await Task.Delay(200, stop);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}

/// <summary>
/// Steady invocations from a few concurrent clients through every coordinator, each answer checked against
/// <see cref="ChaosGuest"/>. Nothing is retried except a refused connection (the request never reached anyone).
/// </summary>
public sealed class LoadDriver(HttpClient http, Coordinators coordinators, TimeSpan deadline)
{
    private readonly List<ChaosFunction> _functions = [];
    private readonly Lock _lock = new();

    public ConcurrentQueue<RequestRecord> Records { get; } = new();

    public void Add(ChaosFunction f)
    {
        lock (_lock)
            _functions.Add(f);
    }

    public Task RunAsync(int clients, CancellationToken stop)
        => Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(() => ClientAsync(c, stop), CancellationToken.None)));

    private async Task ClientAsync(int client, CancellationToken stop)
    {
        var random = new Random(client * 7919 + Environment.TickCount);
        long seq = 0;
        while (!stop.IsCancellationRequested)
        {
            ChaosFunction? f = null;
            lock (_lock)
            {
                if (_functions.Count > 0)
                    f = _functions[random.Next(_functions.Count)];
            }
            if (f is null)
            {
                await Task.Delay(50, CancellationToken.None);
                continue;
            }
            var input = $"c{client}-{seq++}-{random.NextInt64():x}";
            Records.Enqueue(await InvokeAsync(f, input));
        }
    }

    /// <summary>One checked invocation, rerouted only on refused connections, bounded by the deadline plus slack to see hangs.</summary>
    public async Task<RequestRecord> InvokeAsync(ChaosFunction f, string input, string? only = null)
    {
        var start = DateTimeOffset.UtcNow;
        var watch = Stopwatch.StartNew();
        var reroutes = 0;
        using var hang = new CancellationTokenSource(deadline + TimeSpan.FromSeconds(5));
        while (true)
        {
            var endpoint = only ?? coordinators.Pick();
            if (endpoint is null)
            {
                if (watch.Elapsed > deadline)
                    return new RequestRecord(f.Name, "-", start, DateTimeOffset.UtcNow, 0, null, "error", "no coordinator accepted connections", reroutes);
                await Task.Delay(50, CancellationToken.None);
                continue;
            }
            try
            {
                using var content = new StringContent(input, Encoding.UTF8);
                using var response = await http.PostAsync($"{endpoint}/v1/functions/{f.Name}/invoke", content, hang.Token);
                var body = await response.Content.ReadAsStringAsync(hang.Token);
                var end = DateTimeOffset.UtcNow;
                var node = response.Headers.TryGetValues("X-TrEnv-Node", out var n) ? n.FirstOrDefault() : null;
                var status = (int)response.StatusCode;
                var outcome = watch.Elapsed > deadline ? "hung"
                    : response.StatusCode != HttpStatusCode.OK ? "error"
                    : body == ChaosGuest.Expected(f.Salt, input) ? "ok" : "wrong";
                var detail = outcome switch
                {
                    "ok" => null,
                    "wrong" => $"answered \"{Trim(body)}\", expected \"{Trim(ChaosGuest.Expected(f.Salt, input))}\"",
                    _ => Trim(body),
                };
                return new RequestRecord(f.Name, endpoint, start, end, status, node, outcome, detail, reroutes);
            }
            catch (HttpRequestException e) when (only is null && IsRefused(e))
            {
                coordinators.MarkDown(endpoint);
                reroutes++;
            }
            catch (HttpRequestException e)
            {
                return new RequestRecord(f.Name, endpoint, start, DateTimeOffset.UtcNow, 0, null, watch.Elapsed > deadline ? "hung" : "connection", e.Message, reroutes);
            }
            catch (IOException e)
            {
                return new RequestRecord(f.Name, endpoint, start, DateTimeOffset.UtcNow, 0, null, watch.Elapsed > deadline ? "hung" : "connection", e.Message, reroutes);
            }
            catch (OperationCanceledException)
            {
                return new RequestRecord(f.Name, endpoint, start, DateTimeOffset.UtcNow, 0, null, "hung", $"no answer within {deadline.TotalSeconds + 5:0} s", reroutes);
            }
        }
    }

    private static bool IsRefused(HttpRequestException e)
        => e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused };

    private static string Trim(string s) => s.Length > 300 ? s[..300] + "…" : s;
}
