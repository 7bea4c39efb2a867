using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using TrEnv.MemoryPool.Protocol;
using PoolGrpc = TrEnv.MemoryPool.Protocol.MemoryPool;

namespace TrEnv.Tests;

/// <summary>The memory-pool service over gRPC, and templates that survive the loss of the pool.</summary>
public sealed class PoolServiceTests
{
    private static PoolGrpc.MemoryPoolClient Client(LocalCluster c, out GrpcChannel channel, string host = "127.0.0.1")
    {
        channel = GrpcChannel.ForAddress($"http://{host}:{c.PoolGrpcPort}");
        return new PoolGrpc.MemoryPoolClient(channel);
    }

    private static Metadata Secret(string secret) => new() { { "authorization", "Bearer " + secret } };

    [Fact]
    public async Task The_pool_service_refuses_a_wrong_secret_serves_regions_to_the_right_one_and_answers_the_standard_health_check()
    {
        await using var c = new LocalCluster();
        c.Environment["TRENV_POOL_SECRET"] = "s3cret";
        await c.StartAllAsync();
        var client = Client(c, out var channel);
        using (channel)
        {
            foreach (var wrong in new[] { new Metadata(), Secret("guess"), Secret("s3cret2") })
            {
                var e = await Assert.ThrowsAsync<RpcException>(async () => await client.StatsAsync(new StatsRequest(), wrong));
                Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
            }
            // The standard health check needs no secret and says the node serves.
            var health = new Grpc.Health.V1.Health.HealthClient(channel);
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving,
                (await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest())).Status);
            var right = Secret("s3cret");
            var region = await client.AllocateAsync(new AllocateRequest { Owner = "test@1", Bytes = 3 * 4096 }, right);
            Assert.True(region.Found);
            Assert.Equal(region.Offset, (await client.AllocateAsync(new AllocateRequest { Owner = "test@1", Bytes = 3 * 4096 }, right)).Offset);

            var data = Enumerable.Range(0, 2 * 4096).Select(i => (byte)(i * 7)).ToArray();
            using (var write = client.Write(right))
            {
                await write.RequestStream.WriteAsync(new WriteChunk { Owner = "test@1", Offset = 4096, Data = ByteString.CopyFrom(data, 0, 4096) });
                await write.RequestStream.WriteAsync(new WriteChunk { Offset = 8192, Data = ByteString.CopyFrom(data, 4096, 4096) });
                await write.RequestStream.CompleteAsync();
                Assert.Equal(8192, (await write.ResponseAsync).Bytes);
            }
            var back = new byte[data.Length];
            using (var read = client.Read(new ReadRequest { Owner = "test@1", Ranges = { new PageRange { Offset = 4096, Length = 8192 } } }, right))
            {
                await foreach (var chunk in read.ResponseStream.ReadAllAsync())
                    chunk.Data.Span.CopyTo(back.AsSpan((int)(chunk.Offset - 4096)));
            }
            Assert.Equal(data, back);
            Assert.Equal(data, File.ReadAllBytes(c.PoolPath).AsSpan((int)region.Offset + 4096, data.Length).ToArray()); // the device itself

