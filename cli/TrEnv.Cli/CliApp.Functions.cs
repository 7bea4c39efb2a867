using System.CommandLine;
using System.Net.Http.Headers;
using Spectre.Console;

namespace TrEnv.Cli;

/// <summary>trenv deploy, invoke, ls, logs and rm: the commands on functions.</summary>
public sealed partial class CliApp
{
    private Command Deploy()
    {
        var name = new Argument<string>("name") { Description = "Function name" };
        var file = new Argument<FileInfo>("file") { Description = "The module (.wasm)" };
        var memory = new Option<int?>("--memory-mb") { Description = "Linear memory limit in MiB" };
        var timeout = new Option<int?>("--timeout-ms") { Description = "Deadline of one invocation" };
        var concurrency = new Option<int?>("--concurrency") { Description = "Invocations at once" };
        var initTimeout = new Option<int?>("--init-timeout-ms") { Description = "Deadline of instantiation and of init, each (default 10000)" };
        var tmp = new Option<int?>("--tmp-mb") { Description = "What the guest may write under /tmp, in MiB (default 512)" };
        var env = new Option<string[]>("--env") { Description = "KEY=VALUE for the guest's environment (repeatable)", AllowMultipleArgumentsPerToken = false };
        var runtime = new Option<string?>("--runtime")
        {
            Description = "Deploy a script instead of a module: python or ruby (FILE is the script, or a .tar with main.py / main.rb; implied by .py and .rb)",
        };
        var command = new Command("deploy", "Deploy a module (or a script, with --runtime) as a function (the same bytes and limits again change nothing)")
        {
            name, file, memory, timeout, concurrency, initTimeout, tmp, env, runtime,
        };
        command.SetAction(async (p, ct) =>
        {
            var f = p.GetValue(file)!;
            if (!f.Exists)
                return Usage($"{f.FullName} does not exist.");
            var query = new List<string>();
            if (p.GetValue(memory) is { } m)
                query.Add($"memoryMb={m}");
            if (p.GetValue(timeout) is { } t)
                query.Add($"timeoutMs={t}");
            if (p.GetValue(concurrency) is { } c)
                query.Add($"concurrency={c}");
            if (p.GetValue(initTimeout) is { } it)
                query.Add($"initTimeoutMs={it}");
            if (p.GetValue(tmp) is { } tm)
                query.Add($"tmpMb={tm}");
            var script = p.GetValue(runtime) ?? f.Extension switch { ".py" => "python", ".rb" => "ruby", _ => null };
            if (script is not null)
                query.Add($"runtime={Uri.EscapeDataString(script)}");
            foreach (var pair in p.GetValue(env) ?? [])
            {
                var eq = pair.IndexOf('=');
                if (eq <= 0)
                    return Usage($"--env takes KEY=VALUE, not \"{pair}\".");
                query.Add($"env.{Uri.EscapeDataString(pair[..eq])}={Uri.EscapeDataString(pair[(eq + 1)..])}");
            }
            using var client = Client(p);
            using var content = new ByteArrayContent(await File.ReadAllBytesAsync(f.FullName, ct));
            content.Headers.ContentType = new MediaTypeHeaderValue(script is null ? "application/wasm" : "application/octet-stream");
            var fn = p.GetValue(name)!;
            var answer = await client.SendAsync(HttpMethod.Put, $"v1/functions/{Uri.EscapeDataString(fn)}" + (query.Count > 0 ? "?" + string.Join('&', query) : ""), content, ct);
            if (!answer.Ok)
                return Fail(answer);
            var json = answer.Json;
            stdout.WriteLine($"deployed {fn} version {json.GetProperty("version").GetInt32()} (sha256 {json.GetProperty("sha256").GetString()})");
            return ExitCodes.Ok;
        });
        return command;
    }

