using Akka.Hosting;
using TrEnv.Cluster;
using TrEnv.Contracts;
using TrEnv.Coordinator.Api;
using TrEnv.Coordinator.Catalog;
using TrEnv.Coordinator.Placement;
using TrEnv.Coordinator.Registry;
using TrEnv.Coordinator.Sessions;

// A coordinator node: the HTTP API v1, the function and module registries, and invocation placement.
var settings = NodeSettings.FromEnvironment(new Dictionary<string, string?>
{
    ["ROLES"] = Environment.GetEnvironmentVariable("TRENV_ROLES") ?? Roles.Coordinator,
});
var builder = WebApplication.CreateBuilder(args);
builder.Logging.AddTrEnvLogging(settings);
builder.WebHost.UseUrls($"http://{settings.HttpHost}:{settings.HttpPort}");
builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = (Math.Max(Math.Max(settings.MaxModuleMb, settings.MaxInputMb), settings.MaxLayerMb) + 1) * 1024L * 1024L);

var functions = new FunctionCatalog();
var templates = new TemplateCatalog();
var workers = new WorkerDirectory();
var sessions = new SessionCatalog();
builder.Services.AddSingleton(functions).AddSingleton(templates).AddSingleton(workers).AddSingleton(sessions).AddSingleton<InvokeLog>();
builder.Services.AddTrEnvOpenApi();
builder.Services.AddCoordinatorReadiness();
// Validates deployed modules (no compiling, so no epoch ticker or cache needed here).
builder.Services.AddSingleton(_ => new Wasmtime.Engine());
builder.Services.AddSingleton(new UploadGate(settings.MaxUploads));
builder.Services.AddHostedService<SessionExpirySweeper>();
builder.Services.AddHostedService<StoredBytesSweeper>();
builder.Services.AddSingleton(new SessionAdmission(settings.SessionSandboxPercent, settings.SessionsPerFunction));
builder.Services.AddSingleton<InterpreterFunction>();
builder.Services.AddSingleton<SessionForking>();
builder.Services.AddTrEnvNode(settings, (akka, provider) => akka
    .WithActors((_, _) => workers.Log = provider.GetRequiredService<ILoggerFactory>().CreateLogger("TrEnv.Coordinator.Invoke"))
    .AddFunctionRegistry()
    .AddModuleStore()
    .AddTemplateRegistry()
    .AddSessionRegistry(functions, templates, workers)
    .AddCatalogProjection(functions, templates, sessions)
    .AddWorkerDirectory(workers));
builder.Services.AddTrEnvMetrics(settings.Name);

var app = builder.Build();
app.UseTraceParentAnswers();
app.UseJsonErrors();
app.MapClusterApi();
app.MapFunctionsApi();
app.MapLayersApi();
app.MapInvokeApi();
app.MapSessionsApi();
app.MapTemplatesApi();
app.MapMetricsApi();
app.MapOpenApiDocs();
app.MapDashboard();
// A TrEnv category: the node's logging filter shows only those at information level.
var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TrEnv.Coordinator");
app.Lifetime.ApplicationStarted.Register(() => log.LogInformation("TrEnv coordinator {Name} serving http://{HttpHost}:{HttpPort}", settings.Name, settings.HttpHost, settings.HttpPort));
app.Run();
