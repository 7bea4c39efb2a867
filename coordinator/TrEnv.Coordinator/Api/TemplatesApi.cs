using Akka.Actor;
using Akka.Hosting;
using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Registry;

namespace TrEnv.Coordinator.Api;

/// <summary>GET /v1/templates: the sealed templates this coordinator knows of.</summary>
public static class TemplatesApi
{
    public static void MapTemplatesApi(this WebApplication app)
        => app.MapGet("/v1/templates", async (TemplateCatalog templates, IRequiredActor<TemplateRegion> registry, CancellationToken ct) =>
        {
            var all = templates.All;
            // Live mappings live in the template entities (workers report them); ask each, briefly.
            var mappings = await Task.WhenAll(all.Select(async t =>
            {
                try
                {
                    return (int?)(await registry.ActorRef.Ask<TemplateReplies.State>(new TemplateCommands.Get(t.Key), TimeSpan.FromSeconds(2), ct)).LiveMappings;
                }
                catch (AskTimeoutException)
                {
                    return null;
                }
            }));
            return Results.Json(new
            {
            templates = all.Select((t, i) => new
            {
                id = t.Key,
                function = t.Function,
                version = t.Version,
                sha256 = t.Sha256,
                sizeBytes = t.MemoryBytes,
                nonZeroPages = t.NonZeroPages,
                storedBytes = t.NonZeroPages * 4096,
                regions = new[] { new { offset = t.Region.Offset, length = t.Region.Length } },
                capturedBy = t.CapturedBy,
                sealedAt = t.SealedAt,
                liveMappings = mappings[i],
            }),
            });
        });
}
