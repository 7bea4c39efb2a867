using System.Diagnostics;
using System.Text;
using TrEnv.Cli;

namespace TrEnv.Tests;

/// <summary>The trenv CLI against a running local cluster: every command, and exit codes by error kind.</summary>
public sealed class CliTests
{
    private static async Task<(int Code, string Out, string Err)> Trenv(LocalCluster c, string? stdin, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var input = new MemoryStream(Encoding.UTF8.GetBytes(stdin ?? ""));
        var code = await new CliApp(output, error, input).RunAsync(args.Contains("--url") ? args : [.. args, "--url", $"http://127.0.0.1:{c.HttpPort}"]);
        return (code, output.ToString(), error.ToString());
    }

    [Theory]
    [InlineData("deploy", "--bogus-flag")]
    [InlineData("invoke")]
    [InlineData("no-such-command")]
    public async Task A_command_line_that_does_not_parse_exits_2_with_the_problem_on_stderr(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(ExitCodes.Usage, await new CliApp(output, error).RunAsync(args));
        Assert.StartsWith("error: ", error.ToString(), StringComparison.Ordinal);
        Assert.Contains("--help' for usage.", error.ToString(), StringComparison.Ordinal);
        Assert.Equal("", output.ToString());
    }

    [Fact]
    public async Task Each_command_works_against_a_running_cluster_and_errors_exit_by_kind()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");

        var (code, output, error) = await Trenv(c, null, "deploy", "chaos", TestGuests.PathOf("chaos"), "--memory-mb", "64", "--timeout-ms", "5000", "--env", "SALT=7");
        Assert.True(code == 0, error);
        Assert.StartsWith("deployed chaos version 1 (sha256 ", output, StringComparison.Ordinal);

        (code, output, error) = await Trenv(c, null, "invoke", "chaos", "--data", "abc", "-v");
        Assert.Equal((0, true), (code, output.StartsWith("7:", StringComparison.Ordinal) && output.EndsWith(":abc", StringComparison.Ordinal)));
        Assert.Contains("start=cold", error, StringComparison.Ordinal);
        Assert.Contains("node=worker-1", error, StringComparison.Ordinal);
        var file = Path.Combine(c.Directory, "input.txt");
        await File.WriteAllTextAsync(file, "abc");
        Assert.Equal((0, output, ""), await Trenv(c, null, "invoke", "chaos", "--data", "@" + file));
        Assert.Equal((0, output, ""), await Trenv(c, "abc", "invoke", "chaos", "-d", "-"));

        (code, output, _) = await Trenv(c, null, "ls");
        Assert.Equal(0, code);
        Assert.Matches(@"chaos\s*│\s*1\s*│\s*64\s*│\s*5000\s*│\s*sealed", output);
        (code, output, _) = await Trenv(c, null, "templates");
        Assert.Equal(0, code);
        Assert.Contains("chaos@1", output, StringComparison.Ordinal);
        Assert.Contains("worker-1", output, StringComparison.Ordinal);
        (code, output, _) = await Trenv(c, null, "cluster");
        Assert.Equal(0, code);
        Assert.Contains("worker-1", output, StringComparison.Ordinal);
        Assert.Contains("coordinator", output, StringComparison.Ordinal);
        Assert.Contains("MiB allocated", output, StringComparison.Ordinal);

        // The guests' stdout and stderr are kept per function and gathered from the workers.
        Assert.Equal(0, (await Trenv(c, null, "deploy", "hello", TestGuests.PathOf("hello"))).Code);
        Assert.Equal((0, "hello: !one", ""), await Trenv(c, null, "invoke", "hello", "-d", "!one"));
        (code, output, _) = await Trenv(c, null, "logs", "hello");
        Assert.Equal(0, code);
        Assert.Matches(@"worker-1 v1 stdout: log line for input of 4 bytes", output);
        Assert.Matches(@"worker-1 v1 stderr: stderr line", output);
        (code, output, _) = await Trenv(c, null, "logs", "hello", "--tail", "1");
        Assert.Equal((0, 1), (code, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length));
        Assert.Equal(ExitCodes.NotFound, (await Trenv(c, null, "logs", "nosuch")).Code);

