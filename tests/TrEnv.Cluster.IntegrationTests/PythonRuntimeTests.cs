using System.Formats.Tar;
using System.Net;
using System.Text;
using System.Text.Json;

namespace TrEnv.Tests;

/// <summary>
/// The Python runtime (scripts/build-python.sh) on a real cluster: scripts deployed from source answer the same on
/// cold, template and warm starts; restored instances are reseeded; exceptions are clean 500s.
/// </summary>
public sealed class PythonRuntimeTests
{
    private const string Tool = """
        import hashlib
        import json
        import random

        # Init work the template keeps: 4096 digests.
        TABLE = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4096)]
        CALLS = 0

        def handle(request):
            global CALLS
            CALLS += 1
            if request == b"random":
                return str(random.getrandbits(64))
            if request == b"boom":
                print("about to fail")
                raise KeyError("no such key")
            if request == b"type":
                return 42
            if request == b"deep":
                def down(n):
                    return down(n + 1) + 1
                return str(down(0))
            text = request.decode()
            return json.dumps({"len": len(text), "digest": TABLE[sum(request) % 4096][:16], "upper": text.upper()})
        """;

    [Fact]
    public async Task A_script_answers_the_same_cold_from_its_template_and_warm_and_restored_instances_draw_different_random_numbers()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("tool", Encoding.UTF8.GetBytes(Tool), "runtime=python")).StatusCode);
        // The deploy alone has both workers prepare the runtime's module, compiled once for the machine in the
        // workers' shared compile cache, so no first call waits seconds for a compile.
        string[] Compiled(string dir) => Directory.Exists(dir) ? Directory.GetFiles(dir, "*.cwasm") : [];
        var shared = Path.Combine(c.Directory, "compile-cache");
        await Poll.UntilAsync(() => Task.FromResult(Compiled(Path.Combine(c.Directory, "worker-1", "modules")).Length == 1
                && Compiled(Path.Combine(c.Directory, "worker-2", "modules")).Length == 1),
            TimeSpan.FromSeconds(120), () => "both workers to hold the compiled Python runtime after the deploy, before any call");
        Assert.Single(Compiled(shared));
        var artifact = File.ReadAllBytes(Compiled(shared)[0]);
        Assert.Equal(artifact, File.ReadAllBytes(Compiled(Path.Combine(c.Directory, "worker-2", "modules"))[0]));
        var inputs = new[] { "a", "hello world", "ünïcödé", "{\"json\": true}", new string('x', 5000), "123", " spaced ", "last" };

        var expected = await ScriptChecks.AnswersTheSameOnEveryStart(c, "tool", inputs);
        using (var doc = JsonDocument.Parse(expected["hello world"]))
            Assert.Equal("HELLO WORLD", doc.RootElement.GetProperty("upper").GetString());
        // Every restored instance is reseeded, so two template starts draw different numbers.
        await ScriptChecks.RestoredInstancesDrawDifferently(c, "tool", "random");
    }

    [Fact]
    public async Task Exceptions_are_clean_500s_with_the_traceback_in_the_log_and_the_instance_keeps_serving()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("tool", Encoding.UTF8.GetBytes(Tool), "runtime=python")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await c.Api.InvokeAsync("tool", "warm me")).Status);

        var boom = await c.Api.InvokeAsync("tool", "boom");
        Assert.Equal(HttpStatusCode.InternalServerError, boom.Status);
        using (var error = JsonDocument.Parse(boom.Body))
        {
            Assert.Equal("exception", error.RootElement.GetProperty("error").GetString());
            Assert.Equal("KeyError: 'no such key'", error.RootElement.GetProperty("message").GetString());
        }
        var typed = await c.Api.InvokeAsync("tool", "type");
        Assert.Contains("handle() must return bytes or str, not int", typed.Body, StringComparison.Ordinal);
        // The same instance answers next: still warm, and its state (CALLS) survived the exceptions.
        var after = await c.Api.InvokeAsync("tool", "after");
        Assert.Equal((HttpStatusCode.OK, "warm"), (after.Status, after.Start));
        // Unbounded recursion ends in a clean failure (RecursionError, or a stack-overflow trap), never corrupt state.
        var deep = await c.Api.InvokeAsync("tool", "deep");
        Assert.Equal(HttpStatusCode.InternalServerError, deep.Status);
        var recovered = await c.Api.InvokeAsync("tool", "hello world");
        Assert.Equal(HttpStatusCode.OK, recovered.Status);
        Assert.Contains("HELLO WORLD", recovered.Body, StringComparison.Ordinal);

        string logs = "";
        await Poll.UntilAsync(async () =>
        {
            logs = await c.Http.GetStringAsync("/v1/functions/tool/logs?tail=50");
            return logs.Contains("Traceback (most recent call last)", StringComparison.Ordinal) && logs.Contains("about to fail", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(10), () => "the traceback in the function's log: " + logs);
        Assert.Contains("KeyError", logs, StringComparison.Ordinal);

        // A script that fails at its top level, or has no handle, fails its start with the reason; a fixed deploy recovers.
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("broken", "import json\ndef broken(:\n"u8.ToArray(), "runtime=python")).StatusCode);
        var broken = await c.Api.InvokeAsync("broken", "x");
        Assert.Equal(HttpStatusCode.InternalServerError, broken.Status);
        Assert.Contains("SyntaxError", broken.Body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("broken", "X = 1\n"u8.ToArray(), "runtime=python")).StatusCode);
        Assert.Contains("defines no handle(request) function", (await c.Api.InvokeAsync("broken", "x")).Body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("broken", "def handle(r):\n    return b'fixed'\n"u8.ToArray(), "runtime=python")).StatusCode);
        Assert.Equal((HttpStatusCode.OK, "fixed"), ((await c.Api.InvokeAsync("broken", "x")).Status, (await c.Api.InvokeAsync("broken", "x")).Body));

        // Bad deploys are refused before anything is stored.
        var unknown = await c.Api.DeployAsync("x", "def handle(r): return r"u8.ToArray(), "runtime=cobol");
        Assert.Equal(HttpStatusCode.UnprocessableEntity, unknown.StatusCode);
        Assert.Contains("invalid_runtime", await unknown.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, (await c.Api.DeployAsync("x", [0xff, 0xfe, 0x00, 0x80], "runtime=python")).StatusCode);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, (await c.Api.DeployAsync("x", [], "runtime=python")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await c.Api.InvokeAsync("tool", "still here")).Status);
    }

    [Fact]
    public async Task A_tar_deploy_brings_its_own_modules_and_the_sample_tools_answer_as_the_readme_says()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        using (var tar = new MemoryStream())
        {
            await using (var writer = new TarWriter(tar, leaveOpen: true))
            {
                foreach (var (path, text) in new[] { ("main.py", "from helpers import shout\n\ndef handle(r):\n    return shout(r.decode())\n"), ("helpers.py", "def shout(s):\n    return s.upper() + '!'\n") })
                    await writer.WriteEntryAsync(new PaxTarEntry(TarEntryType.RegularFile, path) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)) });
            }
            Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("packaged", tar.ToArray(), "runtime=python")).StatusCode);
        }
        Assert.Equal("HEY!", (await c.Api.InvokeAsync("packaged", "hey")).Body);

        var samples = Path.Combine(TestGuests.RepoRoot, "guests", "python");
        async Task<string> Sample(string file, string input)
        {
            Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync(Path.GetFileNameWithoutExtension(file).Replace('_', '-'), await File.ReadAllBytesAsync(Path.Combine(samples, file)), "runtime=python")).StatusCode);
            var r = await c.Api.InvokeAsync(Path.GetFileNameWithoutExtension(file).Replace('_', '-'), input);
            Assert.True(r.Status == HttpStatusCode.OK, $"{file}: {r.Status} {r.Body}");
            return r.Body;
        }
        Assert.Equal("8.567142857142857142857142857", await Sample("calc.py", "(19.99 * 3) / 7"));
        Assert.Equal("0.3", await Sample("calc.py", "0.1 + 0.2"));
        Assert.Equal("""{"count": 2, "records": [{"b": "y"}, {"b": "x"}]}""",
            await Sample("json_transform.py", """{"records":[{"a":2,"b":"x"},{"a":1,"b":"y"}],"sort":"a","select":["b"]}"""));
        Assert.Equal("""{"emails": ["bob@example.com"], "urls": ["https://x.org/a"], "dates": ["2026-11-27"], "amounts": ["$12.50"]}""",
            await Sample("regex_extract.py", "mail bob@example.com at https://x.org/a on 2026-11-27 for $12.50"));
        using var report = JsonDocument.Parse(await Sample("text_report.py", "compare: the quick fox\nThe quick brown fox jumps over the lazy dog"));
        Assert.Equal((9, 0.4286), (report.RootElement.GetProperty("words").GetInt32(), report.RootElement.GetProperty("similarity").GetDouble()));
    }
}
