using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using ScottPlot;

namespace TrEnv.Bench;

/// <summary>
/// <c>./bench.sh report</c>, last step: reads the JSON the startup, e2e, sandbox and pool benchmarks just wrote
/// into one directory and writes bench/results/report.md with PNG plots: the latency CDF per start kind,
/// total PSS against live instances, and restore time against template size.
/// </summary>
internal static class ReportCommand
{
    private const int Width = 900, Height = 560;

    public static int Run(string dataDirectory, string reportPath)
    {
        JsonNode Load(string name)
        {
            var path = Path.Combine(dataDirectory, name);
            return File.Exists(path)
                ? JsonNode.Parse(File.ReadAllText(path))!
                : throw new FileNotFoundException($"{path} is missing: ./bench.sh report runs the benchmark that writes it first.");
        }
        var startup = Load("startup.json");
        var e2e = Load("e2e.json");
        var sandbox = Load("sandbox.json");
        var pool = Load("pool.json");
        var plots = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(reportPath))!, "plots");
        Directory.CreateDirectory(plots);
        Fonts.Default = "DejaVu Sans";

        // The five start kinds. HTTP end to end, except copy-restore: the platform always maps templates, so its
        // copy path is measured through the sandbox protocol (a fresh host process per sample, no HTTP hop).
        var kinds = new (string Label, double[] Millis)[]
        {
            ("warm", Samples(e2e["heavy"]!["warm"]!)),
            ("template over repurposed (SWITCH)", Samples(sandbox["switch_start_heavy"]!)),
            ("template over new sandbox (NEW)", Samples(sandbox["new_start_heavy"]!)),
            ("copy-restore (sandbox protocol)", Samples(startup["cases"]!.AsArray().Single(c => (string)c!["function"]! == "heavy" && (string)c["mode"]! == "copy")!)),
            ("cold (init)", Samples(e2e["heavy"]!["cold"]!)),
        };
        LatencyCdf(kinds, Path.Combine(plots, "latency-cdf.png"));

        var sweep = startup["pss"]!["sweep"]!.AsArray().Select(s => (N: (int)s!["instances"]!, Map: (double)s["map_total_mib"]!, Init: (double)s["init_total_mib"]!)).ToList();
        Pss(sweep, Path.Combine(plots, "pss-vs-instances.png"));

        var sizes = startup["restore_by_size"]?.AsArray().Select(s => (Mib: (double)s!["template_mib"]!, Map: Samples(s["map"]!), Copy: Samples(s["copy"]!))).ToList() ?? [];
        if (sizes.Count > 0)
            RestoreBySize(sizes, Path.Combine(plots, "restore-vs-size.png"));

        File.WriteAllText(reportPath, Markdown(kinds, sweep, sizes, pool, e2e, startup));
        Console.WriteLine($"wrote {reportPath} and plots in {plots}");
        return 0;
    }

    private static double[] Samples(JsonNode summary)
        => summary["samples_ms"]?.AsArray().Select(v => (double)v!).ToArray()
           ?? throw new InvalidDataException("A result without samples_ms: it was written by an older benchmark; run ./bench.sh report again.");

    private static double Percentile(double[] v, double p) => Stats.Percentile(v, p);

    private static void LatencyCdf((string Label, double[] Millis)[] kinds, string path)
    {
        var plot = new Plot();
        plot.Font.Set("DejaVu Sans");
        foreach (var (label, millis) in kinds)
        {
            var sorted = millis.Where(m => m > 0).Order().ToArray();
            // Empirical CDF as steps: each sample raises the fraction by 1/n.
            var xs = sorted.Select(Math.Log10).Prepend(Math.Log10(sorted[0])).ToArray();
            var ys = Enumerable.Range(0, sorted.Length + 1).Select(i => (double)i / sorted.Length).ToArray();
            var line = plot.Add.ScatterLine(xs, ys);
            line.ConnectStyle = ConnectStyle.StepHorizontal;
            line.LineWidth = 2;
            line.LegendText = $"{label} (n={sorted.Length}, p50 {Percentile(sorted, 50):0.###} ms)";
        }
        LogAxis(plot.Axes.Bottom, "ms");
        plot.Axes.SetLimitsY(0, 1.02);
        plot.Title("heavy: time to first response by start kind");
        plot.XLabel("latency (ms, log scale)");
        plot.YLabel("fraction of requests");
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(path, Width, Height);
    }

    private static void Pss(List<(int N, double Map, double Init)> sweep, string path)
    {
        var plot = new Plot();
        plot.Font.Set("DejaVu Sans");
        var xs = sweep.Select(s => (double)s.N).ToArray();
        var init = plot.Add.Scatter(xs, sweep.Select(s => s.Init).ToArray());
        init.LegendText = "each instance ran init (no template)";
        init.LineWidth = 2;
        var map = plot.Add.Scatter(xs, sweep.Select(s => s.Map).ToArray());
        map.LegendText = "restored from one template (pages shared copy-on-write)";
        map.LineWidth = 2;
        plot.Title("heavy: total PSS of live instances");
        plot.XLabel("live instances");
        plot.YLabel("total PSS (MiB)");
        plot.ShowLegend(Alignment.UpperLeft);
        plot.Axes.SetLimits(0, sweep.Max(s => s.N) * 1.04, 0, sweep.Max(s => s.Init) * 1.08);
        plot.SavePng(path, Width, Height);
    }

    private static void RestoreBySize(List<(double Mib, double[] Map, double[] Copy)> sizes, string path)
    {
        var plot = new Plot();
        plot.Font.Set("DejaVu Sans");
        var xs = sizes.Select(s => Math.Log10(s.Mib)).ToArray();
        foreach (var (label, pick) in new (string, Func<(double Mib, double[] Map, double[] Copy), double[]>)[]
                 {
                     ("map (copy-on-write)", s => s.Map),
                     ("copy (bytes copied into the instance)", s => s.Copy),
                 })
        {
            var p50 = plot.Add.Scatter(xs, sizes.Select(s => Math.Log10(Percentile(pick(s), 50))).ToArray());
            p50.LegendText = label + " p50";
            p50.LineWidth = 2;
            var p99 = plot.Add.Scatter(xs, sizes.Select(s => Math.Log10(Percentile(pick(s), 99))).ToArray(), p50.LineColor);
            p99.LegendText = label + " p99";
            p99.LinePattern = LinePattern.Dashed;
            p99.MarkerSize = 0;
        }
        LogAxis(plot.Axes.Bottom, "MiB");
        LogAxis(plot.Axes.Left, "ms");
        plot.Title("restore and first response against template size");
        plot.XLabel("template size (MiB of non-zero pages, log scale)");
        plot.YLabel("time (ms, log scale)");
        plot.ShowLegend(Alignment.UpperLeft);
        plot.SavePng(path, Width, Height);
    }

    // Data are log10 values: ticks at whole decades labelled with the value, minor ticks between.
    private static void LogAxis(ScottPlot.IAxis axis, string unit)
    {
        axis.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            IntegerTicksOnly = true,
            LabelFormatter = v => Math.Pow(10, v).ToString(Math.Pow(10, v) < 1 ? "0.###" : "#,0", CultureInfo.InvariantCulture) + " " + unit,
            MinorTickGenerator = new ScottPlot.TickGenerators.LogDecadeMinorTickGenerator(),
        };
    }

    private static string Markdown((string Label, double[] Millis)[] kinds, List<(int N, double Map, double Init)> sweep,
        List<(double Mib, double[] Map, double[] Copy)> sizes, JsonNode pool, JsonNode e2e, JsonNode startup)
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine("# Benchmark report");
        md.AppendLine();
        md.AppendLine(inv, $"Written by `./bench.sh report` at {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC on this machine ({Environment.ProcessorCount} cores, shared and noisy), with the quick settings.");
        md.AppendLine("Every figure below comes from the JSON in `bench/results/report-data/`; ratios compare measurements from the same run. "
            + "The full-length runs are `./bench.sh startup|e2e|sandbox|pool`.");
        md.AppendLine();
        md.AppendLine("## Latency by start kind");
        md.AppendLine();
        md.AppendLine("![latency CDF per start kind](plots/latency-cdf.png)");
        md.AppendLine();
        md.AppendLine("The `heavy` guest (about 124 MiB of tables built at init). Warm, SWITCH, NEW and cold are HTTP requests through a coordinator to one worker; "
            + "copy-restore is measured through the sandbox protocol (a fresh host per sample, no HTTP hop), since the platform itself always maps templates.");
        md.AppendLine();
        md.AppendLine("| start kind | n | p50 ms | p99 ms | p50 / warm p50 |");
        md.AppendLine("|---|---:|---:|---:|---:|");
        var warm = Percentile(kinds[0].Millis, 50);
        foreach (var (label, millis) in kinds)
            md.AppendLine(inv, $"| {label} | {millis.Length} | {Percentile(millis, 50):0.###} | {Percentile(millis, 99):0.###} | {Percentile(millis, 50) / warm:0.#}x |");
        md.AppendLine();
        var cold = Percentile(kinds[4].Millis, 50);
        var switchP50 = Percentile(kinds[1].Millis, 50);
        md.AppendLine(inv, $"Cold over template-over-repurposed p50: **{cold / switchP50:0.#}x**; copy-restore over template-over-repurposed p50: **{Percentile(kinds[3].Millis, 50) / switchP50:0.#}x**.");
        md.AppendLine(inv, $"`hello` warm throughput: {e2e["hello_warm_rps"]} invocations/s at concurrency {e2e["hello_concurrency"]}.");
        md.AppendLine();
        md.AppendLine("## Memory as instances grow");
        md.AppendLine();
        md.AppendLine("![total PSS against live instances](plots/pss-vs-instances.png)");
        md.AppendLine();
        md.AppendLine("Each instance reads every page of its table once (`scan`) before PSS is summed over the sandbox hosts.");
        md.AppendLine();
        md.AppendLine("| live instances | restored from template (MiB) | each ran init (MiB) | template / init |");
        md.AppendLine("|---:|---:|---:|---:|");
        foreach (var (n, map, init) in sweep)
            md.AppendLine(inv, $"| {n} | {map:0.#} | {init:0.#} | {map / init:0.###} |");
        md.AppendLine();
        if (sizes.Count > 0)
        {
            md.AppendLine("## Restore time against template size");
            md.AppendLine();
            md.AppendLine("![restore time against template size](plots/restore-vs-size.png)");
            md.AppendLine();
            md.AppendLine("The `sized` guest (init fills `SIZE_MB` MiB with non-zero words; a request reads 64 pages spread over them), restored into a fresh sandbox host "
                + "and answering its first request.");
            md.AppendLine();
            md.AppendLine("| template MiB | map p50 ms | map p99 ms | copy p50 ms | copy p99 ms | copy / map p50 |");
            md.AppendLine("|---:|---:|---:|---:|---:|---:|");
            foreach (var (mib, map, copy) in sizes)
                md.AppendLine(inv, $"| {mib:0.#} | {Percentile(map, 50):0.###} | {Percentile(map, 99):0.###} | {Percentile(copy, 50):0.###} | {Percentile(copy, 99):0.###} | {Percentile(copy, 50) / Percentile(map, 50):0.#}x |");
            md.AppendLine();
        }
        md.AppendLine("## Memory pool modes");
        md.AppendLine();
        md.AppendLine(inv, $"`heavy`'s template ({pool["template_mib"]} MiB) restored on a node that never saw it, through a memory-pool node:");
        md.AppendLine();
        md.AppendLine("| mode | n | p50 ms | p99 ms | MiB over the network |");
        md.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var (mode, r) in pool["modes"]!.AsObject())
            md.AppendLine(inv, $"| {mode} | {r!["n"]} | {r["p50_ms"]} | {r["p99_ms"]} | {r["net_mib"]} |");
        md.AppendLine();
        md.AppendLine(inv, $"Sandbox host: {startup["host"]}. Data measured at {startup["measured_at"]} (startup) to {pool["measured_at"]} (pool).");
        return md.ToString();
    }
}
