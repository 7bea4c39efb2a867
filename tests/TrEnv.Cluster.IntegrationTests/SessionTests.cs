using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace TrEnv.Tests;

/// <summary>
/// Agent sessions on a real cluster: state carries across calls and across a pause and a resume on another worker
/// (a C guest and a Python script); a paused session survives kill -9 of its last worker; calls on one session
/// are serialized; an idle session pauses by itself.
/// </summary>
public sealed class SessionTests
{
    private const string PythonTool = """
        import json
        import random

        # Init work every session shares through the template.
        TABLE = {i: str(i * i) for i in range(20000)}
        NOTES = {}

        def handle(request):
            text = request.decode()
            if text.startswith("set "):
                key, value = text[4:].split(" ", 1)
                NOTES[key] = value
                return "ok %d" % len(NOTES)
            if text.startswith("get "):
                return NOTES.get(text[4:], "missing")
            if text == "dump":
                return json.dumps(NOTES, sort_keys=True)
            if text == "rand":
                return str(random.getrandbits(32))
            return TABLE.get(len(text), "?")
        """;

    private sealed record Session(string Id, string State, string? Node, long StoredBytes, long DirtiedBytes, long TemplateBytes, long MemoryBytes, int Pauses, int Resumes, string? Error,
        int Checkpoints = 0, DateTimeOffset? LastCheckpointAt = null, long? CallsSinceSaved = 0, int Recoveries = 0, Recovery? LastRecovery = null, long StoredFilesBytes = 0);

    private sealed record Recovery(DateTimeOffset At, DateTimeOffset CheckpointAt, long? LostCalls, string Reason, string? Node);

