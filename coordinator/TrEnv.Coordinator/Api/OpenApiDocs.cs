using Microsoft.OpenApi;

namespace TrEnv.Coordinator.Api;

/// <summary>The HTTP API v1 described: <c>/openapi/v1.json</c> (generated from the endpoints) and a page to browse it at <c>/openapi</c>.</summary>
public static class OpenApiDocs
{
    public static IServiceCollection AddTrEnvOpenApi(this IServiceCollection services)
        => services.AddOpenApi(o => o.AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "TrEnv HTTP API";
            document.Info.Version = "v1";
            document.Info.Description = "Deploy WebAssembly functions, invoke them (X-TrEnv-Start says warm, template or cold), and inspect templates, "
                + "workers and the memory pool. Errors are RFC 9457 problem details (application/problem+json: type urn:trenv:error:KIND, title, status, detail, instance) "
                + "that also carry error (the kind) and message (the sentence), as the answers before problem details did. Deploy, delete, layers and scale-to-zero take "
                + "the admin bearer token when TRENV_ADMIN_TOKEN is set; invocations the invoke token when TRENV_INVOKE_TOKEN is.";
            // The exporter's endpoint is middleware, not a route handler, so the generator does not see it.
            document.Paths["/metrics"] = new OpenApiPathItem
            {
                Operations = new Dictionary<HttpMethod, OpenApiOperation>
                {
                    [HttpMethod.Get] = new OpenApiOperation
                    {
                        Summary = "Prometheus metrics (OpenTelemetry exporter): invocations by function, start kind and outcome; startup, exec and duration "
                            + "histograms; failures by kind; sandboxes by worker and state; pool bytes; template captures and restores",
                        Responses = new OpenApiResponses
                        {
                            ["200"] = new OpenApiResponse { Description = "The Prometheus text exposition format", Content = new Dictionary<string, OpenApiMediaType> { ["text/plain"] = new() } },
                        },
                    },
                },
            };
            DescribeProblems(document);
            return Task.CompletedTask;
        }).AddOperationTransformer((operation, context, _) =>
        {
            // Raw bodies, read by the handlers themselves; declared here, since an Accepts constraint would also
            // refuse other content types with 415, which the contract does not.
            var media = (context.Description.HttpMethod, context.Description.RelativePath) switch
            {
                ("PUT", "v1/functions/{name}") => "application/wasm",
                ("POST", "v1/functions/{name}/invoke") => "application/octet-stream",
                ("PUT", "v1/layers") => "application/x-tar",
                _ => null,
            };
            if (media is not null)
                operation.RequestBody = new OpenApiRequestBody { Required = media != "application/octet-stream", Content = new Dictionary<string, OpenApiMediaType> { [media] = new() } };
            return Task.CompletedTask;
        }));

    // One schema for every error answer, and every operation's default response refers to it.
    private static void DescribeProblems(OpenApiDocument document)
    {
        static OpenApiSchema Text(string description) => new() { Type = JsonSchemaType.String, Description = description };
        document.Components ??= new OpenApiComponents();
        document.Components.Schemas ??= new Dictionary<string, IOpenApiSchema>();
        document.Components.Schemas["Problem"] = new OpenApiSchema
        {
            Type = JsonSchemaType.Object,
            Description = "An error answer (RFC 9457 problem details, application/problem+json).",
            Properties = new Dictionary<string, IOpenApiSchema>
            {
                ["type"] = Text("urn:trenv:error: followed by the error kind"),
                ["title"] = Text("The kind in words"),
                ["status"] = new OpenApiSchema { Type = JsonSchemaType.Integer, Description = "The HTTP status" },
                ["detail"] = Text("What happened and what to do, one sentence or two"),
                ["instance"] = Text("The request's path"),
                ["error"] = Text("The error kind (not_found, timeout, trap, ...), as in type"),
                ["message"] = Text("The same sentence as detail"),
            },
            Required = new HashSet<string> { "type", "title", "status", "detail", "error", "message" },
        };
        foreach (var operation in document.Paths.Values.Where(p => p.Operations is not null).SelectMany(p => p.Operations!.Values))
        {
            operation.Responses ??= new OpenApiResponses();
            operation.Responses["default"] = new OpenApiResponse
            {
                Description = "An error, as problem details",
                Content = new Dictionary<string, OpenApiMediaType> { [ApiErrors.ProblemJson] = new() { Schema = new OpenApiSchemaReference("Problem", document) } },
            };
        }
    }

    public static void MapOpenApiDocs(this WebApplication app)
    {
        app.MapOpenApi();
        app.MapGet("/openapi", () => Results.Content(Page, "text/html; charset=utf-8")).ExcludeFromDescription();
    }

    // No build step and nothing fetched from elsewhere: the page reads the document and lists every operation.
    private const string Page = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>TrEnv HTTP API v1</title>
        <style>
          body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #1d2330; }
          h1 { font-size: 1.4rem; } .op { border: 1px solid #d5d9e0; border-radius: 6px; margin: .6rem 0; padding: .5rem .8rem; }
          .m { display: inline-block; min-width: 4.5rem; font-weight: 600; text-transform: uppercase; }
          .get { color: #1764c4; } .post { color: #18794e; } .put { color: #a35200; } .delete { color: #b4232a; }
          code { background: #f1f3f6; padding: 0 .25rem; border-radius: 3px; } .d { color: #4a5363; margin: .3rem 0 0; }
        </style></head>
        <body><h1 id="title">TrEnv HTTP API</h1><p id="description"></p><p>Source: <a href="/openapi/v1.json">/openapi/v1.json</a></p>
        <div id="ops">Loading…</div>
        <script>
        fetch('/openapi/v1.json').then(r => r.json()).then(doc => {
          document.getElementById('title').textContent = doc.info.title + ' ' + doc.info.version;
          document.getElementById('description').textContent = doc.info.description || '';
          const ops = document.getElementById('ops'); ops.textContent = '';
          for (const [path, item] of Object.entries(doc.paths).sort()) {
            for (const [method, op] of Object.entries(item)) {
              if (!['get', 'put', 'post', 'delete', 'patch'].includes(method)) continue;
              const div = document.createElement('div'); div.className = 'op';
              const params = (op.parameters || []).map(p => p.name + ' (' + p.in + ')').join(', ');
              const body = op.requestBody ? Object.keys(op.requestBody.content || {}).join(', ') : '';
              const codes = Object.keys(op.responses || {}).join(', ');
              div.innerHTML = '<span class="m ' + method + '"></span><code></code><p class="d"></p>';
              div.children[0].textContent = method; div.children[1].textContent = path;
              div.children[2].textContent = [op.summary, params && 'parameters: ' + params, body && 'body: ' + body, codes && 'answers: ' + codes].filter(Boolean).join(' · ');
              ops.appendChild(div);
            }
          }
        }).catch(e => { document.getElementById('ops').textContent = 'Could not load /openapi/v1.json: ' + e; });
        </script></body></html>
        """;
}
