using Akka.Actor;
using Akka.Hosting;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Status = Grpc.Core.Status;
using TrEnv.Contracts;
using TrEnv.MemoryPool.Protocol;

namespace TrEnv.MemoryPool.Node;

/// <summary>
/// The pool over gRPC: allocation through the persistent allocator entity, capture writes and streamed
/// page reads on the device, both confined to the owner's region. A region being rebuilt from its durable
/// copy is not read: the client gets Unavailable and starts cold instead.
/// </summary>
public sealed class PoolService(PoolDevice device, PoolDurability durability, IRequiredActor<PoolRegionKey> pool) : Protocol.MemoryPool.MemoryPoolBase
{
    private const int MaxChunk = 1 << 20;
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);
    private static long _bytesRead;
    private static long _bytesWritten;

    public override async Task<RegionReply> Allocate(AllocateRequest request, ServerCallContext context)
    {
        CheckOwner(request.Owner);
        var reply = await pool.ActorRef.Ask<IProtocolMessage>(new PoolCommands.Allocate(PoolCommands.DefaultPool, request.Owner, request.Bytes), AskTimeout, context.CancellationToken);
        return reply switch
        {
            PoolReplies.Allocated a => new RegionReply { Owner = a.Owner, Found = true, Offset = a.Region.Offset, Length = a.Region.Length, Readable = true },
            PoolReplies.Full f => throw new RpcException(new Status(StatusCode.ResourceExhausted, f.Message)),
            _ => throw new RpcException(new Status(StatusCode.Internal, $"unexpected allocator answer {reply.GetType().Name}")),
        };
    }

    public override async Task<FreeReply> Free(OwnerRequest request, ServerCallContext context)
    {
        CheckOwner(request.Owner);
        var freed = await pool.ActorRef.Ask<PoolReplies.Freed>(new PoolCommands.Free(PoolCommands.DefaultPool, request.Owner), AskTimeout, context.CancellationToken);
        return new FreeReply { Existed = freed.Existed };
    }

    public override async Task<RegionReply> Find(OwnerRequest request, ServerCallContext context)
    {
        CheckOwner(request.Owner);
        var found = await FindAsync(request.Owner, context.CancellationToken);
        return found.Region is { } r
            ? new RegionReply { Owner = found.Owner, Found = true, Offset = r.Offset, Length = r.Length, Readable = found.Readable }
            : new RegionReply { Owner = found.Owner, Found = false };
    }

    public override async Task<WriteReply> Write(IAsyncStreamReader<WriteChunk> requestStream, ServerCallContext context)
    {
        PoolRegion? region = null;
        long written = 0;
        await foreach (var chunk in requestStream.ReadAllAsync(context.CancellationToken))
        {
            if (region is null)
            {
                CheckOwner(chunk.Owner);
                region = (await FindAsync(chunk.Owner, context.CancellationToken)).Region
                    ?? throw new RpcException(new Status(StatusCode.NotFound, $"{chunk.Owner} has no region: allocate first."));
            }
            CheckRange(region, chunk.Offset, chunk.Data.Length);
            device.Write(region.Offset + chunk.Offset, chunk.Data.Span);
            written += chunk.Data.Length;
        }
        Interlocked.Add(ref _bytesWritten, written);
        return new WriteReply { Bytes = written };
    }

    public override async Task Read(ReadRequest request, IServerStreamWriter<PageChunk> responseStream, ServerCallContext context)
    {
        CheckOwner(request.Owner);
        var found = await FindAsync(request.Owner, context.CancellationToken);
        var region = found.Region ?? throw new RpcException(new Status(StatusCode.NotFound, $"{request.Owner} has no region."));
        if (!found.Readable || !durability.IsReadable(request.Owner))
            throw new RpcException(new Status(StatusCode.Unavailable, $"{request.Owner} is being rebuilt from its durable copy; start cold and retry later."));
        var buffer = new byte[MaxChunk];
        foreach (var range in request.Ranges)
        {
            CheckRange(region, range.Offset, range.Length);
            for (long done = 0; done < range.Length;)
            {
                var n = (int)Math.Min(MaxChunk, range.Length - done);
                var read = device.Read(region.Offset + range.Offset + done, buffer.AsSpan(0, n));
                if (read != n)
                    throw new RpcException(new Status(StatusCode.DataLoss, $"the pool returned {read} of {n} bytes"));
                await responseStream.WriteAsync(new PageChunk { Offset = range.Offset + done, Data = ByteString.CopyFrom(buffer, 0, n) }, context.CancellationToken);
                Interlocked.Add(ref _bytesRead, n);
                done += n;
            }
        }
    }

    public override async Task<StatsReply> Stats(StatsRequest request, ServerCallContext context)
    {
        var usage = await pool.ActorRef.Ask<PoolReplies.Usage>(new PoolCommands.Stats(PoolCommands.DefaultPool), AskTimeout, context.CancellationToken);
        return new StatsReply
        {
            Capacity = usage.Capacity,
            AllocatedBytes = usage.AllocatedBytes,
            Regions = usage.Regions,
            LargestFree = usage.LargestFree,
            BytesRead = Interlocked.Read(ref _bytesRead),
            BytesWritten = Interlocked.Read(ref _bytesWritten),
        };
    }

    public override async Task<WorkingSetReply> SetWorkingSet(WorkingSet request, ServerCallContext context)
    {
        CheckOwner(request.Owner);
        var region = (await FindAsync(request.Owner, context.CancellationToken)).Region
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"{request.Owner} has no region."));
        foreach (var r in request.Ranges)
            CheckRange(region, r.Offset, r.Length);
        try
        {
            return new WorkingSetReply { Stored = durability.SetWorkingSet(request.Owner, request.Ranges.Select(r => (r.Offset, r.Length)).ToList()) };
        }
        catch (IOException)
        {
            return new WorkingSetReply { Stored = false }; // another worker's arrived first
        }
    }

    public override Task<WorkingSet> GetWorkingSet(OwnerRequest request, ServerCallContext context)
    {
        CheckOwner(request.Owner);
        var set = new WorkingSet { Owner = request.Owner };
        set.Ranges.AddRange(durability.GetWorkingSet(request.Owner).Select(r => new PageRange { Offset = r.Offset, Length = r.Length }));
        return Task.FromResult(set);
    }

    private Task<PoolReplies.Found> FindAsync(string owner, CancellationToken ct)
        => pool.ActorRef.Ask<PoolReplies.Found>(new PoolCommands.Find(PoolCommands.DefaultPool, owner), AskTimeout, ct);

    private static void CheckOwner(string owner)
    {
        if (string.IsNullOrWhiteSpace(owner) || owner.Length > 200)
            throw new RpcException(new Status(StatusCode.InvalidArgument, "An owner (a template key) is required."));
    }

    private static void CheckRange(PoolRegion region, long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > region.Length)
            throw new RpcException(new Status(StatusCode.OutOfRange, $"[{offset}, {offset + length}) is outside the region of {region.Length} bytes."));
    }
}

/// <summary>Refuses every call without the shared secret when one is configured (TRENV_POOL_SECRET).</summary>
public sealed class SharedSecretInterceptor(string? secret) : Interceptor
{
    // The standard health service answers anyone: probes carry no secret, and it reveals nothing of the pool.
    private const string HealthService = "/grpc.health.v1.Health/";

    private void Check(ServerCallContext context)
    {
        if (string.IsNullOrEmpty(secret) || context.Method.StartsWith(HealthService, StringComparison.Ordinal))
            return;
        var given = context.RequestHeaders.GetValue("authorization");
        var expected = "Bearer " + secret;
        if (given is null || !System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                System.Text.Encoding.UTF8.GetBytes(given), System.Text.Encoding.UTF8.GetBytes(expected)))
            throw new RpcException(new Status(StatusCode.Unauthenticated, "This pool needs the shared secret: metadata \"authorization: Bearer <TRENV_POOL_SECRET>\"."));
    }

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }
}
