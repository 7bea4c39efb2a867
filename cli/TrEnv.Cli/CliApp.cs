using System.CommandLine;
using System.Globalization;
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

    private readonly Option<bool> _json = new("--json")
    {
        Description = "Print the API's JSON answer (indented) instead of tables and lines",
        Recursive = true,
    };

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("trenv: deploy, invoke and inspect functions on a TrEnv cluster.\n" + ExitCodes.Table);
        root.Options.Add(_url);
        root.Options.Add(_token);
        root.Options.Add(_json);
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
        root.Subcommands.Add(Layers());
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

    private bool Json(ParseResult p) => p.GetValue(_json);

    private int WriteJson(JsonElement value)
    {
        stdout.WriteLine(JsonSerializer.Serialize(value, Indented));
        return ExitCodes.Ok;
    }

    private static JsonElement AsArray(IEnumerable<ApiAnswer> answers)
        => JsonSerializer.SerializeToElement(answers.Select(a => a.Json).ToList());

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
        if (Json(p))
        {
            // The output as text when it is UTF-8, else as base64, with the answer's X-TrEnv headers.
            var headers = answer.Headers?.Where(h => h.Key.StartsWith("X-TrEnv-", StringComparison.OrdinalIgnoreCase))
                .ToDictionary(h => h.Key, h => string.Join(',', h.Value), StringComparer.OrdinalIgnoreCase) ?? [];
            string? text;
            try
            {
                text = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(answer.Body);
            }
            catch (System.Text.DecoderFallbackException)
            {
                text = null;
            }
            return WriteJson(JsonSerializer.SerializeToElement(new Dictionary<string, object?>
            {
                ["status"] = answer.Status,
                [text is null ? "outputBase64" : "output"] = text ?? Convert.ToBase64String(answer.Body),
                ["headers"] = headers,
            }));
        }
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

    private static string Num(JsonElement e) => e.ValueKind == JsonValueKind.Number ? e.GetInt64().ToString(CultureInfo.InvariantCulture) : "-";

    private static string Mib(long bytes) => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture);
}