        // Errors are sentences on stderr, and the exit code says which kind.
        (code, _, error) = await Trenv(c, null, "invoke", "nosuch");
        Assert.Equal((ExitCodes.NotFound, true), (code, error.Contains("no function named \"nosuch\"", StringComparison.Ordinal)));
        var junk = Path.Combine(c.Directory, "junk.wasm");
        await File.WriteAllTextAsync(junk, "not a module");
        (code, _, error) = await Trenv(c, null, "deploy", "junk", junk);
        Assert.Equal((ExitCodes.Invalid, true), (code, error.Contains("invalid_module", StringComparison.Ordinal)));
        Assert.Equal(0, (await Trenv(c, null, "deploy", "trap", TestGuests.PathOf("trap"))).Code);
        Assert.Equal(ExitCodes.Trap, (await Trenv(c, null, "invoke", "trap", "-d", "trap")).Code);
        (code, _, error) = await Trenv(c, null, "ls", "--url", "http://127.0.0.1:1");
        Assert.Equal((ExitCodes.Unreachable, true), (code, error.Contains("Cannot reach the coordinator", StringComparison.Ordinal)));
        Assert.Equal(ExitCodes.Usage, (await Trenv(c, null, "deploy", "x", Path.Combine(c.Directory, "missing.wasm"))).Code);

        // bench: every request counted by the start kind the platform reported; scaled to zero first and every 10
        // requests, so template starts show up next to warm ones.
        (code, output, error) = await Trenv(c, null, "bench", "hello", "-d", "x", "-n", "30", "-c", "3", "--fresh", "--scale-to-zero-every", "10", "--json");
        Assert.True(code == 0, error + output);
        using (var bench = System.Text.Json.JsonDocument.Parse(output))
        {
            var r = bench.RootElement;
            Assert.Equal((30, 30, 3), (r.GetProperty("requests").GetInt32(), r.GetProperty("ok").GetInt32(), r.GetProperty("concurrency").GetInt32()));
            var byStart = r.GetProperty("byStart").EnumerateArray().ToDictionary(k => k.GetProperty("start").GetString()!, k => k.GetProperty("count").GetInt32());
            Assert.Equal(30, byStart.Values.Sum());
            Assert.True(byStart.GetValueOrDefault("template") >= 3 && byStart.GetValueOrDefault("warm") >= 1, string.Join(", ", byStart));
            Assert.All(r.GetProperty("byStart").EnumerateArray(), k => Assert.True(k.GetProperty("p50Ms").GetDouble() <= k.GetProperty("p99Ms").GetDouble()));
        }
        (code, output, _) = await Trenv(c, null, "bench", "hello", "-n", "5");
        Assert.Equal(0, code);
        Assert.Contains("hello: 5 requests, 4 at a time", output, StringComparison.Ordinal);
        Assert.Contains("warm", output, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.NotFound, (await Trenv(c, null, "bench", "nosuch", "-n", "5")).Code);
        (code, output, _) = await Trenv(c, null, "bench", "trap", "-d", "trap", "-n", "4", "-c", "2");
        Assert.Equal((ExitCodes.Trap, true), (code, output.Contains("4 failed: trap", StringComparison.Ordinal)));
        Assert.Equal(ExitCodes.Usage, (await Trenv(c, null, "bench", "hello", "-n", "0")).Code);