            // Writes and reads stay inside the owner's region; unknown owners have none.
            using (var outside = client.Write(right))
            {
                await outside.RequestStream.WriteAsync(new WriteChunk { Owner = "test@1", Offset = 3 * 4096 - 10, Data = ByteString.CopyFrom(new byte[20]) });
                await outside.RequestStream.CompleteAsync();
                Assert.Equal(StatusCode.OutOfRange, (await Assert.ThrowsAsync<RpcException>(async () => await outside.ResponseAsync)).StatusCode);
            }
            Assert.False((await client.FindAsync(new OwnerRequest { Owner = "nobody@1" }, right)).Found);
            var stats = await client.StatsAsync(new StatsRequest(), right);
            Assert.True(stats.Regions >= 1 && stats.BytesWritten >= 8192 && stats.BytesRead >= 8192, stats.ToString());
            Assert.True((await client.FreeAsync(new OwnerRequest { Owner = "test@1" }, right)).Existed);
        }
    }

    [Fact]
    public async Task A_pool_killed_with_kill_9_and_lost_is_rebuilt_from_durable_copies_and_no_answer_is_wrong()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        var content = new ByteArrayContent(TestGuests.Bytes("heavy"));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
        Assert.Equal(HttpStatusCode.Created, (await c.Http.PutAsync("/v1/functions/heavy", content)).StatusCode);
        const string input = "7919 15838 23757";
        var cold = await c.Http.PostAsync("/v1/functions/heavy/invoke", new StringContent(input));
        Assert.Equal("cold", cold.Headers.GetValues("X-TrEnv-Start").Single());
        var expected = await cold.Content.ReadAsStringAsync();
        var copy = Path.Combine(c.Directory, "memory-pool", "durable", "heavy@1.xxh64");
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(copy)), TimeSpan.FromSeconds(30), () => "the durable copy of heavy@1");

        // The pool node dies and its device is gone (a reboot empties /dev/shm).
        c.KillOnly("memory-pool");
        File.Delete(c.PoolPath);
        var during = await c.Http.PostAsync("/v1/functions/heavy/invoke", new StringContent(input));
        var body = await during.Content.ReadAsStringAsync();
        // heavy counts its calls, so a warm instance answers calls=2; the rest must be the cold run's.
        static string Result(string output) => output[..output.LastIndexOf(" calls=", StringComparison.Ordinal)];
        Assert.True(during.StatusCode == HttpStatusCode.OK ? Result(body) == Result(expected) : during.StatusCode == HttpStatusCode.ServiceUnavailable && during.Headers.RetryAfter is not null,
            $"during the outage: {during.StatusCode} {body}");

        // Another sandbox: it starts cold (the pool is gone) or maps the lost pool's pages it still holds
        // (a bind mount keeps the old file); either way with the cold run's answer.
        (await c.Http.PostAsync("/v1/functions/heavy/scale-to-zero?destroy=true", null)).EnsureSuccessStatusCode();
        var fresh = await c.Http.PostAsync("/v1/functions/heavy/invoke", new StringContent(input));
        if (fresh.StatusCode == HttpStatusCode.OK)
            Assert.Equal(expected, await fresh.Content.ReadAsStringAsync());
        else
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, fresh.StatusCode);
            Assert.NotNull(fresh.Headers.RetryAfter);
        }

        c.StartMemoryPool(newPort: true);
        await c.WaitReadyAsync("worker-1");
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(c.PoolPath) && File.ReadAllText(Path.Combine(c.Directory, "memory-pool.log")).Contains("rebuilt heavy@1", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60), () => $"the pool to rebuild heavy@1: {c.Tail()}");

        // A worker that never saw the template restores it from the rebuilt pool, with the cold run's answer.
        c.KillOnly("worker-1");
        c.StartWorker("worker-2");
        await c.WaitReadyAsync("worker-2");
        HttpResponseMessage after = null!;
        await Poll.UntilAsync(async () =>
        {
            after = await c.Http.PostAsync("/v1/functions/heavy/invoke", new StringContent(input));
            return after.StatusCode != HttpStatusCode.ServiceUnavailable; // worker-1 may still be in the directory
        }, TimeSpan.FromSeconds(30), () => "an invocation placed on worker-2");
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        Assert.Equal("template", after.Headers.GetValues("X-TrEnv-Start").Single());
        Assert.Equal("worker-2", after.Headers.GetValues("X-TrEnv-Node").Single());
        Assert.Equal(expected, await after.Content.ReadAsStringAsync());
        var templates = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/templates")).RootElement.ToString();
        Assert.Contains("heavy@1", templates, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Templates_cross_between_cxl_workers_and_rdma_workers_that_never_open_the_pool()
    {
        await using var c = new LocalCluster();
        (string, string)[] rdma = [("TRENV_POOL_MODE", "rdma"), ("TRENV_POOL_FETCH", "eager"), ("TRENV_POOL_PATH", "/nonexistent/trenv/pool")];
        c.StartCoordinator();
        c.StartMemoryPool();
        c.StartWorker("rdma-1", env: rdma);
        await c.WaitReadyAsync("rdma-1");
        var content = new ByteArrayContent(TestGuests.Bytes("heavy"));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
        Assert.Equal(HttpStatusCode.Created, (await c.Http.PutAsync("/v1/functions/heavy", content)).StatusCode);
        const string input = "1 2 3 5 8 13";

        async Task<(string Start, string Node, string Body)> Invoke()
        {
            HttpResponseMessage r = null!;
            await Poll.UntilAsync(async () =>
            {
                r = await c.Http.PostAsync("/v1/functions/heavy/invoke", new StringContent(input));
                return r.StatusCode != HttpStatusCode.ServiceUnavailable; // a killed worker may linger in the directory
            }, TimeSpan.FromSeconds(30), () => "an invocation placed on a live worker");
            var body = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode == HttpStatusCode.OK, body);
            return (r.Headers.GetValues("X-TrEnv-Start").Single(), r.Headers.GetValues("X-TrEnv-Node").Single(), body);
        }

        // Captured on an rdma worker: written into its mirror, streamed to the pool service.
        var cold = await Invoke();
        Assert.Equal(("cold", "rdma-1"), (cold.Start, cold.Node));
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(Path.Combine(c.Directory, "memory-pool", "durable", "heavy@1.xxh64"))),
            TimeSpan.FromSeconds(30), () => "the durable copy of the template an rdma worker captured");

        // Restored from the pool file by a cxl worker.
        c.StartWorker("cxl-1");
        await c.WaitReadyAsync("cxl-1");
        c.KillOnly("rdma-1");
        var mapped = await Invoke();
        Assert.Equal(("template", "cxl-1", cold.Body), mapped);

        // Restored over gRPC by another rdma worker, which fetches the template's pages once.
        var client = Client(c, out var channel);
        using (channel)
        {
            var before = (await client.StatsAsync(new StatsRequest())).BytesRead;
            c.StartWorker("rdma-2", env: rdma);
            await c.WaitReadyAsync("rdma-2");
            c.KillOnly("cxl-1");
            var fetched = await Invoke();
            Assert.Equal(("template", "rdma-2", cold.Body), fetched);
            var moved = (await client.StatsAsync(new StatsRequest())).BytesRead - before;
            var template = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/templates")).RootElement.GetProperty("templates")[0];
            var size = template.GetProperty("nonZeroPages").GetInt64() * 4096;
            Assert.Equal(size, moved);

            // Lazy on a third rdma worker: its first invocation records the template's working set with the pool.
            c.StartWorker("rdma-lazy", env: [("TRENV_POOL_MODE", "rdma"), ("TRENV_POOL_FETCH", "lazy"), ("TRENV_POOL_PATH", "/nonexistent/trenv/pool")]);
            await c.WaitReadyAsync("rdma-lazy");
            c.KillOnly("rdma-2");
            Assert.Equal(("template", "rdma-lazy", cold.Body), await Invoke());
            WorkingSet set = new();
            await Poll.UntilAsync(async () => (set = await client.GetWorkingSetAsync(new OwnerRequest { Owner = "heavy@1" })).Ranges.Count > 0,
                TimeSpan.FromSeconds(10), () => "the lazy worker to record the working set");
            var setBytes = set.Ranges.Sum(r => r.Length);
            Assert.True(setBytes < size / 3, $"a working set of {setBytes} bytes for a {size}-byte template");

            // Prefetch on a fourth: the working set in one read before the restore, and nothing else for that invocation.
            before = (await client.StatsAsync(new StatsRequest())).BytesRead;
            c.StartWorker("rdma-prefetch", env: [("TRENV_POOL_MODE", "rdma"), ("TRENV_POOL_FETCH", "prefetch"), ("TRENV_POOL_PATH", "/nonexistent/trenv/pool")]);
            await c.WaitReadyAsync("rdma-prefetch");
            c.KillOnly("rdma-lazy");
            Assert.Equal(("template", "rdma-prefetch", cold.Body), await Invoke());
            moved = (await client.StatsAsync(new StatsRequest())).BytesRead - before;
            Assert.True(moved >= setBytes && moved < size / 3, $"prefetch moved {moved} bytes; the working set is {setBytes}, the template {size}");
        }
    }

    [Fact]
    public async Task A_worker_in_its_own_network_namespace_without_the_pool_file_restores_over_grpc()
    {
        if (!TrEnv.Sandbox.Isolation.Namespaces.Available)
            return; // needs root for ip netns; ./test.sh and CI run as root
        using var net = NetNamespace.Create();
        await using var c = new LocalCluster();
        // Every node talks over the veth: the host side is the pool's and coordinator's address.
        c.Environment["TRENV_HOSTNAME"] = net.HostAddress;
        c.Environment["TRENV_SEEDS"] = $"akka.tcp://trenv@{net.HostAddress}:{c.SeedPort}";
        await c.StartAllAsync("worker-a");
        var content = new ByteArrayContent(TestGuests.Bytes("heavy"));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/wasm");
        Assert.Equal(HttpStatusCode.Created, (await c.Http.PutAsync("/v1/functions/heavy", content)).StatusCode);
        const string input = "21 34 55";
        var cold = await c.Http.PostAsync("/v1/functions/heavy/invoke", new StringContent(input));
        Assert.Equal("cold", cold.Headers.GetValues("X-TrEnv-Start").Single());
        var expected = await cold.Content.ReadAsStringAsync();

        // Worker B: its own network namespace, the pool's directory hidden under an empty tmpfs, pages on first touch.
        var client = Client(c, out var channel, net.HostAddress);
        using var disposeChannel = channel;
        var before = (await client.StatsAsync(new StatsRequest())).BytesRead;
        var poolDirectory = Path.GetDirectoryName(c.PoolPath)!;
        c.StartWorkerUnder("worker-b",
            ["ip", "netns", "exec", net.Name, "unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", "mount -t tmpfs trenv-hidden \"$0\" && exec \"$@\"", poolDirectory],
            ("TRENV_HOSTNAME", net.GuestAddress), ("TRENV_POOL_MODE", "rdma"), ("TRENV_POOL_URL", $"http://{net.HostAddress}:{c.PoolGrpcPort}"));
        await c.WaitReadyAsync("worker-b");
        c.KillOnly("worker-a");
        HttpResponseMessage r = null!;
        await Poll.UntilAsync(async () =>
        {
            r = await c.Http.PostAsync("/v1/functions/heavy/invoke", new StringContent(input));
            return r.StatusCode != HttpStatusCode.ServiceUnavailable;
        }, TimeSpan.FromSeconds(30), () => "an invocation placed on worker-b");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(("template", "worker-b"), (r.Headers.GetValues("X-TrEnv-Start").Single(), r.Headers.GetValues("X-TrEnv-Node").Single()));
        Assert.Equal(expected, await r.Content.ReadAsStringAsync());
        var log = File.ReadAllText(Path.Combine(c.Directory, "worker-b.log"));
        Assert.Contains("pool mode rdma (lazy)", log, StringComparison.Ordinal);
        // Lazy: only the windows the restore and one invocation touched crossed the network, not the template.
        var moved = (await client.StatsAsync(new StatsRequest())).BytesRead - before;
        var template = JsonDocument.Parse(await c.Http.GetStringAsync("/v1/templates")).RootElement.GetProperty("templates")[0];
        var size = template.GetProperty("nonZeroPages").GetInt64() * 4096;
        Assert.True(moved > 0 && moved < size / 4, $"moved {moved} bytes of a {size}-byte template");
    }

    /// <summary>A network namespace joined to this one by a veth pair on addresses this test makes up.</summary>
    private sealed class NetNamespace : IDisposable
    {
        public string Name { get; private init; } = "";
        public string HostAddress { get; private init; } = "";
        public string GuestAddress { get; private init; } = "";

        public static NetNamespace Create()
        {
            var id = Random.Shared.Next(1, 250);
            var ns = new NetNamespace { Name = $"trenv-test-{Environment.ProcessId}-{id}", HostAddress = $"10.213.{id}.1", GuestAddress = $"10.213.{id}.2" };
            var hostIf = $"trv{id}h";
            var guestIf = $"trv{id}g";
            Run("ip", "netns", "add", ns.Name);
            Run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", guestIf);
            Run("ip", "link", "set", guestIf, "netns", ns.Name);
            Run("ip", "addr", "add", ns.HostAddress + "/30", "dev", hostIf);
            Run("ip", "link", "set", hostIf, "up");
            Run("ip", "netns", "exec", ns.Name, "ip", "addr", "add", ns.GuestAddress + "/30", "dev", guestIf);
            Run("ip", "netns", "exec", ns.Name, "ip", "link", "set", guestIf, "up");
            Run("ip", "netns", "exec", ns.Name, "ip", "link", "set", "lo", "up");
            return ns;
        }

        private static void Run(params string[] command)
        {
            using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(command[0], command[1..]) { RedirectStandardError = true })!;
            var error = p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"{string.Join(' ', command)} failed: {error}");
        }

        public void Dispose()
        {
            // Deleting the namespace deletes the veth pair with it.
            try
            {
                Run("ip", "netns", "del", Name);
            }
            catch (InvalidOperationException)
            {
            }
        }
    }
}
