using System.Formats.Tar;
using System.Net;
using System.Text;
using System.Text.Json;

namespace TrEnv.Tests;

/// <summary>A worker's sandbox pool through the HTTP API: repurposing, failures, layers, limits, the memory bound, cleanup.</summary>
public sealed class WorkerSandboxTests
{
    private static readonly bool Root = TrEnv.Sandbox.Isolation.Namespaces.Available;

    [Fact]
    public async Task A_repurposed_sandbox_keeps_nothing_of_a_function_that_trapped_or_timed_out()
    {
        await using var c = new LocalCluster();
        c.Environment["TRENV_MAX_SANDBOXES"] = "1"; // every function shares the one sandbox
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("first", "escape", "?timeoutMs=500&env.SECRET=first-secret");
        await c.Api.DeployGuestAsync("second", "escape");
        var pid = (await c.Api.WorkerAsync("worker-1")).GetProperty("sandboxes")[0].GetProperty("pid").GetInt32();

        var written = await c.Api.InvokeAsync("first", "write:left-behind");
        Assert.Equal((HttpStatusCode.OK, "written", "new"), (written.Status, written.Body, written.Sandbox));
        Assert.Equal("first-secret", (await c.Api.InvokeAsync("first", "env:SECRET")).Body);
        var fd = (await c.Api.InvokeAsync("first", "hold:held")).Body;
        Assert.Equal("open", (await c.Api.InvokeAsync("first", $"fd:{fd}")).Body);
        var trap = await c.Api.InvokeAsync("first", "trap");
        Assert.Equal(HttpStatusCode.InternalServerError, trap.Status);
        Assert.Contains("\"trap\"", trap.Body, StringComparison.Ordinal);

        var leftBehind = await c.Api.InvokeAsync("second", "read:left-behind");
        Assert.Equal((HttpStatusCode.OK, "missing", "repurposed"), (leftBehind.Status, leftBehind.Body, leftBehind.Sandbox));
        var held = await c.Api.InvokeAsync("second", "read:held");
        Assert.Equal((HttpStatusCode.OK, "missing", "reused"), (held.Status, held.Body, held.Sandbox));
        Assert.Equal("unset", (await c.Api.InvokeAsync("second", "env:SECRET")).Body);
        Assert.Equal("closed", (await c.Api.InvokeAsync("second", $"fd:{fd}")).Body);

        var rewritten = await c.Api.InvokeAsync("first", "write:after-timeout");
        Assert.Equal((HttpStatusCode.OK, "written", "repurposed"), (rewritten.Status, rewritten.Body, rewritten.Sandbox));
        var spin = await c.Api.InvokeAsync("first", "spin");
        Assert.Equal(HttpStatusCode.GatewayTimeout, spin.Status);
        var afterTimeout = await c.Api.InvokeAsync("second", "read:after-timeout");
        Assert.Equal((HttpStatusCode.OK, "missing", "repurposed"), (afterTimeout.Status, afterTimeout.Body, afterTimeout.Sandbox));

        // The same process served all of it: cleansed, not replaced, and never reused dirty.
        var sandboxes = (await c.Api.WorkerAsync("worker-1")).GetProperty("sandboxes");
        Assert.Equal(1, sandboxes.GetArrayLength());
        Assert.Equal(pid, sandboxes[0].GetProperty("pid").GetInt32());
    }

