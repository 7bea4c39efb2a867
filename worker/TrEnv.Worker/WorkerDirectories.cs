namespace TrEnv.Worker;

/// <summary>Where a worker keeps its files under TRENV_DATA_DIR; sandboxes see the first three at the same paths.</summary>
public sealed record WorkerDirectories(string Modules, string Templates, string Layers, string Sandboxes)
{
    public static WorkerDirectories Create(string dataDirectory) => new(
        Directory.CreateDirectory(Path.Combine(dataDirectory, "modules")).FullName,
        Directory.CreateDirectory(Path.Combine(dataDirectory, "templates")).FullName,
        Directory.CreateDirectory(Path.Combine(dataDirectory, "layers")).FullName,
        Path.Combine(Path.GetFullPath(dataDirectory), "sandboxes"));
}
