using TrEnv.Bench;

// ./bench.sh startup [--samples N] [--pss-instances N] [--out FILE]
// ./bench.sh e2e (TRENV_URL, TRENV_BENCH_CONCURRENCY, TRENV_BENCH_SECONDS)
// ./bench.sh sandbox [--samples N] (TRENV_URL: a cluster whose worker has one sandbox slot)
// ./bench.sh pool [--samples N] (TRENV_POOL_URL, TRENV_POOL_PATH: a memory-pool node)
// ./bench.sh demo
var command = args.FirstOrDefault() ?? "";
var options = command is "report" or "trace" or "tracing" or "tracing-paired" or "sink" or "restart" ? BenchOptions.Parse([]) : BenchOptions.Parse(args.Skip(1).ToArray());
switch (command)
{
    case "startup":
        return await StartupBenchmark.RunAsync(options);
    case "e2e":
        return await E2eBenchmark.RunAsync(options, Environment.GetEnvironmentVariable("TRENV_URL") ?? "http://127.0.0.1:8080",
            int.Parse(Environment.GetEnvironmentVariable("TRENV_BENCH_CONCURRENCY") ?? "16", System.Globalization.CultureInfo.InvariantCulture),
            TimeSpan.FromSeconds(int.Parse(Environment.GetEnvironmentVariable("TRENV_BENCH_SECONDS") ?? "5", System.Globalization.CultureInfo.InvariantCulture)));
    case "sandbox":
        return await SandboxBenchmark.RunAsync(options, Environment.GetEnvironmentVariable("TRENV_URL") ?? "http://127.0.0.1:8080");
    case "pool":
        return await PoolBenchmark.RunAsync(options, Environment.GetEnvironmentVariable("TRENV_POOL_URL") ?? "http://127.0.0.1:4070",
            Environment.GetEnvironmentVariable("TRENV_POOL_PATH") ?? "/dev/shm/trenv/pool");
    case "runtimes":
        return await RuntimesBenchmark.RunAsync(options, Environment.GetEnvironmentVariable("TRENV_URL") ?? "http://127.0.0.1:8080",
            Environment.GetEnvironmentVariable("TRENV_RUNTIMES_DIR") is { Length: > 0 } dir ? dir : "/var/cache/trenv/runtimes");
    case "agent":
        return await AgentBenchmark.RunAsync(options, Environment.GetEnvironmentVariable("TRENV_URL") ?? "http://127.0.0.1:8080");
    case "tracing":
        // trenv-bench tracing URL off|none|otlp|otlp_sampled E2E_JSON (./bench.sh e2e runs it once per mode, each on a fresh cluster).
        return args.Length == 4 && args[2] is "off" or "none" or "otlp" or "otlp_sampled" ? await TrEnv.Bench.Tracing.TracingCost.RunAsync(options, args[1], args[2], args[3]) : Usage();
    case "tracing-paired":
        // trenv-bench tracing-paired PHASE E2E_JSON none=URL no_tracing=URL off=URL: one coordinator of one cluster per mode.
        return args.Length >= 3 && int.TryParse(args[1], System.Globalization.CultureInfo.InvariantCulture, out var phase) && phase > 0
               && args.Skip(3).Select(a => a.Split('=', 2)).ToList() is var pairs && pairs.All(p => p.Length == 2 && Uri.IsWellFormedUriString(p[1], UriKind.Absolute))
            ? await TrEnv.Bench.Tracing.TracingPaired.RunAsync(options, pairs.ToDictionary(p => p[0], p => new Uri(p[1])), phase, args[2]) : Usage();
    case "restart":
        // trenv-bench restart URL: only the coordinator restart under load of e2e (the cluster bench.sh or scripts/cluster.sh started).
        return args.Length == 2 ? await RestartUnderLoad.RunAsync(options, new Uri(args[1])) : Usage();
    case "sink":
        return args.Length == 2 ? await TrEnv.Bench.Tracing.TracingCost.SinkAsync(int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture)) : Usage();
    case "trace":
        // trenv-bench trace URL SINK_PORT MODULE: the nodes export to 127.0.0.1:SINK_PORT (scripts/trace-tree.sh sets them up).
        return args.Length == 4 ? await TrEnv.Bench.Tracing.TraceTree.RunAsync(args[1], int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture), args[3]) : Usage();
    case "demo":
        return await EngineDemo.RunAsync(options);
    case "report":
        // trenv-bench report DATA_DIR REPORT.md: plots and tables from the JSON the other benchmarks wrote into DATA_DIR.
        return args.Length == 3 ? ReportCommand.Run(args[1], args[2]) : Usage();
    default:
        return Usage();
}

static int Usage()
{
    Console.Error.WriteLine("usage: trenv-bench startup [--samples N] [--pss-instances N] [--sizes MIB,...] [--out FILE] | e2e | sandbox [--samples N] | pool | runtimes [--samples N] | agent [--samples N] | trace URL SINK_PORT MODULE | tracing URL MODE E2E_JSON | tracing-paired PHASE E2E_JSON MODE=URL... | restart URL | sink PORT | demo | report DATA_DIR REPORT.md");
    return 2;
}
