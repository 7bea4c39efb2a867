using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using TrEnv.Contracts;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool.Protocol;
using PoolGrpc = TrEnv.MemoryPool.Protocol.MemoryPool;

namespace TrEnv.Worker;

/// <summary>
/// The RDMA-emulated pool (<c>TRENV_POOL_MODE=rdma</c>): a worker that shares no memory with the pool reads
/// templates over gRPC into a node-local mirror, a sparse file laid out like the pool, and its sandboxes
/// map that mirror <c>MAP_PRIVATE</c> exactly as they would map the pool, so instances on this node share
/// its pages. A template is fetched whole before its first restore here (eager); captures are written
/// into the mirror by the sandbox and then streamed to the pool service.
/// </summary>
public sealed partial class PoolCache : IDisposable
{
    private const int Chunk = 1 << 20;
    private readonly GrpcChannel _channel;
    private readonly PoolGrpc.MemoryPoolClient _client;
    private readonly Metadata _auth = [];
    private readonly SafeFileHandle _mirror;
    private readonly object _gate = new();
    private readonly Dictionary<string, (string Stamp, long Offset, long Length)> _present = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Task> _fetching = new(StringComparer.Ordinal);
    private readonly ILogger _log;
    private long _bytesFetched;
    private long _bytesSent;

