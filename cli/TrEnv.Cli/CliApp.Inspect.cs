using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;

namespace TrEnv.Cli;

/// <summary>trenv templates and trenv cluster: tables of the sealed templates, the nodes, the workers and the pool.</summary>
public sealed partial class CliApp
{
    private Command Templates()
    {
        var command = new Command("templates", "List sealed memory templates: function, size, pages, pool region, who captured, live mappings");
        command.SetAction(async (p, ct) =>
        {
            using var client = Client(p);
            var answer = await client.GetAsync("v1/templates", ct);
            if (!answer.Ok)
                return Fail(answer);
            if (Json(p))
                return WriteJson(answer.Json);
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
            if (Json(p))
                return WriteJson(answer.Json);
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
}
