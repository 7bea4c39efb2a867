using TrEnv.Coordinator.Catalog;

namespace TrEnv.Coordinator.Api;

/// <summary>GET /v1/templates: the sealed templates this coordinator knows of.</summary>
public static class TemplatesApi
{
    public static void MapTemplatesApi(this WebApplication app)
        => app.MapGet("/v1/templates", (TemplateCatalog templates) => Results.Json(new
        {
            templates = templates.All.Select(t => new
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
            }),
        }));
}
