using System.CommandLine;
using System.Text.Json;
using Spectre.Console;

namespace TrEnv.Cli;

/// <summary>trenv session …: agent sessions (POST /v1/sessions and the calls on one).</summary>
public sealed partial class CliApp
{
    private Command Sessions()
    {
        var command = new Command("session", "Agent sessions: an instance whose memory persists across calls, paused as a delta and resumed on any worker");
        command.Subcommands.Add(SessionNew());
        command.Subcommands.Add(SessionInvoke());
        command.Subcommands.Add(SessionAction("pause", "Pause a session: its changed pages go to the pool, durably, and its sandbox is freed"));
        command.Subcommands.Add(SessionAction("checkpoint", "Store an active session's state durably and keep it running: if its worker dies, its next call resumes from there"));
        command.Subcommands.Add(SessionFork());
        command.Subcommands.Add(SessionResume());
        command.Subcommands.Add(SessionShow());
        command.Subcommands.Add(SessionList());
        command.Subcommands.Add(SessionRemove());
        return command;
    }

    private Command SessionNew()
    {
        var function = new Argument<string?>("function") { Description = "The function the session runs (or --runtime for a code interpreter)", Arity = ArgumentArity.ZeroOrOne };
        var runtime = new Option<string?>("--runtime") { Description = "A code interpreter instead of a function: python (each invoke's body is a cell, answered as JSON)" };
        var idle = new Option<int?>("--idle-timeout") { Description = "Seconds idle before it pauses by itself (0 never; default TRENV_SESSION_IDLE_S)" };
        var every = new Option<int?>("--checkpoint-every") { Description = "Checkpoint the session after calls, at most every N seconds (1-300), so a dead worker costs only the calls since" };
        var command = new Command("new", "Start a session and print its id") { function, idle, every, runtime };
        command.SetAction(async (p, ct) =>
        {
            if ((p.GetValue(function) is null) == (p.GetValue(runtime) is null))
            {
                stderr.WriteLine("error: name a function or give --runtime python, not both and not neither.");
                return ExitCodes.Usage;
            }
            using var client = Client(p);
            var request = new Dictionary<string, object>();
            if (p.GetValue(function) is { } f)
                request["function"] = f;
            if (p.GetValue(runtime) is { } r)
                request["runtime"] = r;
            if (p.GetValue(idle) is { } s)
                request["idleTimeoutS"] = s;
            if (p.GetValue(every) is { } n)
                request["checkpointEveryS"] = n;
            var body = JsonSerializer.Serialize(request);
            using var content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
            var answer = await client.SendAsync(HttpMethod.Post, "v1/sessions", content, ct);
            if (!answer.Ok)
                return Fail(answer);
            if (Json(p))
                return WriteJson(answer.Json);
            stdout.WriteLine(answer.Json.GetProperty("id").GetString());
            return ExitCodes.Ok;
        });
        return command;
    }

