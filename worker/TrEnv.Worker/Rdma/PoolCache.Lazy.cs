using Grpc.Core;
using Microsoft.Extensions.Logging;
using TrEnv.Contracts;
using TrEnv.MemoryPool.Protocol;

namespace TrEnv.Worker;

// Lazy restore (TRENV_POOL_FETCH lazy or prefetch): a template's pages reach the mirror as its sandboxes touch
// them, through the page server, and the windows the first invocation needed become its working set.
public sealed partial class PoolCache
{
    private readonly PageServer? _pageServer;
    private readonly Dictionary<string, (string Owner, long Offset, long Length)> _lazy = new(StringComparer.Ordinal); // stamp -> region
    private readonly Dictionary<string, List<(long Offset, long Length)>> _served = new(StringComparer.Ordinal); // owner -> windows, region-relative
    private readonly HashSet<string> _published = new(StringComparer.Ordinal);

    /// <summary>The unix socket sandboxes ask for missing pages on (lazy mode), or null.</summary>
    public string? PageSocket => _pageServer?.SocketPath;

    /// <summary>
    /// Lazy mode: makes the template's region fault into the page server instead of fetching it. The first
    /// time a template is seen, its region in the mirror is emptied, so only its own pages ever fill it.
    /// </summary>
    public async Task PrepareLazyAsync(TemplateInfo template, bool prefetch, CancellationToken ct)
    {
        var stamp = Stamp(template);
        lock (_gate)
        {
            if (_present.TryGetValue(template.Key, out var p) && p.Stamp == stamp)
                return;
            Forget(template.Region.Offset, template.Region.Length);
            foreach (var old in _lazy.Where(kv => kv.Value.Offset < template.Region.Offset + template.Region.Length && template.Region.Offset < kv.Value.Offset + kv.Value.Length).Select(kv => kv.Key).ToList())
                _lazy.Remove(old);
            Zero(template.Region.Offset, template.Region.Length);
            _lazy[stamp] = (template.Key, template.Region.Offset, template.Region.Length);
            // Present from now on: pages arrive as they are touched, and stay for every later instance.
            _present[template.Key] = (stamp, template.Region.Offset, template.Region.Length);
            _served[template.Key] = [];
        }
        if (!prefetch)
            return;
        // Working-set prefetch (REAP): the pages an earlier first invocation touched, in one read, before the load.
        var set = await _client.GetWorkingSetAsync(new OwnerRequest { Owner = template.Key }, _auth, cancellationToken: ct);
        if (set.Ranges.Count == 0)
            return;
        var request = new ReadRequest { Owner = template.Key };
        request.Ranges.AddRange(set.Ranges);
        using var call = _client.Read(request, _auth, cancellationToken: ct);
        await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
        {
            RandomAccess.Write(_mirror, chunk.Data.Span, template.Region.Offset + chunk.Offset);
            Interlocked.Add(ref _bytesFetched, chunk.Data.Length);
        }
    }

    /// <summary>
    /// After the first invocation of a lazily restored template on this node: offers the windows it needed
    /// (restore and invocation) to the pool as the template's working set; the pool keeps the first one.
    /// </summary>
    public async Task PublishWorkingSetAsync(TemplateInfo template, CancellationToken ct)
    {
        WorkingSet set;
        lock (_gate)
        {
            if (!_published.Add(Stamp(template)) || !_served.TryGetValue(template.Key, out var windows) || windows.Count == 0)
                return;
            set = new WorkingSet { Owner = template.Key };
            set.Ranges.AddRange(windows.Order().Select(w => new PageRange { Offset = w.Offset, Length = w.Length }));
        }
        try
        {
            await _client.SetWorkingSetAsync(set, _auth, cancellationToken: ct);
        }
        catch (RpcException e)
        {
            _log.LogError("worker: could not record the working set of {Template}: {Error}", template.Key, e.Status.Detail);
        }
    }

    private async Task FillAsync(long offset, long length, CancellationToken ct)
    {
        (string Owner, long Offset, long Length) region;
        lock (_gate)
            region = _lazy.Values.FirstOrDefault(r => offset >= r.Offset && offset + length <= r.Offset + r.Length);
        if (region.Owner is null)
            throw new InvalidOperationException("no template registered for lazy restore holds that range");
        lock (_gate)
        {
            if (_served.TryGetValue(region.Owner, out var windows))
                windows.Add((offset - region.Offset, length));
        }
        using var call = _client.Read(new ReadRequest { Owner = region.Owner, Ranges = { new PageRange { Offset = offset - region.Offset, Length = length } } }, _auth, cancellationToken: ct);
        await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
        {
            RandomAccess.Write(_mirror, chunk.Data.Span, region.Offset + chunk.Offset);
            Interlocked.Add(ref _bytesFetched, chunk.Data.Length);
        }
    }
}