    private Command Invoke()
    {
        var name = new Argument<string>("name") { Description = "Function name" };
        var data = new Option<string?>("--data", "-d") { Description = "The input: text, @FILE, or - for standard input (default: empty)" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Also print the start kind, sandbox, node and timings (on stderr)" };
        var command = new Command("invoke", "Invoke a function and print its output") { name, data, verbose };
        command.SetAction(async (p, ct) => await InvokeAndPrintAsync(p, $"v1/functions/{Uri.EscapeDataString(p.GetValue(name)!)}/invoke", p.GetValue(data), p.GetValue(verbose),
            [("id", "X-TrEnv-Invocation-Id"), ("start", "X-TrEnv-Start"), ("sandbox", "X-TrEnv-Sandbox"), ("node", "X-TrEnv-Node"), ("startup_us", "X-TrEnv-Startup-Us"),
             ("exec_us", "X-TrEnv-Exec-Us"), ("version", "X-TrEnv-Version")], ct));
        return command;
    }

    private Command List()
    {
        var command = new Command("ls", "List functions: current version, limits, template, live instances");
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var answer = await client.GetAsync("v1/functions", ct);
            if (!answer.Ok)
                return Fail(answer);
            var table = new Table().AddColumns("name", "version", "memory MiB", "timeout ms", "template", "instances");
            foreach (var f in answer.Json.GetProperty("functions").EnumerateArray().OrderBy(f => f.GetProperty("name").GetString(), StringComparer.Ordinal))
            {
                var current = f.GetProperty("current");
                var limits = current.GetProperty("limits");
                var instances = f.GetProperty("instances").EnumerateObject().Select(i => $"{i.Name}:{i.Value.GetInt32()}");
                table.AddRow(Markup.Escape(f.GetProperty("name").GetString()!), Num(current.GetProperty("version")), Num(limits.GetProperty("memoryMb")),
                    Num(limits.GetProperty("timeoutMs")), f.GetProperty("template").GetProperty("status").GetString()!, Markup.Escape(string.Join(' ', instances)));
            }
            _console.Write(table);
            return ExitCodes.Ok;
        });
        return command;
    }

    private Command Logs()
    {
        var name = new Argument<string>("name") { Description = "Function name" };
        var tail = new Option<int>("--tail", "-n") { Description = "Lines at most, newest last (default 100)", DefaultValueFactory = _ => 100 };
        var command = new Command("logs", "Print what the function's guests wrote to stdout and stderr, from every worker") { name, tail };
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var answer = await client.GetAsync($"v1/functions/{Uri.EscapeDataString(p.GetValue(name)!)}/logs?tail={p.GetValue(tail)}", ct);
            if (!answer.Ok)
                return Fail(answer);
            var json = answer.Json;
            foreach (var line in json.GetProperty("lines").EnumerateArray())
                stdout.WriteLine($"{line.GetProperty("at").GetDateTimeOffset().UtcDateTime:yyyy-MM-ddTHH:mm:ss.fffZ} {line.GetProperty("node").GetString()} " +
                                 $"v{line.GetProperty("version").GetInt32()} {line.GetProperty("stream").GetString()}: {TerminalText.Safe(line.GetProperty("text").GetString())}");
            foreach (var node in json.GetProperty("unanswered").EnumerateArray())
                stderr.WriteLine($"note: worker {node.GetString()} did not answer; its lines are missing");
            return ExitCodes.Ok;
        });
        return command;
    }

    private Command Delete()
    {
        var name = new Argument<string>("name") { Description = "Function name" };
        var command = new Command("rm", "Delete a function; its templates are released once no sandbox maps them") { name };
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var answer = await client.SendAsync(HttpMethod.Delete, $"v1/functions/{Uri.EscapeDataString(p.GetValue(name)!)}", null, ct);
            if (!answer.Ok)
                return Fail(answer);
            stdout.WriteLine($"deleted {p.GetValue(name)}");
            return ExitCodes.Ok;
        });
        return command;
    }
}