    public PoolCache(string path, long capacity, string url, string? secret, bool lazy = false, ILogger? log = null)
    {
        _log = log ?? NullLogger.Instance;
        Path = path;
        var directory = System.IO.Path.GetDirectoryName(path)!;
        SweepAbandoned(directory);
        Directory.CreateDirectory(directory);
        File.WriteAllText(System.IO.Path.Combine(directory, OwnerFile), ProcessIdentity(Environment.ProcessId));
        // A cache: whatever a previous worker left is dropped, so nothing stale is ever mapped.
        File.Delete(path);
        _mirror = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite);
        RandomAccess.SetLength(_mirror, capacity);
        _channel = GrpcChannel.ForAddress(url, new GrpcChannelOptions { MaxReceiveMessageSize = 8 << 20, MaxSendMessageSize = 8 << 20 });
        _client = new PoolGrpc.MemoryPoolClient(_channel);
        if (secret is not null)
            _auth.Add("authorization", "Bearer " + secret);
        if (lazy)
            _pageServer = new PageServer(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path)!, "pages.sock"), FillAsync, _log);
    }

    private const string OwnerFile = "owner";

    // Mirrors live on tmpfs (memory): those of workers that died without cleaning up (kill -9) would stay until
    // reboot. Each mirror names its worker (pid and start time); a starting worker removes the mirrors beside its
    // own whose worker is gone. One without an owner file is left for a minute (its worker may be starting).
    private static void SweepAbandoned(string own)
    {
        var parent = System.IO.Path.GetDirectoryName(own);
        if (parent is null || !Directory.Exists(parent))
            return;
        foreach (var dir in Directory.EnumerateDirectories(parent, "trenv-mirror-*"))
        {
            if (dir == own)
                continue;
            try
            {
                var owner = System.IO.Path.Combine(dir, OwnerFile);
                var abandoned = File.Exists(owner)
                    ? File.ReadAllText(owner).Trim() is var id && id.Split(' ') is [var pid, _] && int.TryParse(pid, out var p) && ProcessIdentity(p) != id
                    : DateTime.UtcNow - Directory.GetLastWriteTimeUtc(dir) > TimeSpan.FromMinutes(1);
                if (abandoned)
                    Directory.Delete(dir, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another worker is sweeping or starting there: leave it.
            }
        }
    }

    // "PID STARTTIME" (clock ticks since boot, /proc/PID/stat field 22), so a reused pid is told apart; "" when not running.
    private static string ProcessIdentity(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return $"{pid} {stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19]}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>The mirror file sandboxes map in place of the pool.</summary>
    public string Path { get; }

    public long BytesFetched => Interlocked.Read(ref _bytesFetched);
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Makes the template's pages present in the mirror (one fetch per template, however many ask).</summary>
    public Task EnsureAsync(TemplateInfo template, CancellationToken ct, (long Offset, long Length)? extra = null)
    {
        var stamp = Stamp(template);
        lock (_gate)
        {
            if (_present.TryGetValue(template.Key, out var p) && p.Stamp == stamp)
                return Task.CompletedTask;
            if (_fetching.TryGetValue(stamp, out var running))
                return running;
            var fetch = FetchAsync(template, stamp, ct, extra);
            _fetching[stamp] = fetch;
            return fetch;
        }
    }

    private async Task FetchAsync(TemplateInfo template, string stamp, CancellationToken ct, (long Offset, long Length)? extra)
    {
        try
        {
            var header = TemplateHeader.FromBytes(template.Header, template.Key);
            lock (_gate)
                Forget(header.RegionOffset, header.RegionLength);
            Zero(header.RegionOffset, header.RegionLength);
            var request = new ReadRequest { Owner = template.Key };
            request.Ranges.AddRange(header.Runs.Select(r => new PageRange { Offset = r.RegionOffset, Length = r.Length }));
            if (extra is { } e)
                request.Ranges.Add(new PageRange { Offset = e.Offset, Length = e.Length });
            using var call = _client.Read(request, _auth, cancellationToken: ct);
            await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
            {
                RandomAccess.Write(_mirror, chunk.Data.Span, header.RegionOffset + chunk.Offset);
                Interlocked.Add(ref _bytesFetched, chunk.Data.Length);
            }
            lock (_gate)
                _present[template.Key] = (stamp, header.RegionOffset, header.RegionLength);
        }
        finally
        {
            lock (_gate)
                _fetching.Remove(stamp);
        }
    }

    /// <summary>
    /// Streams a capture the sandbox wrote into the mirror to the pool service, run by run, then <paramref name="extra"/>
    /// (region-relative: a session's /tmp archive after its pages).
    /// </summary>
    public async Task UploadAsync(string owner, TemplateHeader header, CancellationToken ct, (long Offset, long Length)? extra = null)
    {
        using var call = _client.Write(_auth, cancellationToken: ct);
        var buffer = new byte[Chunk];
        var first = true;
        foreach (var run in header.Runs.Select(r => (r.RegionOffset, r.Length)).Concat(extra is { } e ? [(e.Offset, e.Length)] : []))
        {
            for (long done = 0; done < run.Length;)
            {
                var n = (int)Math.Min(Chunk, run.Length - done);
                var read = RandomAccess.Read(_mirror, buffer.AsSpan(0, n), header.RegionOffset + run.RegionOffset + done);
                if (read != n)
                    throw new IOException($"the mirror returned {read} of {n} bytes");
                await call.RequestStream.WriteAsync(new WriteChunk { Owner = first ? owner : "", Offset = run.RegionOffset + done, Data = ByteString.CopyFrom(buffer, 0, n) }, ct);
                first = false;
                done += n;
            }
        }
        if (first)
            await call.RequestStream.WriteAsync(new WriteChunk { Owner = owner, Offset = 0, Data = ByteString.Empty }, ct);
        await call.RequestStream.CompleteAsync();
        Interlocked.Add(ref _bytesSent, (await call.ResponseAsync).Bytes);
    }

    /// <summary>Records that the mirror holds a template this worker captured itself.</summary>
    public void MarkPresent(TemplateInfo template)
    {
        lock (_gate)
        {
            Forget(template.Region.Offset, template.Region.Length);
            _present[template.Key] = (Stamp(template), template.Region.Offset, template.Region.Length);
        }
    }

    private static string Stamp(TemplateInfo t) => $"{t.Key}/{t.SealedAt.ToUnixTimeMilliseconds()}/{t.Region.Offset}";

    // A region reused by another template overwrites the old one's pages: it is no longer present.
    private void Forget(long offset, long length)
    {
        foreach (var key in _present.Where(kv => kv.Value.Offset < offset + length && offset < kv.Value.Offset + kv.Value.Length).Select(kv => kv.Key).ToList())
            _present.Remove(key);
    }

    private unsafe void Zero(long offset, long length)
    {
        const int FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02;
        if (Tmds.Linux.LibC.fallocate((int)_mirror.DangerousGetHandle(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0)
            RandomAccess.Write(_mirror, new byte[length], offset); // a file system without hole punching
    }

    public void Dispose()
    {
        _pageServer?.Dispose();
        _channel.Dispose();
        _mirror.Dispose();
        try
        {
            File.Delete(Path);
            Directory.Delete(System.IO.Path.GetDirectoryName(Path)!, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
