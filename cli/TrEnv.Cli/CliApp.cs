using System.CommandLine;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using Spectre.Console;

namespace TrEnv.Cli;

/// <summary>
/// The <c>trenv</c> commands. Every command takes <c>--url</c> and <c>--token</c> (or TRENV_URL, TRENV_TOKEN),
/// prints errors as sentences on stderr and exits with the code of the error's kind (<see cref="ExitCodes"/>).
/// </summary>
public sealed partial class CliApp(TextWriter stdout, TextWriter stderr, Stream? stdin = null, HttpMessageHandler? handler = null)
{
    private readonly IAnsiConsole _console = AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(stdout),
        Ansi = AnsiSupport.No,
        ColorSystem = ColorSystemSupport.NoColors,
        Interactive = InteractionSupport.No,
    });

    private readonly Option<string> _url = new("--url")
    {
        Description = "The coordinator's HTTP address (TRENV_URL; default http://127.0.0.1:8080)",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TRENV_URL") is { Length: > 0 } u ? u : "http://127.0.0.1:8080",
        Recursive = true,
    };

    private readonly Option<string?> _token = new("--token")
    {
        Description = "Bearer token for admin calls and invocations (TRENV_TOKEN)",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TRENV_TOKEN"),
        Recursive = true,
    };

    public Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("trenv: deploy, invoke and inspect functions on a TrEnv cluster.\n" + ExitCodes.Table);
        root.Options.Add(_url);
        root.Options.Add(_token);
        root.Subcommands.Add(Deploy());
        root.Subcommands.Add(Invoke());
        root.Subcommands.Add(List());
        root.Subcommands.Add(Logs());
        root.Subcommands.Add(Delete());
        root.Subcommands.Add(Templates());
        root.Subcommands.Add(Cluster());
        root.Subcommands.Add(New());
        root.Subcommands.Add(Bench());
        root.Subcommands.Add(Sessions());
        var local = new LocalClusterCommands(stdout, stderr);
        root.Subcommands.Add(local.Up(_token));
        root.Subcommands.Add(local.Down());
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // A command line that does not parse is a usage error (exit 2), as the README says, not a failure (1).
            foreach (var problem in parsed.Errors)
                stderr.WriteLine($"error: {problem.Message}");
            stderr.WriteLine($"Run '{string.Join(' ', ["trenv", .. CommandPath(parsed.CommandResult)])} --help' for usage.");
            return Task.FromResult(ExitCodes.Usage);
        }
        return parsed.InvokeAsync(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

    private static IEnumerable<string> CommandPath(System.CommandLine.Parsing.CommandResult? result)
    {
        var names = new Stack<string>();
        for (var r = result; r?.Parent is System.CommandLine.Parsing.CommandResult parent; r = parent)
            names.Push(r.Command.Name);
        return names;
    }

    private TrEnvClient Client(ParseResult p) => new(p.GetValue(_url)!, p.GetValue(_token), handler);

    private int Fail(ApiAnswer answer)
    {
        stderr.WriteLine($"error: {answer.Describe()}");
        return answer.ExitCode;
    }

    private int Usage(string sentence)
    {
        stderr.WriteLine($"error: {sentence}");
        return ExitCodes.Usage;
    }

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

    // Posts --data to PATH and prints the output; with -v, the named answer headers as label=value on stderr.
    private async Task<int> InvokeAndPrintAsync(ParseResult p, string path, string? data, bool verbose, (string Label, string Header)[] shown, CancellationToken ct)
    {
        var (input, missing) = await ReadInputAsync(data, ct);
        if (input is null)
            return Usage($"{missing} does not exist.");
        using var client = Client(p);
        using var content = new ByteArrayContent(input);
        var answer = await client.SendAsync(HttpMethod.Post, path, content, ct);
        if (verbose && answer.Headers is not null)
            stderr.WriteLine(string.Join(' ', shown.Select(h => $"{h.Label}={answer.Header(h.Header) ?? "-"}")));
        if (!answer.Ok)
            return Fail(answer);
        stdout.Write(answer.Text);
        stdout.Flush();
        return ExitCodes.Ok;
    }

    // --data: text, @FILE or - (standard input); null and the missing file's name when @FILE does not exist.
    private async Task<(byte[]? Input, string? Missing)> ReadInputAsync(string? d, CancellationToken ct)
    {
        if (d is null)
            return ([], null);
        if (d == "-")
        {
            using var buffer = new MemoryStream();
            await (stdin ?? Console.OpenStandardInput()).CopyToAsync(buffer, ct);
            return (buffer.ToArray(), null);
        }
        if (d.StartsWith('@'))
            return File.Exists(d[1..]) ? (await File.ReadAllBytesAsync(d[1..], ct), null) : (null, d[1..]);
        return (System.Text.Encoding.UTF8.GetBytes(d), null);
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

    private Command Templates()
    {
        var command = new Command("templates", "List sealed memory templates: function, size, pages, pool region, who captured, live mappings");
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var answer = await client.GetAsync("v1/templates", ct);
            if (!answer.Ok)
                return Fail(answer);
            var table = new Table().AddColumns("id", "memory MiB", "stored MiB", "region offset", "captured by", "live mappings");
            foreach (var t in answer.Json.GetProperty("templates").EnumerateArray())
            {
                var region = t.GetProperty("regions")[0];
                table.AddRow(Markup.Escape(t.GetProperty("id").GetString()!), Mib(t.GetProperty("sizeBytes").GetInt64()), Mib(t.GetProperty("storedBytes").GetInt64()),
                    Num(region.GetProperty("offset")), Markup.Escape(t.GetProperty("capturedBy").GetString() ?? ""),
                    t.GetProperty("liveMappings").ValueKind == JsonValueKind.Number ? Num(t.GetProperty("liveMappings")) : "?");
            }
            _console.Write(table);
            return ExitCodes.Ok;
        });
        return command;
    }

    private Command Cluster()
    {
        var command = new Command("cluster", "Show nodes, workers with their sandboxes, and the pool");
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var answer = await client.GetAsync("v1/cluster", ct);
            if (!answer.Ok)
                return Fail(answer);
            var json = answer.Json;
            var nodes = new Table().Title("nodes").AddColumns("address", "roles", "status");
            foreach (var n in json.GetProperty("nodes").EnumerateArray())
                nodes.AddRow(Markup.Escape(n.GetProperty("address").GetString()!), string.Join(',', n.GetProperty("roles").EnumerateArray().Select(r => r.GetString())), n.GetProperty("status").GetString()!);
            _console.Write(nodes);
            var workers = new Table().Title("workers").AddColumns("node", "isolation", "busy", "idle", "warm", "sandboxes", "memory MiB");
            foreach (var w in json.GetProperty("workers").EnumerateArray())
            {
                var warm = w.GetProperty("warm").EnumerateObject().Select(x => $"{x.Name}:{x.Value.GetInt32()}");
                workers.AddRow(Markup.Escape(w.GetProperty("node").GetString()!), Markup.Escape(w.GetProperty("isolation").GetString() ?? ""), Num(w.GetProperty("busy")),
                    Num(w.GetProperty("idle")), Markup.Escape(string.Join(' ', warm)), w.GetProperty("sandboxes").GetArrayLength().ToString(CultureInfo.InvariantCulture),
                    Mib(w.GetProperty("memoryBytes").GetInt64()));
            }
            _console.Write(workers);
            if (json.GetProperty("pool") is { ValueKind: JsonValueKind.Object } pool)
                stdout.WriteLine($"pool {pool.GetProperty("path").GetString()}: {Mib(pool.GetProperty("allocatedBytes").GetInt64())} of {Mib(pool.GetProperty("capacityBytes").GetInt64())} MiB allocated in {Num(pool.GetProperty("regions"))} regions");
            else
                stdout.WriteLine("pool: the memory-pool node did not answer");
            return ExitCodes.Ok;
        });
        return command;
    }

    private Command New()
    {
        var name = new Argument<string>("name") { Description = "Function name; a directory of that name is created" };
        var parent = new Option<DirectoryInfo?>("--dir") { Description = "Where to create it (default: the current directory)" };
        var command = new Command("new", "Scaffold a C guest (guest ABI v1) with its build script") { name, parent };
        command.SetAction(async (p, ct) =>
        {
            var fn = p.GetValue(name)!;
            if (fn.Length == 0 || fn.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_')))
                return Usage($"\"{fn}\" is not a function name: use letters, digits, - and _.");
            var dir = new DirectoryInfo(Path.Combine(p.GetValue(parent)?.FullName ?? Directory.GetCurrentDirectory(), fn));
            if (dir.Exists && dir.EnumerateFileSystemInfos().Any())
                return Usage($"{dir.FullName} exists and is not empty.");
            dir.Create();
            await using (var header = typeof(CliApp).Assembly.GetManifestResourceStream("trenv.h")!)
            await using (var file = File.Create(Path.Combine(dir.FullName, "trenv.h")))
                await header.CopyToAsync(file, ct);
            var c = fn.Replace('-', '_');
            await File.WriteAllTextAsync(Path.Combine(dir.FullName, fn + ".c"), $$"""
                /* {{fn}}: a TrEnv function (guest ABI v1). trenv_init runs once; its state becomes the template
                 * every later instance starts from. trenv_handle answers one request. */
                #include "trenv.h"

                static char greeting[64];

                TRENV_EXPORT("trenv_init") void trenv_init(void) {
                  /* Expensive initialisation goes here: tables, models, parsed data. */
                  memcpy(greeting, "{{c}} says: ", sizeof "{{c}} says: ");
                }

                TRENV_DEFAULT_ALLOC

                static char *out;
                static uint32_t out_cap;

                TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
                  uint32_t prefix = (uint32_t)strlen(greeting);
                  uint32_t need = prefix + (uint32_t)len;
                  if (need > out_cap) {
                    free(out);
                    out = malloc(need);
                    out_cap = out ? need : 0;
                    if (!out) __builtin_trap(); /* a trap is an error answer, never a wrong one */
                  }
                  memcpy(out, greeting, prefix);
                  memcpy(out + prefix, (const void *)(uintptr_t)ptr, (size_t)len);
                  return trenv_result(out, need);
                }

                """, ct);
            var build = Path.Combine(dir.FullName, "build.sh");
            await File.WriteAllTextAsync(build, $$"""
                #!/bin/sh
                # Builds {{fn}}.wasm as a WASI reactor (Debian: apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32).
                set -e
                cd "$(dirname "$0")"
                ${CC:-clang-14} --target=wasm32-wasi -O2 -mexec-model=reactor -mmutable-globals -I. -o {{fn}}.wasm {{fn}}.c
                echo "built {{fn}}.wasm; deploy it with: trenv deploy {{fn}} {{fn}}.wasm"

                """, ct);
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(build, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            stdout.WriteLine($"created {dir.FullName}: {fn}.c, trenv.h, build.sh");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static string Num(JsonElement e) => e.ValueKind == JsonValueKind.Number ? e.GetInt64().ToString(CultureInfo.InvariantCulture) : "-";

    private static string Mib(long bytes) => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture);
}
