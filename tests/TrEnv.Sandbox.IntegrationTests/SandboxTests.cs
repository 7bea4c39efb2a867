using System.Diagnostics;
using System.Text;
using TrEnv.Contracts;
using TrEnv.Sandbox;

namespace TrEnv.Tests;

public sealed class SandboxTests(SandboxFixture fx) : IClassFixture<SandboxFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private static string Text(byte[] b) => Encoding.UTF8.GetString(b);
    private static byte[] Bytes(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public async Task Hello_runs_cold_in_a_host_process_and_reports_its_stats()
    {
        await using var sb = fx.Start();
        var loaded = await sb.LoadAsync(fx.ColdLoad("hello", fx.Put("hello")));
        Assert.Equal(StartKind.Cold, loaded.Start);
        Assert.Equal("hello: there", Text((await sb.InvokeAsync(Bytes("there"), Timeout)).Output));
        var stats = await sb.StatsAsync();
        Assert.Equal(sb.Pid, stats.Pid);
        Assert.Equal("hello", stats.Function);
        Assert.True(stats.PssBytes > 0 && stats.RssBytes >= stats.PssBytes);
    }

    [Fact]
    public async Task Guest_stdout_and_stderr_reach_the_function_log()
    {
        await using var sb = fx.Start();
        await sb.LoadAsync(fx.ColdLoad("hello", fx.Put("hello")));
        var result = await sb.InvokeAsync(Bytes("!abc"), Timeout);
        Assert.Equal("log line for input of 4 bytes\n", Text(result.Stdout));
        Assert.Equal("stderr line\n", Text(result.Stderr));
        var quiet = await sb.InvokeAsync(Bytes("abc"), Timeout);
        Assert.Empty(quiet.Stdout);
    }

    [Fact]
    public async Task Map_restore_in_another_process_equals_cold_for_many_inputs()
    {
        var hash = fx.Put("heavy");
        await using var capturer = fx.Start();
        await capturer.LoadAsync(fx.ColdLoad("heavy", hash));
        var template = await fx.CaptureAsync(capturer, "heavy-equals");

        await using var cold = fx.Start();
        await using var restored = fx.Start();
        var rng = new Random(7);
        for (var i = 0; i < 40; i++)
        {
            var input = Bytes(string.Join(',', Enumerable.Range(0, 1 + rng.Next(50)).Select(_ => rng.Next(0, 26_000_000))));
            await cold.LoadAsync(fx.ColdLoad("heavy", hash));
            var loaded = await restored.LoadAsync(fx.TemplateLoad("heavy", hash, template, verify: i == 0));
            Assert.Equal(StartKind.Template, loaded.Start);
            var expected = Text((await cold.InvokeAsync(input, Timeout)).Output);
            Assert.StartsWith("hits=", expected);
            Assert.Equal(expected, Text((await restored.InvokeAsync(input, Timeout)).Output));
        }
    }

    [Fact]
    public async Task Restored_instances_are_reseeded_so_they_do_not_share_random_state()
    {
        var hash = fx.Put("heavy");
        await using var sb = fx.Start();
        await sb.LoadAsync(fx.ColdLoad("heavy", hash));
        var template = await fx.CaptureAsync(sb, "heavy-reseed");
        var draws = new HashSet<string>();
        for (var i = 0; i < 3; i++)
        {
            await sb.LoadAsync(fx.TemplateLoad("heavy", hash, template));
            draws.Add(Text((await sb.InvokeAsync(Bytes("rand"), Timeout)).Output));
        }
        Assert.Equal(3, draws.Count);
    }

    [Fact]
    public async Task A_trap_is_reported_and_the_same_sandbox_serves_again()
    {
        await using var sb = fx.Start();
        var hash = fx.Put("trap");
        await sb.LoadAsync(fx.ColdLoad("trap", hash));
        foreach (var (input, detail) in new[] { ("trap", "unreachable"), ("div", "divide by zero"), ("exit", "exit status 3"), ("recurse", "out of bounds memory access") })
        {
            var e = await Assert.ThrowsAsync<SandboxException>(() => sb.InvokeAsync(Bytes(input), Timeout));
            Assert.Equal(ErrorKinds.Trap, e.Kind);
            Assert.True(e.InstanceDiscarded);
            Assert.Contains("trapped", e.Message, StringComparison.Ordinal);
            Assert.Contains(detail, e.Message, StringComparison.OrdinalIgnoreCase);
            var notLoaded = await Assert.ThrowsAsync<SandboxException>(() => sb.InvokeAsync(Bytes("x"), Timeout));
            Assert.Equal(ErrorKinds.NotLoaded, notLoaded.Kind);
            await sb.LoadAsync(fx.ColdLoad("trap", hash));
            Assert.Equal("ok", Text((await sb.InvokeAsync(Bytes("fine"), Timeout)).Output));
        }
    }

    [Fact]
    public async Task An_infinite_loop_hits_the_epoch_deadline_and_the_sandbox_survives()
    {
        await using var sb = fx.Start();
        await sb.LoadAsync(fx.ColdLoad("loop", fx.Put("loop"), timeoutMs: 200));
        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<SandboxException>(() => sb.InvokeAsync(Bytes("spin"), TimeSpan.FromMilliseconds(200)));
        Assert.Equal(ErrorKinds.Timeout, e.Kind);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(4), $"the deadline took {watch.Elapsed}");
        Assert.True(sb.IsAlive);
        await sb.LoadAsync(fx.ColdLoad("hello", fx.Put("hello")));
        Assert.Equal("hello: again", Text((await sb.InvokeAsync(Bytes("again"), Timeout)).Output));
    }

    [Fact]
    public async Task A_guest_blocked_in_a_wasi_call_is_killed_at_the_hard_deadline_not_waited_for()
    {
        var sb = fx.Start(hardDeadlineGrace: TimeSpan.FromMilliseconds(500));
        await using (sb)
        {
            await sb.LoadAsync(fx.ColdLoad("loop", fx.Put("loop"), timeoutMs: 300));
            var watch = Stopwatch.StartNew();
            var e = await Assert.ThrowsAsync<SandboxException>(() => sb.InvokeAsync(Bytes("sleep"), TimeSpan.FromMilliseconds(300)));
            Assert.Equal(ErrorKinds.Timeout, e.Kind);
            Assert.Contains("killed", e.Message, StringComparison.Ordinal);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"the hard deadline took {watch.Elapsed}");
            Assert.False(sb.IsAlive);
        }
    }

    [Fact]
    public async Task A_memory_bomb_hits_the_memory_limit_and_the_sandbox_survives()
    {
        await using var sb = fx.Start();
        await sb.LoadAsync(fx.ColdLoad("membomb", fx.Put("membomb"), memoryLimit: 64L << 20));
        var e = await Assert.ThrowsAsync<SandboxException>(() => sb.InvokeAsync(Bytes("go"), Timeout));
        Assert.Equal(ErrorKinds.Memory, e.Kind);
        Assert.Contains("memory limit of 64 MiB", e.Message, StringComparison.Ordinal);
        await sb.LoadAsync(fx.ColdLoad("hello", fx.Put("hello")));
        Assert.Equal("hello: x", Text((await sb.InvokeAsync(Bytes("x"), Timeout)).Output));
    }

    [Fact]
    public async Task A_guest_sees_only_its_own_tmp_and_reset_wipes_it()
    {
        await using var sb = fx.Start();
        var hash = fx.Put("escape");
        await sb.LoadAsync(fx.ColdLoad("escape", hash));
        var report = Text((await sb.InvokeAsync(Bytes("probe"), Timeout)).Output);
        foreach (var path in new[] { "/etc/passwd", "/tmp/../etc/passwd", "../etc/passwd", "/proc/self/environ", "/etc/hostname", "/root/.bashrc" })
            Assert.Contains($"{path}=denied\n", report, StringComparison.Ordinal);
        Assert.Contains("/tmp/probe.txt=ok\n", report, StringComparison.Ordinal);

        Assert.Equal("written", Text((await sb.InvokeAsync(Bytes("write:secret"), Timeout)).Output));
        Assert.Equal("secret", Text((await sb.InvokeAsync(Bytes("read:secret"), Timeout)).Output));
        await sb.ResetAsync();
        await sb.LoadAsync(fx.ColdLoad("escape", hash));
        Assert.Equal("missing", Text((await sb.InvokeAsync(Bytes("read:secret"), Timeout)).Output));
    }

    [Fact]
    public async Task Malformed_and_non_conforming_modules_are_refused_by_name_and_the_host_keeps_serving()
    {
        await using var sb = fx.Start();
        var garbage = await Assert.ThrowsAsync<SandboxException>(() => sb.LoadAsync(fx.ColdLoad("junk", fx.PutBytes(Bytes("this is not wasm")))));
        Assert.Equal(ErrorKinds.InvalidModule, garbage.Kind);
        Assert.Contains("not valid WebAssembly", garbage.Message, StringComparison.Ordinal);

        // A valid module that exports only a memory: every missing ABI export is named.
        byte[] memoryOnly = [0, 0x61, 0x73, 0x6D, 1, 0, 0, 0, 5, 3, 1, 0, 1, 7, 10, 1, 6, (byte)'m', (byte)'e', (byte)'m', (byte)'o', (byte)'r', (byte)'y', 2, 0];
        var abi = await Assert.ThrowsAsync<SandboxException>(() => sb.LoadAsync(fx.ColdLoad("empty", fx.PutBytes(memoryOnly))));
        Assert.Equal(ErrorKinds.InvalidModule, abi.Kind);
        Assert.Contains("\"trenv_handle\"", abi.Message, StringComparison.Ordinal);
        Assert.Contains("\"trenv_alloc\"", abi.Message, StringComparison.Ordinal);

        await sb.LoadAsync(fx.ColdLoad("hello", fx.Put("hello")));
        Assert.Equal("hello: ok", Text((await sb.InvokeAsync(Bytes("ok"), Timeout)).Output));
    }

    [Fact]
    public async Task Oversized_input_is_refused_without_losing_the_warm_instance()
    {
        await using var sb = fx.Start();
        await sb.LoadAsync(fx.ColdLoad("heavy", fx.Put("heavy")));
        Assert.EndsWith("calls=1", Text((await sb.InvokeAsync(Bytes("5"), Timeout)).Output));
        var e = await Assert.ThrowsAsync<SandboxException>(() => sb.InvokeAsync(new byte[7 << 20], Timeout));
        Assert.Equal(ErrorKinds.InputTooLarge, e.Kind);
        Assert.False(e.InstanceDiscarded);
        Assert.EndsWith("calls=2", Text((await sb.InvokeAsync(Bytes("5"), Timeout)).Output));
    }

    [Fact]
    public async Task A_killed_host_is_reported_as_crashed_not_hung()
    {
        var sb = fx.Start();
        await using (sb)
        {
            await sb.LoadAsync(fx.ColdLoad("hello", fx.Put("hello")));
            Process.GetProcessById(sb.Pid).Kill();
            var e = await Assert.ThrowsAsync<SandboxException>(() => sb.InvokeAsync(Bytes("x"), Timeout));
            Assert.Equal(ErrorKinds.SandboxCrashed, e.Kind);
            Assert.False(sb.IsAlive);
        }
    }

    [Fact]
    public async Task A_pool_truncated_under_a_live_mapping_is_refused_and_the_host_keeps_serving()
    {
        using var dir = new TempDir("trenv-trunc");
        var poolPath = Path.Combine(dir.Path, "pool");
        using (MemoryPool.PoolDevice.OpenOrCreate(poolPath, 256L << 20))
        {
        }
        var hash = fx.Put("heavy");
        var header = Path.Combine(dir.Path, "heavy.tpl");
        await using var sb = fx.Start();
        await sb.LoadAsync(fx.ColdLoad("heavy", hash));
        var size = (await sb.CaptureAsync(new SandboxMessages.Capture(poolPath, 0, 0, header, "t"))).RequiredBytes;
        await sb.CaptureAsync(new SandboxMessages.Capture(poolPath, 0, MemoryPool.RegionAllocator.RoundUp(size), header, "t"));

        var load = new SandboxMessages.LoadFromTemplate(fx.Spec("heavy", hash), new SandboxMessages.TemplatePages(header, poolPath, LoadSource.MapTemplate));
        await sb.LoadAsync(load);
        Assert.StartsWith("hits=", Text((await sb.InvokeAsync(Bytes("1 2 3"), Timeout)).Output));
        File.WriteAllBytes(poolPath, []);
        var e = await Assert.ThrowsAsync<SandboxException>(() => sb.InvokeAsync(Bytes("4 5 6"), Timeout));
        Assert.Equal(ErrorKinds.TemplateInvalid, e.Kind);
        Assert.True(e.InstanceDiscarded);
        var reload = await Assert.ThrowsAsync<SandboxException>(() => sb.LoadAsync(load));
        Assert.Contains("truncated", reload.Message, StringComparison.Ordinal);
        Assert.True(sb.IsAlive);
        await sb.LoadAsync(fx.ColdLoad("heavy", hash));
        Assert.StartsWith("hits=", Text((await sb.InvokeAsync(Bytes("4 5 6"), Timeout)).Output));
    }

    [Fact]
    public async Task A_sandbox_over_its_cgroup_memory_limit_is_reported_as_memory_and_only_it_dies()
    {
        using var cgroups = TrEnv.Sandbox.Isolation.Cgroups.Detect($"test-{Environment.ProcessId}");
        if (cgroups is null)
        {
            // Only root can create cgroups; ./test.sh and CI run as root, where this must hold.
            Assert.NotEqual("root", Environment.UserName);
            return;
        }
        var cgroup = cgroups.Create($"oom-{Guid.NewGuid():N}");
        // Raising and lowering both work (cgroup v1 orders the memory and memory+swap limits).
        cgroup.SetLimits(512L << 20, 0);
        cgroup.SetLimits(1L << 30, 1);
        cgroup.SetLimits(96L << 20, 0);
        var neighbourGroup = cgroups.Create($"neighbour-{Guid.NewGuid():N}");
        neighbourGroup.SetLimits(256L << 20, 0);
        var neighbour = SandboxProcess.Start(fx.Isolated() ?? fx.Host, fx.Sub($"neighbour-{Guid.NewGuid():N}"), cgroup: neighbourGroup);
        var sb = SandboxProcess.Start(fx.Isolated() ?? fx.Host, fx.Sub($"oom-{Guid.NewGuid():N}"), cgroup: cgroup);
        await using (neighbour)
        await using (sb)
        {
            await neighbour.LoadAsync(fx.ColdLoad("hello", fx.Put("hello")));
            Assert.Equal("hello: before", Text((await neighbour.InvokeAsync(Bytes("before"), Timeout)).Output));
            // heavy's init fills 124 MiB of linear memory: within its wasm limit, over the cgroup's 96 MiB.
            var e = await Assert.ThrowsAsync<SandboxException>(() => sb.LoadAsync(fx.ColdLoad("heavy", fx.Put("heavy"))));
            Assert.Equal(ErrorKinds.Memory, e.Kind);
            Assert.Contains("out-of-memory killer", e.Message, StringComparison.Ordinal);
            Assert.True(cgroup.OomKills() >= 1);
            Assert.False(sb.IsAlive);

            // Only the offender died: the neighbour keeps its warm instance and serves on.
            Assert.True(neighbour.IsAlive);
            Assert.Equal(0, neighbourGroup.OomKills());
            Assert.Equal("hello: after", Text((await neighbour.InvokeAsync(Bytes("after"), Timeout)).Output));
            Assert.Equal(2, (await neighbour.StatsAsync()).Invocations);
        }
        Assert.False(Directory.Exists(cgroup.MemoryPath));
        Assert.False(Directory.Exists(neighbourGroup.MemoryPath));
    }

    [Fact]
    public async Task A_namespaced_sandbox_has_its_own_mount_pid_net_ipc_and_uts_namespaces_and_still_serves()
    {
        var isolated = TrEnv.Sandbox.Isolation.Namespaces.Wrap(fx.Host);
        if (isolated is null)
        {
            Assert.NotEqual("root", Environment.UserName); // as root (./test.sh, CI) namespaces must be available
            return;
        }
        using var cgroups = TrEnv.Sandbox.Isolation.Cgroups.Detect($"test-ns-{Environment.ProcessId}");
        var cgroup = cgroups?.Create("ns");
        var sb = SandboxProcess.Start(isolated, Path.Combine(fx.TemplateDirectory, "..", $"ns-{Guid.NewGuid():N}"), cgroup: cgroup);
        await using (sb)
        {
            await sb.LoadAsync(fx.ColdLoad("hello", fx.Put("hello")));
            Assert.Equal("hello: inside", Text((await sb.InvokeAsync(Bytes("inside"), Timeout)).Output));
            Assert.Equal(1, (await sb.StatsAsync()).Pid); // PID 1 of its own PID namespace
            var host = TrEnv.Sandbox.Isolation.Namespaces.ChildOf(sb.Pid);
            Assert.NotNull(host);
            var mine = TrEnv.Sandbox.Isolation.Namespaces.Of(Environment.ProcessId);
            var theirs = TrEnv.Sandbox.Isolation.Namespaces.Of(host.Value);
            foreach (var ns in new[] { "mnt", "pid", "net", "ipc", "uts" })
            {
                Assert.NotEqual("", theirs[ns]);
                Assert.NotEqual(mine[ns], theirs[ns]);
            }
            // The host forked by unshare is inside the sandbox's cgroup from its first instruction.
            if (cgroup is not null)
                Assert.Contains($"/trenv/test-ns-{Environment.ProcessId}/ns", File.ReadAllText($"/proc/{host.Value}/cgroup"), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task After_a_repurpose_nothing_of_the_previous_function_is_observable()
    {
        await using var sb = fx.Start();
        var hash = fx.Put("escape");
        await sb.LoadAsync(new SandboxMessages.LoadCold(fx.Spec("first", hash) with { Environment = [new("SECRET", "first-secret")] }));
        Assert.Equal("first-secret", Text((await sb.InvokeAsync(Bytes("env:SECRET"), Timeout)).Output));
        var probe = string.Join(",", await Task.WhenAll(new[] { 3, 4, 5, 9, 50 }.Select(async n => Text((await sb.InvokeAsync(Bytes($"fd:{n}"), Timeout)).Output))));
        Assert.Equal("open,closed,closed,closed,closed", probe);
        Assert.Equal("written", Text((await sb.InvokeAsync(Bytes("write:left-behind"), Timeout)).Output));
        var fd = Text((await sb.InvokeAsync(Bytes("hold:held"), Timeout)).Output);
        Assert.True(int.Parse(fd, System.Globalization.CultureInfo.InvariantCulture) > 2, $"hold answered {fd}");
        Assert.Equal("open", Text((await sb.InvokeAsync(Bytes($"fd:{fd}"), Timeout)).Output));

        // Repurpose the same sandbox for another function (here the same module under another name and environment).
        await sb.ResetAsync();
        await sb.LoadAsync(fx.ColdLoad("second", hash));
        Assert.Equal("unset", Text((await sb.InvokeAsync(Bytes("env:SECRET"), Timeout)).Output));
        Assert.Equal("missing", Text((await sb.InvokeAsync(Bytes("read:left-behind"), Timeout)).Output));
        Assert.Equal("missing", Text((await sb.InvokeAsync(Bytes("read:held"), Timeout)).Output));
        Assert.True(Text((await sb.InvokeAsync(Bytes($"fd:{fd}"), Timeout)).Output) == "closed", $"descriptor {fd} of the first function is still open");
        var stats = await sb.StatsAsync();
        Assert.Equal("second", stats.Function);
        Assert.Equal(4, stats.Invocations);
    }

    [Fact]
    public async Task A_function_layer_is_read_through_tmp_and_writes_never_reach_it_or_the_next_function()
    {
        using var dir = new TempDir("trenv-layer");
        var layer = dir.Sub("layer");
        File.WriteAllText(Path.Combine(layer, "data.txt"), "from-layer");
        var isolated = TrEnv.Sandbox.Isolation.Namespaces.Wrap(fx.Host);
        foreach (var (host, label) in new[] { (fx.Host, "plain"), (isolated, "overlay") })
        {
            if (host is null)
                continue; // not root: only the plain directory is checked
            var sb = SandboxProcess.Start(host, dir.Sub("sb-" + label));
            await using (sb)
            {
                var hash = fx.Put("escape");
                await sb.LoadAsync(new SandboxMessages.LoadCold(fx.Spec("with-layer", hash) with { LayerPath = layer }));
                Assert.Equal("from-layer", Text((await sb.InvokeAsync(Bytes("read:data.txt"), Timeout)).Output));
                Assert.Equal("written", Text((await sb.InvokeAsync(Bytes("write:data.txt"), Timeout)).Output));
                Assert.Equal("secret", Text((await sb.InvokeAsync(Bytes("read:data.txt"), Timeout)).Output));
                Assert.Equal("from-layer", File.ReadAllText(Path.Combine(layer, "data.txt"))); // the layer itself is untouched

                await sb.ResetAsync();
                await sb.LoadAsync(fx.ColdLoad("without-layer", hash));
                Assert.Equal("missing", Text((await sb.InvokeAsync(Bytes("read:data.txt"), Timeout)).Output));
            }
        }
    }

    [Fact]
    public async Task A_guest_and_its_host_process_cannot_reach_host_files_or_another_sandboxs_files()
    {
        if (fx.Isolated() is not { } isolated)
        {
            Assert.False(TrEnv.Sandbox.Isolation.Namespaces.Available && fx.Host.Kind == "aot", "as root with the NativeAOT host every sandbox must get its own root");
            return;
        }
        var dirA = fx.Sub($"iso-a-{Guid.NewGuid():N}");
        var dirB = fx.Sub($"iso-b-{Guid.NewGuid():N}");
        var a = SandboxProcess.Start(isolated, dirA);
        var b = SandboxProcess.Start(isolated, dirB);
        await using (a)
        await using (b)
        {
            var escape = fx.Put("escape");
            await a.LoadAsync(fx.ColdLoad("a", escape));
            await b.LoadAsync(fx.ColdLoad("b", escape));
            Assert.Equal("written", Text((await a.InvokeAsync(Bytes("write:a-secret"), Timeout)).Output));

            // The guest: WASI gives it its own /tmp and nothing else.
            var probe = Text((await b.InvokeAsync(Bytes("probe"), Timeout)).Output).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.All(probe.Where(l => !l.StartsWith("/tmp/probe.txt", StringComparison.Ordinal)), l => Assert.EndsWith("=denied", l, StringComparison.Ordinal));
            Assert.Contains("/tmp/probe.txt=ok", probe);
            Assert.Equal("missing", Text((await b.InvokeAsync(Bytes("read:a-secret"), Timeout)).Output));

            // The host process itself (what a guest that escaped the engine would hold): its root is the
            // base plus its own binds; the node's files and the other sandbox are not in it.
            var hostB = TrEnv.Sandbox.Isolation.Namespaces.ChildOf(b.Pid) ?? throw new InvalidOperationException("no host under unshare");
            var rootB = $"/proc/{hostB}/root";
            Assert.True(Directory.Exists(rootB + Path.GetFullPath(dirB)), "the sandbox's own work directory is bound in");
            Assert.True(File.Exists(rootB + fx.PoolPath), "the pool is bound in");
            // A's /tmp is a tmpfs in A's own mount namespace: the file is there, and not on the node's disk.
            var hostA = TrEnv.Sandbox.Isolation.Namespaces.ChildOf(a.Pid) ?? throw new InvalidOperationException("no host under unshare");
            Assert.True(File.Exists($"/proc/{hostA}/root" + Path.Combine(Path.GetFullPath(dirA), "scratch", "tmp", "a-secret")), "sandbox A's file exists in A");
            Assert.False(Path.Exists(Path.Combine(dirA, "scratch", "tmp", "a-secret")) || Path.Exists(Path.Combine(dirA, "tmp", "a-secret")), "sandbox A's file is on the node's disk");
            Assert.False(Directory.Exists(rootB + Path.GetFullPath(dirA)), "sandbox A's directory is visible in B");
            foreach (var hostFile in new[] { "/etc/passwd", "/etc/hostname", "/usr/bin/unshare", "/bin/sh", "/root", "/home", "/sys/fs/cgroup" })
                Assert.False(Path.Exists(rootB + hostFile), $"{hostFile} is visible inside the sandbox");
            var allowed = new[] { dirA, dirB, fx.ModuleDirectory, fx.PoolPath, fx.Host.FileName }
                .Select(p => Path.GetFullPath(p).Split('/', StringSplitOptions.RemoveEmptyEntries)[0])
                .Concat(["proc", "dev", "tmp", "etc", "lib", "lib64", "usr"]).ToHashSet();
            var top = Directory.EnumerateFileSystemEntries(rootB).Select(Path.GetFileName).ToList();
            Assert.All(top, name => Assert.Contains(name!, allowed));
            Assert.Equal(["ld.so.cache"], Directory.EnumerateFileSystemEntries(rootB + "/etc").Select(Path.GetFileName));

            // Templates still restore inside the root: A captures hello, B maps it from the bound pool.
            await a.ResetAsync();
            var hello = fx.Put("hello");
            await a.LoadAsync(fx.ColdLoad("hello", hello));
            var header = await fx.CaptureAsync(a, $"iso-{Guid.NewGuid():N}");
            await b.ResetAsync();
            await b.LoadAsync(fx.TemplateLoad("hello", hello, header, verify: true));
            Assert.Equal("hello: rooted", Text((await b.InvokeAsync(Bytes("rooted"), Timeout)).Output));
        }
        Assert.False(File.Exists(Path.Combine(dirB, "..", Path.GetFileName(dirB) + ".root", "merged", "etc", "ld.so.cache")), "the root overlay is still mounted on the node");
    }

    [Fact]
    public async Task A_sandbox_has_no_network_unless_its_function_asks_for_it()
    {
        if (fx.Isolated() is not { } offline || fx.Isolated(network: true) is not { } online)
            return; // not root: plain processes (said at start-up)
        foreach (var (host, wantsNetwork) in new[] { (offline, false), (online, true) })
        {
            var sb = SandboxProcess.Start(host, fx.Sub($"net-{wantsNetwork}-{Guid.NewGuid():N}"));
            await using (sb)
            {
                await sb.StatsAsync();
                var child = TrEnv.Sandbox.Isolation.Namespaces.ChildOf(sb.Pid) ?? throw new InvalidOperationException("no host under unshare");
                var net = TrEnv.Sandbox.Isolation.Namespaces.Of(child)["net"];
                Assert.Equal(wantsNetwork, net == TrEnv.Sandbox.Isolation.Namespaces.Of(Environment.ProcessId)["net"]);
                var interfaces = File.ReadLines($"/proc/{child}/net/dev").Skip(2).Select(l => l.Split(':')[0].Trim()).ToList();
                if (!wantsNetwork)
                    Assert.Equal(["lo"], interfaces);
            }
        }
    }

    [Fact]
    public async Task A_lazy_restore_fetches_only_touched_pages_and_a_page_it_cannot_get_kills_the_sandbox_not_the_answer()
    {
        // heavy's template in the test pool; a mirror on tmpfs that starts empty; a page server that copies
        // requested windows from the pool into the mirror (or refuses, in the second half).
        var heavy = fx.Put("heavy");
        await using var first = fx.Start();
        await first.LoadAsync(fx.ColdLoad("heavy", heavy));
        var header = await fx.CaptureAsync(first, $"lazy-{Guid.NewGuid():N}");
        var expected = Text((await first.InvokeAsync(Bytes("3 5 8"), Timeout)).Output);

        var dir = Directory.CreateDirectory(Path.Combine("/dev/shm", $"trenv-lazy-test-{Guid.NewGuid():N}")).FullName;
        try
        {
            var mirror = Path.Combine(dir, "pool");
            using (var m = File.OpenHandle(mirror, FileMode.CreateNew, FileAccess.Write))
                RandomAccess.SetLength(m, fx.Pool.Capacity);
            var socket = Path.Combine(dir, "pages.sock");
            long requested = 0;
            var refuse = false;
            using var server = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            server.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
            server.Listen(8);
            _ = Task.Run(async () =>
            {
                while (true)
                {
                    System.Net.Sockets.Socket client;
                    try
                    {
                        client = await server.AcceptAsync();
                    }
                    catch (Exception)
                    {
                        return;
                    }
                    _ = Task.Run(async () =>
                    {
                        using var connection = client;
                        using var pool = File.OpenHandle(fx.PoolPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                        using var into = File.OpenHandle(mirror, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
                        var request = new byte[16];
                        async Task<bool> Next()
                        {
                            for (var done = 0; done < 16;)
                            {
                                var n = await client.ReceiveAsync(request.AsMemory(done));
                                if (n == 0)
                                    return false;
                                done += n;
                            }
                            return true;
                        }
                        try
                        {
                            while (await Next())
                            {
                                var (offset, length) = (BitConverter.ToInt64(request, 0), BitConverter.ToInt64(request, 8));
                                Interlocked.Add(ref requested, length);
                                if (!Volatile.Read(ref refuse))
                                {
                                    var bytes = new byte[length];
                                    RandomAccess.Read(pool, bytes, offset);
                                    RandomAccess.Write(into, bytes, offset);
                                }
                                await client.SendAsync(BitConverter.GetBytes(Volatile.Read(ref refuse) ? -1L : 0L));
                            }
                        }
                        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException)
                        {
                        }
                    });
                }
            });

            SandboxMessages.Load Lazy() => new SandboxMessages.LoadFromTemplate(fx.Spec("heavy", heavy), new SandboxMessages.TemplatePages(header, mirror, LoadSource.LazyTemplate, PageSocket: socket));
            var isolated = fx.Isolated() is { } ns
                ? ns with { Arguments = [.. ns.Arguments.Select(a => a == fx.PoolPath ? mirror : a), "--bind", socket] }
                : fx.Host;
            var lazy = SandboxProcess.Start(isolated, fx.Sub($"lazy-{Guid.NewGuid():N}"));
            await using (lazy)
            {
                await lazy.LoadAsync(Lazy());
                Assert.Equal(expected, Text((await lazy.InvokeAsync(Bytes("3 5 8"), Timeout)).Output));
                var template = TrEnv.Engine.Templates.TemplateHeader.Read(header);
                Assert.InRange(Interlocked.Read(ref requested), 1, template.StoredBytes / 4);

                // A second instance maps what the first fetched and asks only for what it touches anew.
                var before = Interlocked.Read(ref requested);
                await lazy.ResetAsync();
                await lazy.LoadAsync(Lazy());
                Assert.Equal(expected, Text((await lazy.InvokeAsync(Bytes("3 5 8"), Timeout)).Output));
                Assert.Equal(before, Interlocked.Read(ref requested));

                // A page that cannot be had: the sandbox dies, the caller is told so, and no answer is made up.
                Volatile.Write(ref refuse, true);
                await lazy.ResetAsync();
                using (var m = File.OpenHandle(mirror, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
                {
                    RandomAccess.SetLength(m, 0); // an empty mirror: every page must be asked for
                    RandomAccess.SetLength(m, fx.Pool.Capacity);
                }
                var e = await Assert.ThrowsAsync<SandboxException>(async () =>
                {
                    await lazy.LoadAsync(Lazy()); // the restore itself touches pages (globals' stack, reseed)
                    await lazy.InvokeAsync(Bytes("3 5 8"), Timeout);
                });
                Assert.Equal(ErrorKinds.SandboxCrashed, e.Kind);
                Assert.Contains("lazy restore cannot get a page", e.Message, StringComparison.Ordinal);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
