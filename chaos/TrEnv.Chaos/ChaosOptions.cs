using System.Globalization;

namespace TrEnv.Chaos;

/// <summary>The runner's knobs (./chaos.sh --help prints them).</summary>
public sealed record ChaosOptions
{
    /// <summary>local: the compose services as local processes; docker: the compose project itself on a Docker engine.</summary>
    public string Engine { get; init; } = "local";
    /// <summary>Docker faults taken in turn, one per round: kill, restart, pause, disconnect, split-workers.</summary>
    public IReadOnlyList<string> Faults { get; init; } = ["kill"];
    /// <summary>Seconds a pause, a network disconnect or a split between workers lasts.</summary>
    public double HoldSeconds { get; init; } = 2;
    /// <summary>Host ports the docker engine publishes the two coordinators' HTTP on.</summary>
    public int HttpPort { get; init; } = 18080;
    public bool Keep { get; init; }
    public string? Compose { get; init; }
    public string? Profile { get; init; }
    public int Rounds { get; init; } = 3;
    /// <summary>What each round kills: worker, coordinator, pool, random, or a comma list taken in turn.</summary>
    public IReadOnlyList<string> Kill { get; init; } = ["random"];
    public bool KillEnabled { get; init; } = true;
    public int Signal { get; init; } = 9;
    public bool Restart { get; init; }
    public double RestartDelaySeconds { get; init; } = 1;
    /// <summary>Seconds a worker's veth stays down in a partition round; 0: no partitions.</summary>
    public double PartitionSeconds { get; init; }
    public int Clients { get; init; } = 4;
    public double SettleSeconds { get; init; } = 3;
    public double ObserveSeconds { get; init; } = 8;
    public double RecoveryBoundSeconds { get; init; } = 5;
    public double DeployEverySeconds { get; init; } = 2;
    public double RequestDeadlineSeconds { get; init; } = 30;
    public string? Out { get; init; }
    public string? RunDirectory { get; init; }
    public int BasePort { get; init; } = 4300;
    public bool NetworkNamespaces { get; init; } = true;
    public int Seed { get; init; } = Environment.TickCount;
    public IReadOnlyDictionary<string, string> Set { get; init; } = new Dictionary<string, string>();
    public string Database { get; init; } = "trenv_chaos";
    /// <summary>How the run was asked for, recorded in the summary.</summary>
    public string Command { get; init; } = "";

    public const string Usage = """
        trenv-chaos: starts compose/docker-compose.yml's topology as local processes, drives checked invocations
        through every coordinator, applies one fault per round and prints a JSON summary.

          --engine local|docker local processes (local), or the compose project on a Docker engine (docker)
          --faults F,...        docker: faults taken in turn, one per round (kill): kill (docker kill, or docker
                                stop with --signal TERM), restart (docker restart), pause (docker pause for
                                --hold seconds), disconnect (off the compose network for --hold seconds),
                                split-workers (workers cannot reach each other for --hold seconds)
          --hold S              docker: how long a pause, disconnect or split lasts (2)
          --http-port N         docker: host ports of the coordinators' HTTP, N and N+1 (18080)
          --keep                docker: leave the compose project running after the run
          --rounds N            rounds (3)
          --kill K              worker | coordinator | pool | random, or a comma list used in turn (random)
          --no-kill             no kills (with --partition: partitions only)
          --signal KILL|TERM    signal for kills (KILL)
          --restart             restart the killed node after --restart-delay seconds (1)
          --partition S         also cut a random worker's veth for S seconds; rounds alternate kill, partition
          --clients N           concurrent invoking clients (4)
          --settle S            steady load before each fault (3)
          --observe S           seconds after the fault before the round may end (8)
          --recovery-bound S    a round recovering slower is a violation (5)
          --deploy-every S      deploy a new function every S seconds during the run; 0 for none (2)
          --profile cxl|rdma    compose profile (COMPOSE_PROFILES from compose/.env)
          --compose PATH        compose file (compose/docker-compose.yml)
          --set KEY=VALUE       override a compose variable (repeatable)
          --out PATH            summary file (chaos/results/summary.json)
          --run-dir PATH        node data and logs (/tmp/trenv-chaos)
          --base-port N         first local port for nodes outside namespaces (4300)
          --no-netns            workers share the host network (no partitions)
          --seed N              random seed
        """;