    private Command SessionInvoke()
    {
        var id = new Argument<string>("id") { Description = "Session id" };
        var data = new Option<string?>("--data", "-d") { Description = "The input: text, @FILE, or - for standard input (default: empty)" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Also print the start kind (warm or resume), node and timings (on stderr)" };
        var command = new Command("invoke", "Invoke a session (resuming it first when paused) and print its output") { id, data, verbose };
        command.SetAction(async (p, ct) => await InvokeAndPrintAsync(p, $"v1/sessions/{Uri.EscapeDataString(p.GetValue(id)!)}/invoke", p.GetValue(data), p.GetValue(verbose),
            [("id", "X-TrEnv-Invocation-Id"), ("start", "X-TrEnv-Start"), ("node", "X-TrEnv-Node"), ("startup_us", "X-TrEnv-Startup-Us"),
             ("exec_us", "X-TrEnv-Exec-Us"), ("session", "X-TrEnv-Session-State"), ("recovered", "X-TrEnv-Session-Recovered"),
             ("checkpoint_at", "X-TrEnv-Session-Checkpoint-At")], ct));
        return command;
    }

    private Command SessionAction(string action, string description)
    {
        var id = new Argument<string>("id") { Description = "Session id" };
        var command = new Command(action, description) { id };
        command.SetAction(async (p, ct) => await SessionCall(p, HttpMethod.Post, $"v1/sessions/{Uri.EscapeDataString(p.GetValue(id)!)}/{action}", ct));
        return command;
    }

    private Command SessionFork()
    {
        var id = new Argument<string>("id") { Description = "Session id" };
        var count = new Option<int>("-n", "--count") { Description = "How many children (1-64)", DefaultValueFactory = _ => 1 };
        var idle = new Option<int?>("--idle-timeout") { Description = "The children's idle timeout in seconds (default: the parent's)" };
        var every = new Option<int?>("--checkpoint-every") { Description = "The children's checkpoint interval in seconds (default: the parent's)" };
        var command = new Command("fork", "Fork a session: N new sessions start from its state now (memory and files) and go their own ways; prints their ids") { id, count, idle, every };
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var request = new Dictionary<string, object> { ["count"] = p.GetValue(count) };
            if (p.GetValue(idle) is { } i)
                request["idleTimeoutS"] = i;
            if (p.GetValue(every) is { } e)
                request["checkpointEveryS"] = e;
            using var content = new StringContent(JsonSerializer.Serialize(request), System.Text.Encoding.UTF8, "application/json");
            var answer = await client.SendAsync(HttpMethod.Post, $"v1/sessions/{Uri.EscapeDataString(p.GetValue(id)!)}/fork", content, ct);
            if (!answer.Ok)
                return Fail(answer);
            if (Json(p))
                return WriteJson(answer.Json);
            foreach (var child in answer.Json.GetProperty("sessions").EnumerateArray())
                stdout.WriteLine(child.GetString());
            return ExitCodes.Ok;
        });
        return command;
    }

    private Command SessionResume()
    {
        var id = new Argument<string>("id") { Description = "Session id" };
        var node = new Option<string?>("--node") { Description = "The worker to resume it on (default: wherever placement says)" };
        var fromLastPause = new Option<bool>("--from-last-pause") { Description = "Bring a lost session back to its last pause (what it did since is gone)" };
        var command = new Command("resume", "Resume a paused session now (the next invoke would resume it anyway)") { id, node, fromLastPause };
        command.SetAction(async (p, ct) =>
        {
            var query = string.Join('&', new[] { p.GetValue(node) is { } n ? "node=" + Uri.EscapeDataString(n) : null, p.GetValue(fromLastPause) ? "fromLastPause=true" : null }
                .Where(q => q is not null));
            return await SessionCall(p, HttpMethod.Post, $"v1/sessions/{Uri.EscapeDataString(p.GetValue(id)!)}/resume{(query.Length > 0 ? "?" + query : "")}", ct);
        });
        return command;
    }

    private Command SessionShow()
    {
        var id = new Argument<string>("id") { Description = "Session id" };
        var command = new Command("show", "Show a session: state, node, sizes, times") { id };
        command.SetAction(async (p, ct) => await SessionCall(p, HttpMethod.Get, $"v1/sessions/{Uri.EscapeDataString(p.GetValue(id)!)}", ct));
        return command;
    }

    private Command SessionRemove()
    {
        var id = new Argument<string>("id") { Description = "Session id" };
        var command = new Command("rm", "End a session: its sandbox and stored pages are freed") { id };
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var answer = await client.SendAsync(HttpMethod.Delete, $"v1/sessions/{Uri.EscapeDataString(p.GetValue(id)!)}", null, ct);
            if (!answer.Ok)
                return Fail(answer);
            if (Json(p))
                return WriteJson(answer.Body.Length > 0 ? answer.Json : JsonSerializer.SerializeToElement(new { deleted = p.GetValue(id) }));
            stdout.WriteLine($"deleted {p.GetValue(id)}");
            return ExitCodes.Ok;
        });
        return command;
    }

    private Command SessionList()
    {
        var function = new Option<string?>("--function") { Description = "Only this function's sessions" };
        var state = new Option<string?>("--state") { Description = "Only sessions in this state: active, paused or lost" };
        var command = new Command("ls", "List sessions as the registry last recorded them") { function, state };
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var query = string.Join('&', new[] { ("function", p.GetValue(function)), ("state", p.GetValue(state)) }
                .Where(q => q.Item2 is not null).Select(q => $"{q.Item1}={Uri.EscapeDataString(q.Item2!)}"));
            var answer = await client.GetAsync("v1/sessions" + (query.Length > 0 ? "?" + query : ""), ct);
            if (!answer.Ok)
                return Fail(answer);
            if (Json(p))
                return WriteJson(answer.Json);
            // The id never wraps: it is what the user copies into the next command.
            var table = new Table().AddColumn(new TableColumn("id").NoWrap()).AddColumns("function", "state", "node", "memory MiB", "stored KiB", "pauses", "last active");
            foreach (var s in answer.Json.EnumerateArray())
            {
                table.AddRow(Markup.Escape(s.GetProperty("id").GetString()!), Markup.Escape($"{s.GetProperty("function").GetString()}@{s.GetProperty("version").GetInt32()}"),
                    Markup.Escape(s.GetProperty("state").GetString()!), Markup.Escape(s.GetProperty("node").GetString() ?? "-"), Mib(s.GetProperty("memoryBytes").GetInt64()),
                    (s.GetProperty("storedBytes").GetInt64() / 1024).ToString(System.Globalization.CultureInfo.InvariantCulture), Num(s.GetProperty("pauses")),
                    s.GetProperty("lastActiveAt").GetDateTimeOffset().UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture));
            }
            _console.Write(table);
            return ExitCodes.Ok;
        });
        return command;
    }

    // One session as "key: value" lines, the way `show`, `pause` and `resume` print it.
    private async Task<int> SessionCall(ParseResult p, HttpMethod method, string path, CancellationToken ct)
    {
        using var client = Client(p);
        var answer = await client.SendAsync(method, path, null, ct);
        if (!answer.Ok)
            return Fail(answer);
        if (Json(p))
            return WriteJson(answer.Json);
        foreach (var property in answer.Json.EnumerateObject())
            stdout.WriteLine($"{property.Name}: {(property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : property.Value.ValueKind == JsonValueKind.Null ? "-" : property.Value.GetRawText())}");
        return ExitCodes.Ok;
    }
}
