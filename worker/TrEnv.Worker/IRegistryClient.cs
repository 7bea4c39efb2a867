using TrEnv.Contracts;

namespace TrEnv.Worker;

/// <summary>What the sandbox manager needs from the cluster: module bytes and the template registry. Off the warm path.</summary>
public interface IRegistryClient
{
    Task<byte[]?> FetchModuleAsync(string sha256, CancellationToken ct);

    Task<IProtocolMessage> BeginCaptureAsync(TemplateCommands.BeginCapture begin, CancellationToken ct);

    Task<IProtocolMessage> SealAsync(TemplateCommands.Seal seal, CancellationToken ct);

    void AbortCapture(TemplateCommands.AbortCapture abort);

    void ReportMappings(TemplateCommands.Mappings mappings);
}
