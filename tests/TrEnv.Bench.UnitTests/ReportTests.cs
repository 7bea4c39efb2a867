using System.Globalization;
using System.Text.Json.Nodes;
using SkiaSharp;
using TrEnv.Bench;

namespace TrEnv.Tests;

/// <summary>The benchmark report on made-up results: its tables say what the samples say, and its plots have text.</summary>
public sealed class ReportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("trenv-report-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static JsonObject Summary(params double[] samples)
        => new() { ["n"] = samples.Length, ["samples_ms"] = new JsonArray(samples.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray()) };

    private void Write(string name, JsonNode json) => File.WriteAllText(Path.Combine(_dir, name), json.ToJsonString());

    private void WriteAll(bool withSizes = true)
    {
        var startup = new JsonObject
        {
            ["cases"] = new JsonArray(new JsonObject { ["function"] = "heavy", ["mode"] = "copy", ["samples_ms"] = Summary(70, 80, 90, 100)["samples_ms"]!.DeepClone() }),
            ["pss"] = new JsonObject
            {
                ["sweep"] = new JsonArray(
                    new JsonObject { ["instances"] = 1, ["map_total_mib"] = 140.0, ["init_total_mib"] = 140.0 },
                    new JsonObject { ["instances"] = 64, ["map_total_mib"] = 320.0, ["init_total_mib"] = 8000.0 }),
            },
            ["host"] = "aot",
            ["measured_at"] = "2026-01-01T00:00:00Z",
        };
        if (withSizes)
        {
            startup["restore_by_size"] = new JsonArray(
                new JsonObject { ["size_mib"] = 1, ["template_mib"] = 1.0, ["map"] = Summary(0.8, 0.9), ["copy"] = Summary(1.4, 1.5) },
                new JsonObject { ["size_mib"] = 256, ["template_mib"] = 256.0, ["map"] = Summary(1.3, 1.4), ["copy"] = Summary(160, 170) });
        }
        Write("startup.json", startup);
        Write("e2e.json", new JsonObject
        {
            ["heavy"] = new JsonObject { ["warm"] = Summary(1, 2, 3, 4), ["cold"] = Summary(400, 500, 600) },
            ["hello_warm_rps"] = 5000,
            ["hello_concurrency"] = 16,
        });
        Write("sandbox.json", new JsonObject { ["switch_start_heavy"] = Summary(3, 4, 5), ["new_start_heavy"] = Summary(30, 40) });
        Write("pool.json", new JsonObject
        {
            ["template_mib"] = 123.5,
            ["modes"] = new JsonObject { ["cxl_map"] = new JsonObject { ["n"] = 3, ["p50_ms"] = 1.1, ["p99_ms"] = 3.9, ["net_mib"] = 0 } },
            ["measured_at"] = "2026-01-01T00:01:00Z",
        });
    }

    [Fact]
    public void Tables_follow_the_samples_and_each_plot_is_a_png_with_its_title_drawn()
    {
        WriteAll();
        var report = Path.Combine(_dir, "report.md");
        Assert.Equal(0, ReportCommand.Run(_dir, report));
        var md = File.ReadAllText(report);
        // Nearest-rank p50 of 1,2,3,4 is 2; cold p50 500 over SWITCH p50 4 is 125x.
        Assert.Contains("| warm | 4 | 2 | 4 | 1x |", md, StringComparison.Ordinal);
        Assert.Contains("| cold (init) | 3 | 500 | 600 | 250x |", md, StringComparison.Ordinal);
        Assert.Contains("**125x**", md, StringComparison.Ordinal);
        Assert.Contains("| 64 | 320 | 8000 | 0.04 |", md, StringComparison.Ordinal);
        Assert.Contains("| 256 | 1.3 | 1.4 | 160 | 170 | 123.1x |", md, StringComparison.Ordinal);
        Assert.Contains("| cxl_map | 3 | 1.1 | 3.9 | 0 |", md, StringComparison.Ordinal);
        foreach (var plot in new[] { "latency-cdf.png", "pss-vs-instances.png", "restore-vs-size.png" })
        {
            var path = Path.Combine(_dir, "plots", plot);
            Assert.Contains($"(plots/{plot})", md, StringComparison.Ordinal);
            using var bitmap = SKBitmap.Decode(path);
            Assert.NotNull(bitmap);
            Assert.Equal((900, 560), (bitmap.Width, bitmap.Height));
            // The title's glyphs are dark pixels in the top band; with no usable font it would be blank.
            var dark = 0;
            for (var y = 0; y < 30; y++)
                for (var x = 0; x < bitmap.Width; x++)
                    if (bitmap.GetPixel(x, y) is var c && c.Red + c.Green + c.Blue < 200)
                        dark++;
            Assert.True(dark > 50, string.Create(CultureInfo.InvariantCulture, $"{plot}: {dark} dark pixels in the title band; is a font (fonts-dejavu-core) installed?"));
        }
    }

    [Fact]
    public void Without_a_size_sweep_the_report_leaves_that_plot_out()
    {
        WriteAll(withSizes: false);
        Assert.Equal(0, ReportCommand.Run(_dir, Path.Combine(_dir, "report.md")));
        Assert.False(File.Exists(Path.Combine(_dir, "plots", "restore-vs-size.png")));
        Assert.DoesNotContain("restore-vs-size", File.ReadAllText(Path.Combine(_dir, "report.md")), StringComparison.Ordinal);
    }

    [Fact]
    public void Results_without_raw_samples_or_missing_files_are_refused_with_a_reason()
    {
        WriteAll();
        Write("sandbox.json", new JsonObject { ["switch_start_heavy"] = new JsonObject { ["n"] = 3, ["p50_ms"] = 4 }, ["new_start_heavy"] = Summary(30) });
        var e = Assert.Throws<InvalidDataException>(() => ReportCommand.Run(_dir, Path.Combine(_dir, "report.md")));
        Assert.Contains("samples_ms", e.Message, StringComparison.Ordinal);
        File.Delete(Path.Combine(_dir, "pool.json"));
        Assert.Contains("pool.json", Assert.Throws<FileNotFoundException>(() => ReportCommand.Run(_dir, Path.Combine(_dir, "report.md"))).Message, StringComparison.Ordinal);
    }
}