    private static async Task<Session> Create(LocalCluster c, string function, int? idle = null, int? checkpointEvery = null)
    {
        var request = new Dictionary<string, object> { ["function"] = function };
        if (idle is { } i)
            request["idleTimeoutS"] = i;
        if (checkpointEvery is { } every)
            request["checkpointEveryS"] = every;
        var r = await c.Http.PostAsJsonAsync("/v1/sessions", request);
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.Created, $"create answered {r.StatusCode}: {body}");
        Assert.Equal($"/v1/sessions/{Read(body).Id}", r.Headers.Location?.ToString());
        return Read(body);
    }

    private static Session Read(string json) => JsonSerializer.Deserialize<Session>(json, new JsonSerializerOptions(JsonSerializerDefaults.Web))!;

    private static async Task<Session> Get(LocalCluster c, string id)
    {
        var r = await c.Http.GetAsync($"/v1/sessions/{id}");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        return Read(await r.Content.ReadAsStringAsync());
    }

    private static async Task<Session> Post(LocalCluster c, string id, string action)
    {
        var r = await c.Http.PostAsync($"/v1/sessions/{id}/{action}", null);
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"{action} answered {r.StatusCode}: {body}");
        return Read(body);
    }

    private static async Task<(HttpStatusCode Status, string Body, string Start)> Call(LocalCluster c, string id, string input)
    {
        var r = await c.Http.PostAsync($"/v1/sessions/{id}/invoke", new ByteArrayContent(Encoding.UTF8.GetBytes(input)));
        return (r.StatusCode, await r.Content.ReadAsStringAsync(), r.Headers.TryGetValues("X-TrEnv-Start", out var s) ? s.Single() : "");
    }

    private static async Task<string> Ok(LocalCluster c, string id, string input, string start = "warm")
    {
        var (status, body, kind) = await Call(c, id, input);
        Assert.True(status == HttpStatusCode.OK, $"\"{input}\" answered {status}: {body}");
        Assert.Equal(start, kind);
        return body;
    }

    private static string Other(string node) => node == "worker-1" ? "worker-2" : "worker-1";

    [Fact]
    public async Task A_C_session_keeps_its_state_across_calls_and_across_a_pause_and_a_resume_on_another_worker()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        await c.Api.DeployGuestAsync("notebook", "notebook");

        var s = await Create(c, "notebook");
        Assert.Equal("active", s.State);
        Assert.Equal("ok 1", await Ok(c, s.Id, "set city lisbon"));
        Assert.Equal("total=5 calls=2", await Ok(c, s.Id, "add 5"));
        Assert.Equal("filled 128 KiB", await Ok(c, s.Id, "fill 128"));
        // A second session of the same function has its own memory.
        var other = await Create(c, "notebook");
        Assert.Equal("missing", await Ok(c, other.Id, "get city"));

        var paused = await Post(c, s.Id, "pause");
        Assert.Equal(("paused", 1), (paused.State, paused.Pauses));
        // Only what the session changed over its 16 MiB template is stored: the 128 KiB it filled and a few heap pages.
        Assert.InRange(paused.StoredBytes, 128 << 10, 1 << 20);
        Assert.InRange(paused.StoredBytes, 1, paused.DirtiedBytes);
        Assert.True(paused.TemplateBytes > 16 * paused.StoredBytes, $"stored {paused.StoredBytes} against a template of {paused.TemplateBytes}");

        // The list is the registry's record, a poll of the journal behind.
        await Poll.UntilAsync(async () => (await c.Http.GetStringAsync("/v1/sessions?state=paused")).Contains(s.Id, StringComparison.Ordinal)
            && (await c.Http.GetStringAsync("/v1/sessions?function=notebook&state=active")).Contains(other.Id, StringComparison.Ordinal),
            TimeSpan.FromSeconds(15), () => "the session list to show one paused and one active session");
        Assert.Equal(HttpStatusCode.BadRequest, (await c.Http.GetAsync("/v1/sessions?state=sleeping")).StatusCode);

        var there = Other(s.Node!);
        var resumed = await Post(c, s.Id, $"resume?node={there}");
        Assert.Equal(("active", there, 1), (resumed.State, resumed.Node, resumed.Resumes));
        Assert.Equal("lisbon", await Ok(c, s.Id, "get city"));
        Assert.Equal("total=6 calls=5", await Ok(c, s.Id, "add 1"));

        // The next call after a pause resumes by itself.
        await Post(c, s.Id, "pause");
        Assert.Equal("total=16 calls=6", await Ok(c, s.Id, "add 10", start: "resume"));
        Assert.StartsWith("keys=1 total=16 calls=7 fills=1 ", await Ok(c, s.Id, "state"), StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.NoContent, (await c.Http.DeleteAsync($"/v1/sessions/{s.Id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await c.Http.GetAsync($"/v1/sessions/{s.Id}")).StatusCode);
        await Poll.UntilAsync(async () => !(await c.Http.GetStringAsync("/v1/sessions")).Contains(s.Id, StringComparison.Ordinal),
            TimeSpan.FromSeconds(15), () => "the deleted session to leave the list");
        Assert.Equal(HttpStatusCode.NotFound, (await Call(c, s.Id, "get city")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await c.Http.GetAsync("/v1/sessions/s-00000000000000000000")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await c.Http.PostAsJsonAsync("/v1/sessions", new { function = "nope" })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await c.Http.PostAsync("/v1/sessions", new StringContent("{not json"))).StatusCode);
    }

    [Fact]
    public async Task A_Python_session_keeps_its_variables_across_a_pause_and_a_resume_on_another_worker()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("notes", Encoding.UTF8.GetBytes(PythonTool), "runtime=python")).StatusCode);
        var s = await Create(c, "notes");
        Assert.Equal("ok 1", await Ok(c, s.Id, "set a alpha"));
        Assert.Equal("ok 2", await Ok(c, s.Id, "set b beta"));
        var rand = await Ok(c, s.Id, "rand");

        var paused = await Post(c, s.Id, "pause");
        Assert.True(paused.StoredBytes > 0 && paused.StoredBytes < paused.TemplateBytes, $"stored {paused.StoredBytes} of a {paused.TemplateBytes}-byte template");
        await Post(c, s.Id, $"resume?node={Other(s.Node!)}");
        Assert.Equal("{\"a\": \"alpha\", \"b\": \"beta\"}", await Ok(c, s.Id, "dump"));
        Assert.Equal("ok 3", await Ok(c, s.Id, "set c gamma"));
        Assert.NotEqual(rand, await Ok(c, s.Id, "rand"));

        // The sample analyst tool keeps its tables and variables across a pause.
        var analyst = await File.ReadAllBytesAsync(Path.Combine(TestGuests.RepoRoot, "guests", "python", "analyst.py"));
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("analyst", analyst, "runtime=python")).StatusCode);
        var a = await Create(c, "analyst");
        Assert.Equal("t: 4 values", await Ok(c, a.Id, "load t 1,2,3,4"));
        Assert.Equal("x = 20", await Ok(c, a.Id, "let x (2 + 3) * 4"));
        await Post(c, a.Id, "pause");
        Assert.Equal("t: 5 values", await Ok(c, a.Id, "append t 10", start: "resume"));
        Assert.Equal("y = 22", await Ok(c, a.Id, "let y x + 2"));
        using (var described = JsonDocument.Parse(await Ok(c, a.Id, "describe t")))
            Assert.Equal((5, 4.0), (described.RootElement.GetProperty("count").GetInt32(), described.RootElement.GetProperty("mean").GetDouble()));
        Assert.Contains("did you mean load?", await Ok(c, a.Id, "lod t 1"), StringComparison.Ordinal);

        // A session restored from the template draws its own random numbers, as template starts do.
        var second = await Create(c, "notes");
        var third = await Create(c, "notes");
        Assert.NotEqual(await Ok(c, second.Id, "rand"), await Ok(c, third.Id, "rand"));
    }

    [Fact]
    public async Task A_paused_session_survives_kill_9_of_its_last_worker_and_an_active_one_is_reported_lost()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        await c.Api.DeployGuestAsync("notebook", "notebook");
        var s = await Create(c, "notebook");
        await Ok(c, s.Id, "set k v");
        await Ok(c, s.Id, "add 41");
        await Post(c, s.Id, "pause");
        // Another session, paused once and then left active on the same worker with changes since that pause.
        var victim = s.Node!;
        var active = await Create(c, "notebook");
        await Ok(c, active.Id, "set x before");
        await Post(c, active.Id, "pause");
        Assert.Equal(victim, (await Post(c, active.Id, $"resume?node={victim}")).Node);
        await Ok(c, active.Id, "set x after");

        c.Kill(victim);
        // Until the coordinator sees the worker gone a resume may be refused (503); it stays paused and a retry lands elsewhere.
        string answer = "";
        await Poll.UntilAsync(async () =>
        {
            var (status, body, _) = await Call(c, s.Id, "add 1");
            Assert.True(status is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"{status}: {body}");
            answer = body;
            return status == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(30), () => "the paused session to resume on the surviving worker");
        Assert.Equal("total=42 calls=3", answer);
        Assert.Equal("v", await Ok(c, s.Id, "get k"));
        Assert.Equal(Other(victim), (await Get(c, s.Id)).Node);

        // The active one had its only live copy on the killed worker: it is lost, said plainly. Its caller may take
        // it back to its last pause (the change since is gone) or delete it.
        await Poll.UntilAsync(async () => (await Call(c, active.Id, "get x")).Status == HttpStatusCode.Gone, TimeSpan.FromSeconds(30), () => "the active session to be reported lost");
        var lost = await c.Http.GetAsync($"/v1/sessions/{active.Id}");
        Assert.Contains("\"state\":\"lost\"", await lost.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Gone, (await c.Http.PostAsync($"/v1/sessions/{active.Id}/resume", null)).StatusCode);
        Assert.Equal("active", (await Post(c, active.Id, "resume?fromLastPause=true")).State);
        Assert.Equal("before", await Ok(c, active.Id, "get x"));
        Assert.Equal(HttpStatusCode.NoContent, (await c.Http.DeleteAsync($"/v1/sessions/{active.Id}")).StatusCode);
    }

    [Fact]
    public async Task A_checkpointed_session_comes_back_from_its_checkpoint_on_another_worker_after_kill_9_and_one_without_is_lost()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        await c.Api.DeployGuestAsync("notebook", "notebook");
        Assert.Equal(HttpStatusCode.BadRequest, (await c.Http.PostAsJsonAsync("/v1/sessions", new { function = "notebook", checkpointEveryS = 301 })).StatusCode);
        var manual = await Create(c, "notebook");
        var periodic = await Create(c, "notebook", checkpointEvery: 1);
        var plain = await Create(c, "notebook");
        // All three on one worker: the one that is killed.
        var victim = manual.Node!;
        foreach (var s in new[] { periodic, plain }.Where(s => s.Node != victim))
        {
            await Post(c, s.Id, "pause");
            Assert.Equal(victim, (await Post(c, s.Id, $"resume?node={victim}")).Node);
        }

        // An explicit checkpoint (through the CLI) keeps the session active on its worker; the call after it is what a death loses.
        await Ok(c, manual.Id, "set a 1");
        Assert.Equal("total=2 calls=2", await Ok(c, manual.Id, "add 2"));
        var (code, shown, err) = await Trenv(c, "session", "checkpoint", manual.Id);
        Assert.True(code == 0, err);
        Assert.Contains("checkpoints: 1", shown, StringComparison.Ordinal);
        Assert.Contains("state: active", shown, StringComparison.Ordinal);
        var checkpointed = await Get(c, manual.Id);
        Assert.Equal(("active", victim, 0), (checkpointed.State, checkpointed.Node, checkpointed.Pauses));
        Assert.Equal(0L, checkpointed.CallsSinceSaved);
        Assert.Equal("1", await Ok(c, manual.Id, "get a")); // still live where it was
        await Ok(c, manual.Id, "set b 2");
        Assert.Equal(2L, (await Get(c, manual.Id)).CallsSinceSaved);

        // With checkpointEveryS the session checkpoints itself after its calls.
        await Ok(c, periodic.Id, "set x 1");
        await Ok(c, periodic.Id, "add 5");
        await Poll.UntilAsync(async () => await Get(c, periodic.Id) is { Checkpoints: >= 1, CallsSinceSaved: 0 }, TimeSpan.FromSeconds(20),
            () => "the periodic session to checkpoint its calls");

        await Ok(c, plain.Id, "set y 1");

        c.Kill(victim);
        var (body, recovered) = await CallUntilAnswered(c, manual.Id, "get a");
        Assert.Equal("1", body);
        Assert.Equal(checkpointed.LastCheckpointAt, DateTimeOffset.Parse(recovered!, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("missing", await Ok(c, manual.Id, "get b")); // the call after the checkpoint is gone, and said so
        var after = await Get(c, manual.Id);
        Assert.Equal(("active", Other(victim), 1), (after.State, after.Node, after.Recoveries));
        Assert.Equal(2L, after.LastRecovery!.LostCalls);
        Assert.Equal(victim, after.LastRecovery.Node);
        Assert.Equal(checkpointed.LastCheckpointAt, after.LastRecovery.CheckpointAt);
        Assert.Equal("total=3 calls=5", await Ok(c, manual.Id, "add 1")); // and it goes on from the checkpoint's state

        (body, recovered) = await CallUntilAnswered(c, periodic.Id, "get x");
        Assert.Equal("1", body);
        Assert.NotNull(recovered);
        Assert.Equal("total=6 calls=4", await Ok(c, periodic.Id, "add 1"));
        Assert.Equal(Other(victim), (await Get(c, periodic.Id)).Node);

        // Without a checkpoint there is nothing to come back to.
        await Poll.UntilAsync(async () => (await Call(c, plain.Id, "get y")).Status == HttpStatusCode.Gone, TimeSpan.FromSeconds(30), () => "the session without a checkpoint to be reported lost");
        Assert.Equal(HttpStatusCode.Gone, (await c.Http.PostAsync($"/v1/sessions/{plain.Id}/checkpoint", null)).StatusCode);
    }

    private sealed record CellError(string Name, string Value, string Traceback);

    private sealed record Cell(string Stdout, string Stderr, string? Result, CellError? Error);

    private static async Task<Cell> Run(LocalCluster c, string id, string source, string start = "warm")
    {
        var r = await c.Http.PostAsync($"/v1/sessions/{id}/invoke", new StringContent(source));
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"cell answered {r.StatusCode}: {body}");
        Assert.Equal(start, r.Headers.GetValues("X-TrEnv-Start").Single());
        return JsonSerializer.Deserialize<Cell>(body, new JsonSerializerOptions(JsonSerializerDefaults.Web))!;
    }

    [Fact]
    public async Task A_Python_interpreter_session_runs_cells_that_keep_their_state_across_a_pause_a_resume_elsewhere_and_a_loop_that_times_out()
    {
        await using var c = new LocalCluster();
        c.Environment["TRENV_INTERPRETER_TIMEOUT_MS"] = "3000";
        await c.StartAllAsync("worker-1", "worker-2");
        var created = await c.Http.PostAsJsonAsync("/v1/sessions", new { runtime = "python", checkpointEveryS = 1 });
        var createdBody = await created.Content.ReadAsStringAsync();
        Assert.True(created.StatusCode == HttpStatusCode.Created, $"create answered {created.StatusCode}: {createdBody}");
        var s = Read(createdBody);

        var first = await Run(c, s.Id, "import math\nxs = [1, 2, 3]\ndef total(v):\n    return sum(v)\nprint('loaded')\ntotal(xs)");
        Assert.Equal(("loaded\n", "", "6"), (first.Stdout, first.Stderr, first.Result));
        Assert.Null(first.Error);
        Assert.Null((await Run(c, s.Id, "y = 2")).Result); // a statement has no result
        var warned = await Run(c, s.Id, "import sys\nprint('warn', file=sys.stderr)\n'hi'");
        Assert.Equal(("", "warn\n", "'hi'"), (warned.Stdout, warned.Stderr, warned.Result));

        // An exception comes back as data; the session goes on with its state.
        var failed = await Run(c, s.Id, "def broken(v):\n    return v / 0\nbroken(xs[0])");
        Assert.Equal(("ZeroDivisionError", "division by zero"), (failed.Error!.Name, failed.Error.Value));
        Assert.Contains("return v / 0", failed.Error.Traceback, StringComparison.Ordinal); // the cell's own source line
        Assert.Equal("SyntaxError", (await Run(c, s.Id, "def (:")).Error!.Name);
        Assert.Equal("10", (await Run(c, s.Id, "xs.append(4)\ntotal(xs)")).Result);

        var paused = await Post(c, s.Id, "pause");
        Assert.Equal("paused", paused.State);
        await Post(c, s.Id, $"resume?node={Other(s.Node!)}");
        Assert.Equal("[1, 2, 3, 4]", (await Run(c, s.Id, "xs")).Result);
        Assert.Equal("12.566", (await Run(c, s.Id, "round(total(xs) * y * math.pi / 5, 3)")).Result);

        // A fork carries the variables and the files; the children and the parent diverge.
        await Run(c, s.Id, "open('/tmp/notes.txt', 'w').write('from the parent')");
        var fork = await Fork(c, s.Id, 2);
        Assert.Equal("('from the parent', 11)", (await Run(c, fork.Sessions[0], "xs.append(1)\nopen('/tmp/notes.txt').read(), total(xs)", start: "resume")).Result);
        Assert.Equal("[1, 2, 3, 4]", (await Run(c, fork.Sessions[1], "xs", start: "resume")).Result);
        Assert.Equal("[1, 2, 3, 4]", (await Run(c, s.Id, "xs")).Result);

        // A cell that loops forever hits the interpreter's timeout; the session comes back from its last checkpoint.
        await Run(c, s.Id, "zs = 'checkpointed'");
        await Poll.UntilAsync(async () => await Get(c, s.Id) is { CallsSinceSaved: 0 }, TimeSpan.FromSeconds(20), () => "the interpreter session to checkpoint its cells");
        var loop = await c.Http.PostAsync($"/v1/sessions/{s.Id}/invoke", new StringContent("while True:\n    pass"));
        Assert.Equal(HttpStatusCode.GatewayTimeout, loop.StatusCode);
        var back = await c.Http.PostAsync($"/v1/sessions/{s.Id}/invoke", new StringContent("zs, xs"));
        Assert.Equal("true", back.Headers.GetValues("X-TrEnv-Session-Recovered").Single());
        Assert.Equal("('checkpointed', [1, 2, 3, 4])", JsonSerializer.Deserialize<Cell>(await back.Content.ReadAsStringAsync(), new JsonSerializerOptions(JsonSerializerDefaults.Web))!.Result);

        // What is refused, and why.
        Assert.Equal(HttpStatusCode.BadRequest, (await c.Http.PostAsJsonAsync("/v1/sessions", new { runtime = "python", function = "f" })).StatusCode);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, (await c.Http.PostAsJsonAsync("/v1/sessions", new { runtime = "cobol" })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await c.Api.DeployAsync("trenv.mine", Encoding.UTF8.GetBytes("def handle(r):\n    return r\n"), "runtime=python")).StatusCode);
    }

    [Fact]
    public async Task A_session_keeps_its_files_and_memory_byte_exact_across_100_pauses_and_resumes_that_alternate_workers()
    {
        await using var c = new LocalCluster();
        c.Environment["TRENV_SESSION_MAX_FILES_MB"] = "1";
        await c.StartAllAsync("worker-1", "worker-2");
        var created = await c.Http.PostAsJsonAsync("/v1/sessions", new { runtime = "python", idleTimeoutS = 0 });
        var s = Read(await created.Content.ReadAsStringAsync());
        // The state: a growing buffer in memory and files under /tmp (created, appended to, removed, chmod-ed).
        var setup = await Run(c, s.Id, """
            import hashlib, os
            blob = bytearray()
            def digest():
                files = []
                for root, dirs, names in os.walk('/tmp/work'):
                    dirs.sort()
                    for name in sorted(names):
                        path = os.path.join(root, name)
                        with open(path, 'rb') as f:
                            files.append((os.path.relpath(path, '/tmp/work'), hashlib.sha256(f.read()).hexdigest(), oct(os.stat(path).st_mode & 0o777)))
                return hashlib.sha256(bytes(blob)).hexdigest(), len(blob), files
            os.makedirs('/tmp/work/sub', exist_ok=True)
            """);
        Assert.Null(setup.Error);
        string node;
        for (var i = 0; i < 100; i++)
        {
            var change = $"blob.extend(os.urandom(3000))\nwith open('/tmp/work/{(i % 3 == 0 ? "sub/" : "")}f{i % 7}.bin', 'ab') as f:\n    f.write(os.urandom(200))\n"
                + (i % 10 == 9 ? "os.remove('/tmp/work/f2.bin') if os.path.exists('/tmp/work/f2.bin') else None\n" : "")
                + (i % 25 == 0 ? $"os.chmod('/tmp/work/sub/f{i % 7}.bin', 0o640)\n" : "")
                + "digest()";
            var before = await Run(c, s.Id, change, start: i == 0 ? "warm" : "resume");
            Assert.Null(before.Error);
            node = Other((await Get(c, s.Id)).Node!);
            Assert.Equal("paused", (await Post(c, s.Id, "pause")).State);
            Assert.Equal(node, (await Post(c, s.Id, $"resume?node={node}")).Node);
            var after = await Run(c, s.Id, "digest()");
            Assert.True(before.Result == after.Result, $"cycle {i}: before the pause {before.Result}, after the resume on {node} {after.Result}");
            await Post(c, s.Id, "pause"); // the next change resumes it, wherever placement says
        }
        var stored = await Get(c, s.Id);
        Assert.True(stored.StoredFilesBytes > 0, "the files were not stored with the session");

        // Past TRENV_SESSION_MAX_FILES_MB a pause is refused and the session stays active with its files; smaller, it pauses.
        await Run(c, s.Id, "open('/tmp/work/big.bin', 'wb').write(os.urandom(2 << 20))", start: "resume");
        var refused = await c.Http.PostAsync($"/v1/sessions/{s.Id}/pause", null);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, refused.StatusCode);
        Assert.Contains("TRENV_SESSION_MAX_FILES_MB", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal("active", (await Get(c, s.Id)).State);
        Assert.Equal("2097152", (await Run(c, s.Id, "os.path.getsize('/tmp/work/big.bin')")).Result);
        await Run(c, s.Id, "os.remove('/tmp/work/big.bin')");
        Assert.Equal("paused", (await Post(c, s.Id, "pause")).State);
    }

    private sealed record ForkAnswer(string Parent, string[] Sessions, double ParentBlockedMs, double ForkMs);

    private static async Task<ForkAnswer> Fork(LocalCluster c, string id, int count)
    {
        var r = await c.Http.PostAsJsonAsync($"/v1/sessions/{id}/fork", new { count });
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.Created, $"fork answered {r.StatusCode}: {body}");
        return JsonSerializer.Deserialize<ForkAnswer>(body, new JsonSerializerOptions(JsonSerializerDefaults.Web))!;
    }

    [Fact]
    public async Task Forked_children_start_from_the_parents_state_diverge_independently_and_run_on_any_worker()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        await c.Api.DeployGuestAsync("notebook", "notebook");
        var parent = await Create(c, "notebook");
        var home = parent.Node!;
        await Ok(c, parent.Id, "set k v");
        Assert.Equal("total=10 calls=2", await Ok(c, parent.Id, "add 10"));

        var fork = await Fork(c, parent.Id, 3);
        Assert.Equal(3, fork.Sessions.Distinct().Count());
        Assert.InRange(fork.ParentBlockedMs, 0.001, fork.ForkMs);
        // The parent runs on where it was, untouched by the fork.
        Assert.Equal(("active", home), ((await Get(c, parent.Id)).State, (await Get(c, parent.Id)).Node));
        Assert.Equal("total=11 calls=3", await Ok(c, parent.Id, "add 1"));

        var (a, b, d) = (fork.Sessions[0], fork.Sessions[1], fork.Sessions[2]);
        Assert.Equal("paused", (await Get(c, a)).State);
        Assert.Equal(Other(home), (await Post(c, a, $"resume?node={Other(home)}")).Node);
        Assert.Equal(home, (await Post(c, b, $"resume?node={home}")).Node);
        Assert.Equal("v", await Ok(c, a, "get k"));
        Assert.Equal("total=15 calls=4", await Ok(c, a, "add 5"));     // each child goes on from the parent's 10 and 2 calls
        Assert.Equal("total=110 calls=3", await Ok(c, b, "add 100"));
        Assert.Equal("total=11 calls=3", await Ok(c, d, "add 1", start: "resume")); // the third resumes on its first call
        Assert.Equal("total=12 calls=4", await Ok(c, parent.Id, "add 1"));
        Assert.Equal("total=16 calls=5", await Ok(c, a, "add 1"));
        using (var shown = JsonDocument.Parse(await c.Http.GetStringAsync($"/v1/sessions/{a}")))
            Assert.Equal(parent.Id, shown.RootElement.GetProperty("forkedFrom").GetString());

        // Children outlive their parent, and pause and resume on their own (their first pause lets the shared state go).
        Assert.Equal(HttpStatusCode.NoContent, (await c.Http.DeleteAsync($"/v1/sessions/{parent.Id}")).StatusCode);
        await Post(c, a, "pause");
        Assert.Equal("total=17 calls=6", await Ok(c, a, "add 1", start: "resume"));

        // A paused parent forks from its stored delta; the children keep it even after the parent moves on.
        var paused = await Create(c, "notebook");
        await Ok(c, paused.Id, "set where paused");
        await Post(c, paused.Id, "pause");
        var (code, printed, err) = await Trenv(c, "session", "fork", paused.Id, "-n", "2");
        Assert.True(code == 0, err);
        var children = printed.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, children.Length);
        await Ok(c, paused.Id, "set where moved", start: "resume");
        await Post(c, paused.Id, "pause"); // frees the delta the children were forked from (they still hold it)
        Assert.Equal("paused", await Ok(c, children[0], "get where", start: "resume"));
        Assert.Equal(HttpStatusCode.NoContent, (await c.Http.DeleteAsync($"/v1/sessions/{paused.Id}")).StatusCode);
        Assert.Equal("paused", await Ok(c, children[1], "get where", start: "resume"));

        Assert.Equal(HttpStatusCode.BadRequest, (await c.Http.PostAsJsonAsync($"/v1/sessions/{children[1]}/fork", new { count = 65 })).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await c.Http.PostAsJsonAsync("/v1/sessions/s-00000000000000000000/fork", new { count = 1 })).StatusCode);
    }

    // Until the coordinator sees the worker gone a call may be refused (503) and the session stays where it was;
    // answers the body and the X-TrEnv-Session-Checkpoint-At of the first 200.
    private static async Task<(string Body, string? Recovered)> CallUntilAnswered(LocalCluster c, string id, string input)
    {
        (string, string?) answer = ("", null);
        await Poll.UntilAsync(async () =>
        {
            var r = await c.Http.PostAsync($"/v1/sessions/{id}/invoke", new ByteArrayContent(Encoding.UTF8.GetBytes(input)));
            var body = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"{r.StatusCode}: {body}");
            if (r.StatusCode != HttpStatusCode.OK)
                return false;
            Assert.Equal("true", r.Headers.TryGetValues("X-TrEnv-Session-Recovered", out var v) ? v.Single() : null);
            answer = (body, r.Headers.TryGetValues("X-TrEnv-Session-Checkpoint-At", out var at) ? at.Single() : null);
            return true;
        }, TimeSpan.FromSeconds(40), () => $"session {id} to answer again after its worker was killed");
        return answer;
    }

    [Fact]
    public async Task Concurrent_calls_on_one_session_run_one_at_a_time_on_one_instance_and_an_idle_session_pauses_by_itself()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1", "worker-2");
        await c.Api.DeployGuestAsync("notebook", "notebook");
        var s = await Create(c, "notebook");
        await Post(c, s.Id, "pause"); // the first calls race a resume too
        const int n = 24;
        var answers = await Task.WhenAll(Enumerable.Range(0, n).Select(_ => Task.Run(() => Call(c, s.Id, "add 1"))));
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.Status));
        // One instance saw every call in turn: the totals are exactly 1..n, each once.
        var totals = answers.Select(a => int.Parse(a.Body.Split(' ')[0]["total=".Length..], System.Globalization.CultureInfo.InvariantCulture)).Order().ToList();
        Assert.Equal(Enumerable.Range(1, n), totals);
        Assert.Single(answers, a => a.Start == "resume");
        Assert.Equal(1, (await Get(c, s.Id)).Resumes);

        var idle = await Create(c, "notebook", idle: 1);
        await Ok(c, idle.Id, "set q r");
        await Poll.UntilAsync(async () => (await Get(c, idle.Id)).State == "paused", TimeSpan.FromSeconds(20), () => "the idle session to pause by itself");
        Assert.Equal("r", await Ok(c, idle.Id, "get q", start: "resume"));

        // The same through the CLI: trenv session new|invoke|pause|show|resume|ls|rm, errors exiting by kind.
        var (code, id, err) = await Trenv(c, "session", "new", "notebook", "--idle-timeout", "0");
        Assert.True(code == 0, err);
        id = id.Trim();
        Assert.Equal((0, "ok 1"), Pick(await Trenv(c, "session", "invoke", id, "-d", "set cli yes")));
        var (pauseCode, paused, _) = await Trenv(c, "session", "pause", id);
        Assert.Equal(0, pauseCode);
        Assert.Contains("state: paused", paused, StringComparison.Ordinal);
        Assert.Contains("state: paused", (await Trenv(c, "session", "show", id)).Out, StringComparison.Ordinal);
        Assert.Equal(0, (await Trenv(c, "session", "resume", id, "--node", "worker-2")).Code);
        Assert.Equal((0, "yes"), Pick(await Trenv(c, "session", "invoke", id, "-d", "get cli")));
        await Poll.UntilAsync(async () => (await Trenv(c, "session", "ls", "--function", "notebook")).Out.Contains(id, StringComparison.Ordinal),
            TimeSpan.FromSeconds(15), () => "trenv session ls to list the session");
        Assert.Equal(0, (await Trenv(c, "session", "rm", id)).Code);
        Assert.Equal(TrEnv.Cli.ExitCodes.NotFound, (await Trenv(c, "session", "invoke", id, "-d", "get cli")).Code);
        Assert.Equal(TrEnv.Cli.ExitCodes.NotFound, (await Trenv(c, "session", "new", "no-such-function")).Code);
    }

    private static (int, string) Pick((int Code, string Out, string Err) r) => (r.Code, r.Out);

    private static async Task<(int Code, string Out, string Err)> Trenv(LocalCluster c, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await new TrEnv.Cli.CliApp(output, error).RunAsync([.. args, "--url", $"http://127.0.0.1:{c.HttpPort}"]);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task A_paused_session_survives_kill_9_of_the_memory_pool_and_the_loss_of_the_pool_file()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        await c.Api.DeployGuestAsync("notebook", "notebook");
        var s = await Create(c, "notebook");
        await Ok(c, s.Id, "set k durable");
        await Ok(c, s.Id, "fill 64");
        await Post(c, s.Id, "pause");

        // The pool node dies and its device is gone (a reboot empties /dev/shm); it comes back empty and
        // rebuilds every region, the template's and the session's, from their durable copies.
        c.KillOnly("memory-pool");
        File.Delete(c.PoolPath);
        c.StartMemoryPool(newPort: true);
        await c.WaitReadyAsync("worker-1");
        await Poll.UntilAsync(() => Task.FromResult(File.ReadAllText(Path.Combine(c.Directory, "memory-pool.log")).Contains($"rebuilt session-{s.Id}-1", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60), () => $"the pool to rebuild the session's delta: {c.Tail()}");
        // Until the worker replaces sandboxes bound to the lost pool file, a resume may be refused; it never runs on wrong pages.
        string answer = "";
        await Poll.UntilAsync(async () =>
        {
            var (status, body, _) = await Call(c, s.Id, "get k");
            Assert.True(status is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"{status}: {body}");
            answer = body;
            return status == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(30), () => $"the session to resume from the rebuilt pool: {answer}");
        Assert.Equal("durable", answer);
        Assert.StartsWith("keys=1 total=0 ", await Ok(c, s.Id, "state"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Calls_through_two_coordinators_are_serialized_and_the_session_outlives_a_killed_coordinator()
    {
        // Two coordinators share one registry only through PostgreSQL; ./test.sh starts a database for this test.
        var database = Environment.GetEnvironmentVariable("TRENV_TEST_POSTGRES_SESSIONS");
        Assert.False(string.IsNullOrEmpty(database), "TRENV_TEST_POSTGRES_SESSIONS is not set: run ./test.sh, which starts PostgreSQL (scripts/postgres.sh).");
        await using var c = new LocalCluster(database);
        c.StartCoordinator();
        using var second = c.StartCoordinatorWithOwnHttp("coordinator-2");
        c.StartMemoryPool();
        c.StartWorker("worker-1");
        c.StartWorker("worker-2");
        await c.WaitReadyAsync("worker-1", "worker-2");
        await Poll.UntilAsync(async () =>
        {
            try
            {
                return (await second.GetAsync("/readyz")).IsSuccessStatusCode;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(60), () => $"coordinator-2 to be ready: {c.Tail()}");
        await c.Api.DeployGuestAsync("notebook", "notebook");
        var s = await Create(c, "notebook");

        const int n = 12;
        var calls = Enumerable.Range(0, 2 * n).Select(i => Task.Run(async () =>
        {
            var http = i % 2 == 0 ? c.Http : second;
            var r = await http.PostAsync($"/v1/sessions/{s.Id}/invoke", new StringContent("add 1"));
            return (r.StatusCode, Body: await r.Content.ReadAsStringAsync());
        }));
        var answers = await Task.WhenAll(calls);
        Assert.All(answers, a => Assert.True(a.StatusCode == HttpStatusCode.OK, a.Body));
        var totals = answers.Select(a => int.Parse(a.Body.Split(' ')[0]["total=".Length..], System.Globalization.CultureInfo.InvariantCulture)).Order();
        Assert.Equal(Enumerable.Range(1, 2 * n), totals);

        // Whichever coordinator held the entity, the other carries on from the journal once the shard moves.
        c.Kill("coordinator-2");
        var answer = "";
        await Poll.UntilAsync(async () =>
        {
            var (status, body, _) = await Call(c, s.Id, "add 1");
            answer = body;
            return status == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(60), () => $"the session to answer through coordinator-1 after coordinator-2 died: {answer}");
        Assert.StartsWith($"total={2 * n + 1} ", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sessions_cross_between_rdma_workers_that_never_open_the_pool_eager_and_lazy()
    {
        await using var c = new LocalCluster();
        (string, string)[] rdma = [("TRENV_POOL_MODE", "rdma"), ("TRENV_POOL_PATH", "/nonexistent/trenv/pool")];
        // A mirror left on tmpfs by a worker killed with -9 (its owner pid is not running): the next rdma worker removes it.
        var abandoned = Directory.CreateDirectory($"/dev/shm/trenv-mirror-TEST{Guid.NewGuid():N}"[..40]).FullName;
        await File.WriteAllTextAsync(Path.Combine(abandoned, "owner"), "2147483646 1");
        await File.WriteAllBytesAsync(Path.Combine(abandoned, "pool"), new byte[4096]);
        c.StartCoordinator();
        c.StartMemoryPool();
        c.StartWorker("worker-1", env: [.. rdma, ("TRENV_POOL_FETCH", "eager")]);
        c.StartWorker("worker-2", env: [.. rdma, ("TRENV_POOL_FETCH", "lazy")]);
        await c.WaitReadyAsync("worker-1", "worker-2");
        Assert.False(Directory.Exists(abandoned), $"the abandoned mirror {abandoned} is still there");
        await c.Api.DeployGuestAsync("notebook", "notebook");
        var s = await Create(c, "notebook");
        await Ok(c, s.Id, "set where rdma");
        await Ok(c, s.Id, "fill 96");
        var before = await Ok(c, s.Id, "state");
        // Paused on one worker (its delta written into that worker's mirror and streamed to the pool service),
        // resumed on the other (the template's pages fetched eagerly or on first touch, the delta's over gRPC).
        for (var round = 0; round < 2; round++)
        {
            var at = (await Get(c, s.Id)).Node!;
            await Post(c, s.Id, "pause");
            await Post(c, s.Id, $"resume?node={Other(at)}");
            Assert.Equal("rdma", await Ok(c, s.Id, "get where"));
        }
        var after = await Ok(c, s.Id, "state");
        // Same keys, total and fills; only the call count moved (state, get, get, state).
        static string WithoutCalls(string state) => System.Text.RegularExpressions.Regex.Replace(state, @" calls=\d+", "");
        Assert.Equal(WithoutCalls(before), WithoutCalls(after));
        Assert.Contains("fills=1 ", after, StringComparison.Ordinal);

        // A session's /tmp files travel the same way: after its pages in the uploaded region, fetched with them.
        var py = Read(await (await c.Http.PostAsJsonAsync("/v1/sessions", new { runtime = "python" })).Content.ReadAsStringAsync());
        await Run(c, py.Id, "open('/tmp/kept.txt', 'w').write('over grpc')");
        for (var round = 0; round < 2; round++)
        {
            var at = (await Get(c, py.Id)).Node!;
            await Post(c, py.Id, "pause");
            await Post(c, py.Id, $"resume?node={Other(at)}");
            Assert.Equal("'over grpc'", (await Run(c, py.Id, "open('/tmp/kept.txt').read()")).Result);
        }
    }
}