    [Fact]
    public async Task File_layers_are_checked_on_upload_and_reach_only_their_function_with_its_cpu_quota()
    {
        await using var c = new LocalCluster();
        c.Environment["TRENV_MAX_SANDBOXES"] = "1";
        await c.StartAllAsync("worker-1");

        var tar = Tar(("data.txt", "from-layer"), ("dir/nested.txt", "nested"));
        var upload = await c.Http.PutAsync("/v1/layers", new ByteArrayContent(tar));
        var body = await upload.Content.ReadAsStringAsync();
        Assert.True(upload.StatusCode == HttpStatusCode.Created, body);
        var layer = JsonDocument.Parse(body).RootElement;
        Assert.Equal(2, layer.GetProperty("files").GetInt32());
        var sha = layer.GetProperty("sha256").GetString()!;

        // The same layer gzipped is the same tar, so the same hash.
        using (var gz = new MemoryStream())
        {
            using (var z = new System.IO.Compression.GZipStream(gz, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
                z.Write(tar);
            var again = await c.Http.PutAsync("/v1/layers", new ByteArrayContent(gz.ToArray()));
            Assert.Equal(sha, JsonDocument.Parse(await again.Content.ReadAsStringAsync()).RootElement.GetProperty("sha256").GetString());
        }

        // Links, escapes and garbage are refused by name.
        foreach (var (bad, says) in new[]
        {
            (TarWith(new PaxTarEntry(TarEntryType.SymbolicLink, "passwd") { LinkName = "/etc/passwd" }), "SymbolicLink"),
            (TarWith(new PaxTarEntry(TarEntryType.RegularFile, "../outside.txt") { DataStream = new MemoryStream([1]) }), "outside the layer"),
            (Encoding.UTF8.GetBytes("not a tar at all, just some text that is long enough to not be a header"), "tar"),
        })
        {
            var r = await c.Http.PutAsync("/v1/layers", new ByteArrayContent(bad));
            var text = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode == HttpStatusCode.UnprocessableEntity, $"{r.StatusCode} {text}");
            Assert.Contains("invalid_layer", text, StringComparison.Ordinal);
            Assert.Contains(says, text, StringComparison.Ordinal);
        }
        var unknown = await c.Api.DeployAsync("nolayer", TestGuests.Bytes("escape"), $"layer={new string('a', 64)}");
        Assert.Equal(HttpStatusCode.UnprocessableEntity, unknown.StatusCode);

        await c.Api.DeployGuestAsync("reader", "escape", $"?layer={sha}&cpuMillicores=500");
        await c.Api.DeployGuestAsync("other", "escape");
        var fromLayer = await c.Api.InvokeAsync("reader", "read:data.txt");
        Assert.Equal((HttpStatusCode.OK, "from-layer", "new"), (fromLayer.Status, fromLayer.Body, fromLayer.Sandbox));
        Assert.Equal("nested", (await c.Api.InvokeAsync("reader", "read:dir/nested.txt")).Body);
        Assert.Equal("written", (await c.Api.InvokeAsync("reader", "write:data.txt")).Body);
        Assert.Equal("secret", (await c.Api.InvokeAsync("reader", "read:data.txt")).Body); // its own upper directory
        if (Root)
        {
            var quotas = Directory.EnumerateFiles("/sys/fs/cgroup", "cpu.cfs_quota_us", SearchOption.AllDirectories)
                .Concat(Directory.EnumerateFiles("/sys/fs/cgroup", "cpu.max", SearchOption.AllDirectories))
                .Where(f => f.Contains("/trenv/worker-1-", StringComparison.Ordinal))
                .Select(f => File.ReadAllText(f).Trim()).ToList();
            Assert.Contains(quotas, q => q is "50000" or "50000 100000");
        }

        var otherRead = await c.Api.InvokeAsync("other", "read:data.txt");
        Assert.Equal((HttpStatusCode.OK, "missing", "repurposed"), (otherRead.Status, otherRead.Body, otherRead.Sandbox));
        Assert.Equal("from-layer", (await c.Api.InvokeAsync("reader", "read:data.txt")).Body); // the layer itself was never written
    }

    [Fact]
    public async Task The_memory_bound_evicts_idle_instances_least_recently_used_first()
    {
        await using var c = new LocalCluster();
        // One warm heavy instance (about 130 MiB charged: 124 MiB of state and the host) fits, two do not. Its
        // template's pool pages are the node's, not the sandbox's, so they do not count.
        c.Environment["TRENV_WORKER_MEMORY_MB"] = "250";
        await c.StartAllAsync("worker-1");
        foreach (var n in new[] { 1, 2, 3 })
            await c.Api.DeployGuestAsync($"heavy-{n}", "heavy", "?memoryMb=256");
        foreach (var n in new[] { 1, 2, 3 })
            Assert.Equal(HttpStatusCode.OK, (await c.Api.InvokeAsync($"heavy-{n}", "x")).Status);

        JsonElement worker = default;
        await Poll.UntilAsync(async () =>
        {
            worker = await c.Api.WorkerAsync("worker-1");
            var warm = worker.GetProperty("warm");
            return worker.GetProperty("evicted").GetInt64() >= 2 && !warm.TryGetProperty("heavy-1@1", out _) && !warm.TryGetProperty("heavy-2@1", out _);
        }, TimeSpan.FromSeconds(30), () => $"the two least recently used heavy instances to be evicted: {worker}");
        Assert.True(worker.GetProperty("warm").TryGetProperty("heavy-3@1", out _), $"the most recent instance was evicted: {worker}");
        Assert.True(worker.GetProperty("memoryBytes").GetInt64() <= 250L << 20, $"over the bound: {worker}");

        // An evicted function starts again, from its template.
        var again = await c.Api.InvokeAsync("heavy-1", "y");
        Assert.Equal(HttpStatusCode.OK, again.Status);
        Assert.Equal("template", again.Start);
    }

    [Fact]
    public async Task Sandboxes_cgroups_and_directories_are_gone_after_shutdown_and_after_kill_9_and_restart()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("hello", "hello");
        await c.Api.DeployGuestAsync("loop", "loop", "?timeoutMs=60000");
        Assert.Equal(HttpStatusCode.OK, (await c.Api.InvokeAsync("hello", "x")).Status);
        var stuck = c.Api.InvokeAsync("loop", "sleep"); // a guest asleep in WASI outlives a dead worker unless cleaned up

        var (pids, groups) = await SandboxesOf(c, "worker-1", expectBusy: true);
        var killed = (await c.Api.WorkerAsync("worker-1")).GetProperty("address").GetString();
        c.KillOnly("worker-1");
        await stuck; // answered when the invoke channel's connection breaks, before the dead worker is downed
        c.StartWorker("worker-1", newPort: true); // the old address stays quarantined for a while
        await c.WaitReadyAsync("worker-1");
        // The view may still list the dead incarnation: wait until it lists only the new one (Up once the old one is downed).
        await Poll.UntilAsync(async () => JsonDocument.Parse(await c.Http.GetStringAsync("/v1/cluster")).RootElement.GetProperty("workers").EnumerateArray()
                .Where(w => w.GetProperty("node").GetString() == "worker-1").Select(w => w.GetProperty("address").GetString()).ToList() is [var only] && only != killed,
            TimeSpan.FromSeconds(60), () => "the restarted worker-1, and only it, in the cluster view");
        await Poll.UntilAsync(() => Task.FromResult(pids.All(p => !Directory.Exists($"/proc/{p}")) && groups.All(g => !Directory.Exists(g))),
            TimeSpan.FromSeconds(30), () => $"the dead worker's sandboxes ({string.Join(",", pids.Where(p => Directory.Exists($"/proc/{p}")))}) and cgroups ({string.Join(",", groups.Where(Directory.Exists))}) to be gone");
        AssertNoMountsUnder(c.Directory);
        // A sandbox the new incarnation is starting has its directory a moment before the worker lists it; one the
        // dead incarnation left would stay, so the count must settle at no more directories than live sandboxes.
        var (live, workdirs) = (0, new List<string>());
        await Poll.UntilAsync(async () =>
        {
            live = (await c.Api.WorkerAsync("worker-1")).GetProperty("sandboxes").GetArrayLength();
            workdirs = Directory.GetDirectories(Path.Combine(c.Directory, "worker-1", "sandboxes")).Where(d => !d.EndsWith(".root", StringComparison.Ordinal)).ToList();
            return workdirs.Count <= live;
        }, TimeSpan.FromSeconds(15), () => $"{workdirs.Count} sandbox directories for {live} live sandboxes: {string.Join(", ", workdirs)}");

        // A graceful stop removes everything it made.
        (pids, groups) = await SandboxesOf(c, "worker-1", expectBusy: false);
        c.Stop("worker-1");
        await Poll.UntilAsync(() => Task.FromResult(pids.All(p => !Directory.Exists($"/proc/{p}")) && groups.All(g => !Directory.Exists(g))),
            TimeSpan.FromSeconds(30), () => "the stopped worker's sandboxes and cgroups to be gone");
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(c.Directory, "worker-1", "sandboxes")));
        AssertNoMountsUnder(c.Directory);
    }

    [Fact]
    public async Task Without_isolation_sandboxes_are_plain_processes_and_the_worker_says_so()
    {
        await using var c = new LocalCluster();
        c.Environment["TRENV_SANDBOX_ISOLATION"] = "process"; // what a worker that is not root gets
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("hello", "hello");
        var plain = await c.Api.InvokeAsync("hello", "plain");
        Assert.Equal((HttpStatusCode.OK, "hello: plain", "new"), (plain.Status, plain.Body, plain.Sandbox));
        var worker = await c.Api.WorkerAsync("worker-1");
        Assert.Equal("process", worker.GetProperty("isolation").GetString());
        var pid = worker.GetProperty("sandboxes")[0].GetProperty("pid").GetInt32();
        Assert.Equal(TrEnv.Sandbox.Isolation.Namespaces.Of(Environment.ProcessId)["mnt"], TrEnv.Sandbox.Isolation.Namespaces.Of(pid)["mnt"]);
        var log = Path.Combine(c.Directory, "worker-1.log");
        await Poll.UntilAsync(() => Task.FromResult(File.ReadAllText(log).Contains("sandboxes run as plain processes", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(10), () => "the worker to say at start-up that sandboxes are plain processes");
    }

    // The sandbox processes (unshare and its host) and the worker's cgroups, as the worker reports them.
    private static async Task<(List<int> Pids, List<string> Groups)> SandboxesOf(LocalCluster c, string node, bool expectBusy)
    {
        List<int> pids = [];
        await Poll.UntilAsync(async () =>
        {
            var w = await c.Api.WorkerAsync(node);
            pids = w.GetProperty("sandboxes").EnumerateArray().Select(s => s.GetProperty("pid").GetInt32()).ToList();
            return pids.Count > 0 && (!expectBusy || w.GetProperty("busy").GetInt32() > 0);
        }, TimeSpan.FromSeconds(20), () => $"{node} to report its sandboxes");
        pids.AddRange(pids.Select(TrEnv.Sandbox.Isolation.Namespaces.ChildOf).OfType<int>().ToList());
        var groups = Root
            ? new[] { "/sys/fs/cgroup/memory/trenv", "/sys/fs/cgroup/cpu/trenv", "/sys/fs/cgroup/trenv" }
                .Select(t => Path.Combine(t, $"{node}-{c.Pid(node)}")).Where(Directory.Exists).ToList()
            : [];
        Assert.Equal(Root, groups.Count > 0);
        return (pids, groups);
    }

    private static void AssertNoMountsUnder(string directory)
    {
        var mounts = File.ReadAllLines("/proc/self/mountinfo").Where(l => l.Contains(directory, StringComparison.Ordinal)).ToList();
        Assert.True(mounts.Count == 0, string.Join("\n", mounts));
    }

    private static byte[] Tar(params (string Name, string Text)[] files)
        => TarWith(files.Select(f => new PaxTarEntry(TarEntryType.RegularFile, f.Name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(f.Text)) }).ToArray());

    private static byte[] TarWith(params PaxTarEntry[] entries)
    {
        using var buffer = new MemoryStream();
        using (var writer = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var e in entries)
                writer.WriteEntry(e);
        }
        return buffer.ToArray();
    }
}
