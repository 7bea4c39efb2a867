using TrEnv.Bench;

// ./bench.sh startup [--samples N] [--pss-instances N] [--out FILE]
// ./bench.sh demo
var command = args.FirstOrDefault() ?? "";
var options = BenchOptions.Parse(args.Skip(1).ToArray());
switch (command)
{
    case "startup":
        return await StartupBenchmark.RunAsync(options);
    case "demo":
        return await EngineDemo.RunAsync(options);
    default:
        Console.Error.WriteLine("usage: trenv-bench startup [--samples N] [--pss-instances N] [--out FILE] | demo");
        return 2;
}