    public static ChaosOptions Parse(IReadOnlyList<string> args)
    {
        var o = new ChaosOptions();
        var set = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            string Next() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            double Seconds() => double.TryParse(Next(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0 ? v : throw new ArgumentException($"{args[i - 1]} needs a number of seconds, not \"{args[i]}\".");
            int Count(int min) => int.TryParse(Next(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min ? v : throw new ArgumentException($"{args[i - 1]} needs an integer of at least {min}, not \"{args[i]}\".");
            o = args[i] switch
            {
                "--engine" => o with { Engine = Next() is "local" or "docker" ? args[i] : throw new ArgumentException($"--engine is local or docker, not \"{args[i]}\".") },
                "--faults" => o with { Faults = FaultKinds(Next()) },
                "--hold" => o with { HoldSeconds = Seconds() },
                "--http-port" => o with { HttpPort = Count(1024) },
                "--keep" => o with { Keep = true },
                "--rounds" => o with { Rounds = Count(1) },
                "--kill" => o with { Kill = Kinds(Next()), KillEnabled = true },
                "--no-kill" => o with { KillEnabled = false },
                "--signal" => o with { Signal = Next().ToUpperInvariant() switch { "KILL" or "9" or "SIGKILL" => 9, "TERM" or "15" or "SIGTERM" => 15, var s => throw new ArgumentException($"--signal is KILL or TERM, not \"{s}\".") } },
                "--restart" => o with { Restart = true },
                "--restart-delay" => o with { RestartDelaySeconds = Seconds() },
                "--partition" => o with { PartitionSeconds = Seconds() },
                "--clients" => o with { Clients = Count(1) },
                "--settle" => o with { SettleSeconds = Seconds() },
                "--observe" => o with { ObserveSeconds = Seconds() },
                "--recovery-bound" => o with { RecoveryBoundSeconds = Seconds() },
                "--deploy-every" => o with { DeployEverySeconds = Seconds() },
                "--profile" => o with { Profile = Next() },
                "--compose" => o with { Compose = Next() },
                "--out" => o with { Out = Next() },
                "--run-dir" => o with { RunDirectory = Next() },
                "--base-port" => o with { BasePort = Count(1024) },
                "--no-netns" => o with { NetworkNamespaces = false },
                "--seed" => o with { Seed = Count(0) },
                "--set" => AddVariable(o, set, Next()),
                "--database" => o with { Database = Next() },
                _ => throw new ArgumentException($"Unknown option {args[i]}.\n{Usage}"),
            };
        }
        if (o.Engine == "local" && !o.KillEnabled && o.PartitionSeconds <= 0)
            throw new ArgumentException("With --no-kill, give --partition S: a round needs a fault.");
        if (o.Engine == "docker" && o.PartitionSeconds > 0)
            throw new ArgumentException("--partition takes workers' veths down in local network namespaces; with --engine docker use --faults disconnect or split-workers.");
        if (o.Engine == "local" && args.Contains("--faults"))
            throw new ArgumentException("--faults applies to --engine docker; the local engine takes --kill and --partition.");
        return o with { Set = set, Command = "./chaos.sh " + string.Join(' ', args) };
    }

    private static ChaosOptions AddVariable(ChaosOptions o, Dictionary<string, string> set, string pair)
    {
        var eq = pair.IndexOf('=');
        if (eq <= 0)
            throw new ArgumentException($"--set takes KEY=VALUE, not \"{pair}\".");
        set[pair[..eq]] = pair[(eq + 1)..];
        return o;
    }

    private static string[] FaultKinds(string value)
    {
        var kinds = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var k in kinds)
            if (k is not ("kill" or "restart" or "pause" or "disconnect" or "split-workers"))
                throw new ArgumentException($"--faults takes kill, restart, pause, disconnect or split-workers (a comma list), not \"{k}\".");
        return kinds.Length > 0 ? kinds : throw new ArgumentException("--faults needs a fault.");
    }

    /// <summary>The fault of each round in turn: the docker faults, or locally kill and partition as enabled.</summary>
    public IReadOnlyList<string> RoundFaults
        => Engine == "docker" ? Faults : [.. KillEnabled ? ["kill"] : Array.Empty<string>(), .. PartitionSeconds > 0 ? ["partition"] : Array.Empty<string>()];

    private static string[] Kinds(string value)
    {
        var kinds = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var k in kinds)
            if (k is not ("worker" or "coordinator" or "pool" or "random"))
                throw new ArgumentException($"--kill takes worker, coordinator, pool or random (or a comma list), not \"{k}\".");
        return kinds.Length > 0 ? kinds : throw new ArgumentException("--kill needs a kind.");
    }
}
