using System.CommandLine;
using System.Net.Http.Headers;
using System.Text.Json;
using Spectre.Console;

namespace TrEnv.Cli;

/// <summary>trenv deploy, invoke, ls, logs and rm: the commands on functions.</summary>
public sealed partial class CliApp
{
    private Command Deploy()
    {
        var name = new Argument<string?>("name") { Description = "Function name (not with -f)", Arity = ArgumentArity.ZeroOrOne };
        var file = new Argument<FileInfo?>("file") { Description = "The module (.wasm), or a script (not with -f)", Arity = ArgumentArity.ZeroOrOne };
        // Optional arguments would take an unknown option as a name; it stays a usage error instead.
        foreach (var argument in new Argument[] { name, file })
            argument.Validators.Add(r =>
            {
                if (r.Tokens.FirstOrDefault(t => t.Value.StartsWith('-')) is { } option)
                    r.AddError($"Unrecognized option '{option.Value}'.");
            });
        var manifest = new Option<FileInfo?>("--file", "-f") { Description = "Deploy every function a manifest (trenv.yaml) names; again with nothing changed changes nothing" };
        var memory = new Option<int?>("--memory-mb") { Description = "Linear memory limit in MiB" };
        var timeout = new Option<int?>("--timeout-ms") { Description = "Deadline of one invocation" };
        var concurrency = new Option<int?>("--concurrency") { Description = "Invocations at once" };
        var initTimeout = new Option<int?>("--init-timeout-ms") { Description = "Deadline of instantiation and of init, each (default 10000)" };
        var tmp = new Option<int?>("--tmp-mb") { Description = "What the guest may write under /tmp, in MiB (default 512)" };
        var cpu = new Option<int?>("--cpu-millicores") { Description = "CPU share of each instance's sandbox, in thousandths of a core (default: no cap)" };
        var network = new Option<bool?>("--network") { Description = "Give the sandbox a network namespace with outbound access (default false)" };
        var layer = new Option<string?>("--layer") { Description = "A file layer under /tmp: a directory or .tar to upload first, or a layer's sha256" };
        var env = new Option<string[]>("--env") { Description = "KEY=VALUE for the guest's environment (repeatable)", AllowMultipleArgumentsPerToken = false };
        var runtime = new Option<string?>("--runtime")
        {
            Description = "Deploy a script instead of a module: python or ruby (FILE is the script, or a .tar with main.py / main.rb; implied by .py and .rb)",
        };
        var command = new Command("deploy", "Deploy a module (or a script, with --runtime) as a function, or every function of a manifest with -f (the same bytes and limits again change nothing)")
        {
            name, file, manifest, memory, timeout, concurrency, initTimeout, tmp, cpu, network, layer, env, runtime,
        };
        command.SetAction(async (p, ct) =>
        {
            IReadOnlyList<DeploySpec> specs;
            if (p.GetValue(manifest) is { } m)
            {
                if (p.GetValue(name) is not null || p.GetValue(file) is not null)
                    return Usage("-f deploys what the manifest names: give no NAME or FILE with it.");
                var flags = new Option[] { memory, timeout, concurrency, initTimeout, tmp, cpu, network, layer, env, runtime };
                if (flags.FirstOrDefault(o => p.GetResult(o) is { Implicit: false }) is { } flag)
                    return Usage($"-f takes every parameter from the manifest; {flag.Name} goes there.");
                try
                {
                    specs = DeployManifest.Load(m.FullName);
                }
                catch (InvalidDataException e)
                {
                    return Usage(e.Message);
                }
            }
            else
            {
                if (p.GetValue(name) is not { } fn || p.GetValue(file) is not { } f)
                    return Usage("deploy needs NAME and FILE, or -f trenv.yaml.");
                if (!f.Exists)
                    return Usage($"{f.FullName} does not exist.");
                var variables = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var pair in p.GetValue(env) ?? [])
                {
                    var eq = pair.IndexOf('=');
                    if (eq <= 0)
                        return Usage($"--env takes KEY=VALUE, not \"{pair}\".");
                    variables[pair[..eq]] = pair[(eq + 1)..];
                }
                var l = p.GetValue(layer);
                if (l is not null && !DeployManifest.IsLayerHash(l) && !File.Exists(l) && !Directory.Exists(l))
                    return Usage($"--layer {l} is neither a directory, a file nor a layer's sha256.");
                specs = [new DeploySpec(fn, f.FullName, p.GetValue(runtime), p.GetValue(memory), p.GetValue(timeout), p.GetValue(initTimeout), p.GetValue(concurrency),
                    p.GetValue(cpu), p.GetValue(tmp), p.GetValue(network), variables, l)];
            }
            using var client = Client(p);
            var pushed = new Dictionary<string, string>(StringComparer.Ordinal);
            var answers = new List<ApiAnswer>();
            foreach (var spec in specs)
            {
                ApiAnswer answer;
                try
                {
                    answer = await DeployOneAsync(client, spec, pushed, ct);
                }
                catch (InvalidDataException e)
                {
                    return Usage($"{spec.Name}: {e.Message}");
                }
                if (!answer.Ok)
                {
                    // A manifest's functions go one by one: say which failed (those before it are deployed).
                    stderr.WriteLine($"error: {(specs.Count > 1 ? spec.Name + ": " : "")}{answer.Describe()}");
                    return answer.ExitCode;
                }
                answers.Add(answer);
                if (Json(p))
                    continue;
                var json = answer.Json;
                stdout.WriteLine($"{(json.TryGetProperty("created", out var created) && !created.GetBoolean() ? "unchanged" : "deployed")} {spec.Name} version " +
                                 $"{json.GetProperty("version").GetInt32()} (sha256 {json.GetProperty("sha256").GetString()})");
            }
            if (Json(p))
                WriteJson(p.GetValue(manifest) is null ? answers[0].Json : AsArray(answers));
            return ExitCodes.Ok;
        });
        return command;
    }

    // Uploads the spec's layer first when it names a path (once per path in one command), then deploys.
    private async Task<ApiAnswer> DeployOneAsync(TrEnvClient client, DeploySpec spec, Dictionary<string, string> pushed, CancellationToken ct)
    {
        var query = spec.Query();
        if (spec.Layer is { } layer)
        {
            if (!DeployManifest.IsLayerHash(layer) && !pushed.ContainsKey(layer))
            {
                var upload = await PushLayerAsync(client, layer, ct);
                if (!upload.Ok)
                    return upload;
                pushed[layer] = upload.Json.GetProperty("sha256").GetString()!;
            }
            query.Add("layer=" + (DeployManifest.IsLayerHash(layer) ? layer : pushed[layer]));
        }
        using var content = new ByteArrayContent(await File.ReadAllBytesAsync(spec.File, ct));
        content.Headers.ContentType = new MediaTypeHeaderValue(spec.ScriptRuntime is null ? "application/wasm" : "application/octet-stream");
        return await client.SendAsync(HttpMethod.Put, $"v1/functions/{Uri.EscapeDataString(spec.Name)}" + (query.Count > 0 ? "?" + string.Join('&', query) : ""), content, ct);
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
            if (Json(p))
                return WriteJson(answer.Json);
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
            if (Json(p))
                return WriteJson(answer.Json);
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
            if (Json(p))
                return WriteJson(answer.Body.Length > 0 ? answer.Json : JsonSerializer.SerializeToElement(new { deleted = p.GetValue(name) }));
            stdout.WriteLine($"deleted {p.GetValue(name)}");
            return ExitCodes.Ok;
        });
        return command;
    }
}
