using TrEnv.Chaos;

// ./chaos.sh: the chaos runner (ChaosOptions.Usage lists the knobs).
if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine(ChaosOptions.Usage);
    return 0;
}
ChaosOptions options;
try
{
    options = ChaosOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
var stopwatch = System.Diagnostics.Stopwatch.StartNew();
void Log(string line) => Console.Error.WriteLine($"[{stopwatch.Elapsed.TotalSeconds,7:0.0}s] {line}");
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};
var summary = await new ChaosRunner(options, Log).RunAsync(cancel.Token);
var json = ChaosRunner.ToJson(summary);
var output = options.Out ?? Path.Combine(ChaosRunner.RepoRoot(), "chaos", "results", "summary.json");
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
await File.WriteAllTextAsync(output, json + "\n");
Console.WriteLine(json);
Log($"{(summary.Ok ? "OK" : "VIOLATIONS")}: {summary.Requests} requests, {summary.Failed} failed, {summary.WrongAnswers} wrong, " +
    $"{summary.LostDeploys} lost deploys, {summary.LostTemplates} lost templates, max recovery {ChaosRunner.Seconds(summary.MaxRecoverySeconds)} s; summary in {output}");
return summary.Ok ? 0 : 1;