        Assert.Equal(0, (await Trenv(c, null, "rm", "trap")).Code);
        Assert.Equal(ExitCodes.NotFound, (await Trenv(c, null, "invoke", "trap")).Code);
    }

    [Fact]
    public async Task Every_deploy_parameter_layers_a_manifest_and_json_output_reach_the_api()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        var d = JsonDocumentOf;

        // A directory becomes the same archive every time, so the same hash; a FIFO in it is refused by name.
        var data = Directory.CreateDirectory(Path.Combine(c.Directory, "data")).FullName;
        await File.WriteAllTextAsync(Path.Combine(data, "data.txt"), "from-layer");
        Directory.CreateDirectory(Path.Combine(data, "dir"));
        await File.WriteAllTextAsync(Path.Combine(data, "dir", "nested.txt"), "nested");
        var (code, hash, error) = await Trenv(c, null, "layer", "push", data);
        Assert.True(code == 0, error);
        hash = hash.Trim();
        Assert.Matches("^[0-9a-f]{64}$", hash);
        File.SetLastWriteTimeUtc(Path.Combine(data, "data.txt"), DateTime.UtcNow.AddDays(-3)); // times do not enter the archive
        (code, var pushed, _) = await Trenv(c, null, "layer", "push", data, "--json");
        Assert.Equal((0, hash, 2), (code, d(pushed).GetProperty("sha256").GetString(), d(pushed).GetProperty("files").GetInt32()));
        var fifo = Path.Combine(c.Directory, "with-fifo");
        Directory.CreateDirectory(fifo);
        using (var mkfifo = Process.Start("mkfifo", Path.Combine(fifo, "pipe"))!)
            await mkfifo.WaitForExitAsync();
        Assert.True(File.Exists(Path.Combine(fifo, "pipe")));
        (code, _, error) = await Trenv(c, null, "layer", "push", fifo);
        Assert.Equal((ExitCodes.Usage, true), (code, error.Contains("not a regular file", StringComparison.Ordinal)));

        // Every parameter as a flag: the layer named by its directory, uploaded first.
        (code, var deployed, error) = await Trenv(c, null, "deploy", "reader", TestGuests.PathOf("escape"), "--layer", data, "--cpu-millicores", "500", "--network", "false",
            "--tmp-mb", "16", "--init-timeout-ms", "4000", "--concurrency", "3", "--memory-mb", "32", "--timeout-ms", "3000", "--env", "A=1", "--json");
        Assert.True(code == 0, error);
        Assert.Equal(("reader", 1, true), (d(deployed).GetProperty("name").GetString(), d(deployed).GetProperty("version").GetInt32(), d(deployed).GetProperty("created").GetBoolean()));
        Assert.Equal((0, "from-layer", ""), await Trenv(c, null, "invoke", "reader", "-d", "read:data.txt"));
        (code, var listed, _) = await Trenv(c, null, "ls", "--json");
        var limits = d(listed).GetProperty("functions").EnumerateArray().Single(f => f.GetProperty("name").GetString() == "reader").GetProperty("current").GetProperty("limits");
        Assert.Equal((hash, 500, false, 16, 4000, 3, 32, 3000, "1"), (limits.GetProperty("layer").GetString(), limits.GetProperty("cpuMillicores").GetInt32(),
            limits.GetProperty("network").GetBoolean(), limits.GetProperty("tmpMb").GetInt32(), limits.GetProperty("initTimeoutMs").GetInt32(),
            limits.GetProperty("concurrency").GetInt32(), limits.GetProperty("memoryMb").GetInt32(), limits.GetProperty("timeoutMs").GetInt32(),
            limits.GetProperty("env").GetProperty("A").GetString()));

        // A manifest deploys what it names, with paths relative to itself; run again, it changes nothing.
        var manifest = Path.Combine(c.Directory, "trenv.yaml");
        await File.WriteAllTextAsync(manifest, $$"""
            functions:
              greeter:
                module: {{TestGuests.PathOf("hello")}}
                memoryMb: 48
                env:
                  GREETING: hi
              shelf:
                module: {{TestGuests.PathOf("escape")}}
                layer: data
                tmpMb: 8
            """);
        (code, var first, error) = await Trenv(c, null, "deploy", "-f", manifest);
        Assert.True(code == 0, error);
        Assert.Equal(["deployed greeter version 1", "deployed shelf version 1"], first.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l[..l.IndexOf(" (", StringComparison.Ordinal)]));
        Assert.Equal((0, "from-layer", ""), await Trenv(c, null, "invoke", "shelf", "-d", "read:data.txt"));
        (code, var again, error) = await Trenv(c, null, "deploy", "-f", manifest);
        Assert.True(code == 0, error);
        Assert.Equal(["unchanged greeter version 1", "unchanged shelf version 1"], again.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l[..l.IndexOf(" (", StringComparison.Ordinal)]));
        (code, var asJson, _) = await Trenv(c, null, "deploy", "-f", manifest, "--json");
        Assert.Equal((0, 2), (code, d(asJson).GetArrayLength()));
        foreach (var (yaml, says) in new[]
        {
            ("functions:\n  x:\n    module: nowhere.wasm\n", "does not exist"),
            ("functions:\n  x:\n    modul: a.wasm\n", "line 3"),
            ("functions:\n  x:\n    memoryMb: 5\n", "exactly one of module"),
            ("nothing: here\n", "line 1"),
        })
        {
            await File.WriteAllTextAsync(manifest, yaml);
            (code, _, error) = await Trenv(c, null, "deploy", "-f", manifest);
            Assert.True(code == ExitCodes.Usage && error.Contains(says, StringComparison.Ordinal), $"{yaml}: {code} {error}");
        }
        Assert.Equal(ExitCodes.Usage, (await Trenv(c, null, "deploy", "-f", manifest, "--memory-mb", "5")).Code);
        Assert.Equal(ExitCodes.Usage, (await Trenv(c, null, "deploy", "only-a-name")).Code);

        // --json on every command that prints data parses as JSON; the answers' shapes are the API's.
        async Task<System.Text.Json.JsonElement> Json(params string[] args)
        {
            var (status, text, problem) = await Trenv(c, null, [.. args, "--json"]);
            Assert.True(status == 0, $"trenv {string.Join(' ', args)}: {status} {problem}");
            return d(text);
        }
        var invoked = await Json("invoke", "greeter", "-d", "x");
        Assert.Equal(200, invoked.GetProperty("status").GetInt32());
        Assert.StartsWith("hello", invoked.GetProperty("output").GetString(), StringComparison.Ordinal);
        Assert.False(string.IsNullOrEmpty(invoked.GetProperty("headers").GetProperty("X-TrEnv-Start").GetString()));
        Assert.True((await Json("templates")).GetProperty("templates").GetArrayLength() >= 1);
        Assert.Equal(1, (await Json("cluster")).GetProperty("workers").GetArrayLength());
        Assert.Equal("greeter", (await Json("logs", "greeter")).GetProperty("name").GetString());
        var session = (await Json("session", "new", "greeter")).GetProperty("id").GetString()!;
        Assert.Equal("active", (await Json("session", "show", session)).GetProperty("state").GetString());
        Assert.Equal("paused", (await Json("session", "pause", session)).GetProperty("state").GetString());
        // The list is the catalog's, which folds the registry's events a moment later.
        await Poll.UntilAsync(async () => (await Json("session", "ls")).EnumerateArray().Any(s => s.GetProperty("id").GetString() == session),
            TimeSpan.FromSeconds(30), () => "the session in session ls --json");
        Assert.Equal(session, (await Json("session", "fork", session, "-n", "2")).GetProperty("parent").GetString());
        await Json("session", "rm", session);
        await Json("rm", "greeter");
    }

    private static Func<string, System.Text.Json.JsonElement> JsonDocumentOf => text => System.Text.Json.JsonDocument.Parse(text).RootElement;

    [Fact]
    public async Task A_scaffolded_guest_builds_deploys_and_answers()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        {
            var (code, output, error) = await Trenv(c, null, "new", "my-tool", "--dir", c.Directory);
            Assert.True(code == 0, error);
            Assert.Contains("my-tool.c, trenv.h, build.sh", output, StringComparison.Ordinal);
            Assert.Equal(ExitCodes.Usage, (await Trenv(c, null, "new", "my-tool", "--dir", c.Directory)).Code); // never overwrites
            using (var build = Process.Start(new ProcessStartInfo(Path.Combine(c.Directory, "my-tool", "build.sh")) { RedirectStandardError = true, RedirectStandardOutput = true })!)
            {
                var stderr = await build.StandardError.ReadToEndAsync();
                await build.WaitForExitAsync();
                Assert.True(build.ExitCode == 0, stderr);
            }
            Assert.Equal(0, (await Trenv(c, null, "deploy", "my-tool", Path.Combine(c.Directory, "my-tool", "my-tool.wasm"))).Code);
            Assert.Equal((0, "my_tool says: hi", ""), await Trenv(c, null, "invoke", "my-tool", "-d", "hi"));
        }
    }

    [Fact]
    public async Task Up_starts_a_local_cluster_with_the_samples_deployed_and_down_stops_it()
    {
        using var dir = new TempDir("trenv-cli-up");
        var http = FreePort();
        var basePort = TestPorts.Block(5) + 1; // the pool's gRPC port is basePort - 1, the nodes the next three
        var pool = Path.Combine("/dev/shm", Path.GetFileName(dir.Path), "pool");
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await new CliApp(output, error).RunAsync(["up", "--no-build", "--detach", "--http-port", http.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--workers", "1", "--base-port", basePort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--dir", dir.Path, "--pool-path", pool]);
        var pids = File.Exists(Path.Combine(dir.Path, "pids")) ? File.ReadAllLines(Path.Combine(dir.Path, "pids")).Select(int.Parse).ToList() : [];
        try
        {
            Assert.True(code == 0, $"{output}\n{error}");
            Assert.Contains("nodes joined 3/3, workers reporting 1/1, pool answering", output.ToString(), StringComparison.Ordinal);
            Assert.Contains($"TrEnv ready: http://127.0.0.1:{http}", output.ToString(), StringComparison.Ordinal);
            var url = $"http://127.0.0.1:{http}";
            var ls = new StringWriter();
            Assert.Equal(0, await new CliApp(ls, TextWriter.Null).RunAsync(["ls", "--url", url]));
            foreach (var sample in new[] { "hello", "heavy", "trap", "loop", "membomb", "escape" })
                Assert.Contains(sample, ls.ToString(), StringComparison.Ordinal);
            var answer = new StringWriter();
            Assert.Equal(0, await new CliApp(answer, TextWriter.Null).RunAsync(["invoke", "hello", "-d", "up", "--url", url]));
            Assert.Equal("hello: up", answer.ToString());
            // A second up on the same port is refused rather than starting a second cluster.
            Assert.Equal(ExitCodes.Usage, await new CliApp(TextWriter.Null, TextWriter.Null).RunAsync(["up", "--no-build", "--http-port", http.ToString(System.Globalization.CultureInfo.InvariantCulture)]));
        }
        finally
        {
            var down = new StringWriter();
            Assert.Equal(0, await new CliApp(down, TextWriter.Null).RunAsync(["down", "--dir", dir.Path]));
            Assert.Contains("stopped 3 node(s)", down.ToString(), StringComparison.Ordinal);
            if (Directory.Exists(Path.GetDirectoryName(pool)))
                Directory.Delete(Path.GetDirectoryName(pool)!, true);
        }
        Assert.Equal(3, pids.Count);
        // Gone, or a zombie waiting for whichever process inherited it to reap it: either way not running.
        Assert.All(pids, pid => Assert.False(Running(pid), $"node {pid} still runs"));
    }

    private static bool Running(int pid)
    {
        try
        {
            return !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return false;
        }
    }

    private static int FreePort() => TestPorts.Next();
}
