using System.CommandLine;
using System.Net.Http.Headers;

namespace TrEnv.Cli;

/// <summary>trenv layer push: a function's file layer uploaded (PUT /v1/layers), its hash printed for deploy --layer.</summary>
public sealed partial class CliApp
{
    private Command Layers()
    {
        var path = new Argument<string>("path") { Description = "A directory (archived the same way every time, so the same files give the same hash) or a .tar / .tar.gz" };
        var push = new Command("push", "Upload a layer and print its sha256 (deploy --layer HASH, or name the directory in --layer or a manifest)") { path };
        push.SetAction(async (p, ct) =>
        {
            var source = p.GetValue(path)!;
            if (!File.Exists(source) && !Directory.Exists(source))
                return Usage($"{Path.GetFullPath(source)} does not exist.");
            using var client = Client(p);
            ApiAnswer answer;
            try
            {
                answer = await PushLayerAsync(client, source, ct);
            }
            catch (InvalidDataException e)
            {
                return Usage(e.Message);
            }
            if (!answer.Ok)
                return Fail(answer);
            if (Json(p))
                return WriteJson(answer.Json);
            stdout.WriteLine(answer.Json.GetProperty("sha256").GetString());
            return ExitCodes.Ok;
        });
        var command = new Command("layer", "File layers: read-only files a function's guest sees under /tmp");
        command.Subcommands.Add(push);
        return command;
    }

    // A directory is archived here; a file is sent as it is (the coordinator checks it and takes gzip too).
    private static async Task<ApiAnswer> PushLayerAsync(TrEnvClient client, string source, CancellationToken ct)
    {
        byte[] archive;
        if (Directory.Exists(source))
        {
            using var buffer = new MemoryStream();
            LayerTar.Write(source, buffer);
            archive = buffer.ToArray();
        }
        else
        {
            archive = await File.ReadAllBytesAsync(source, ct);
        }
        using var content = new ByteArrayContent(archive);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/x-tar");
        return await client.SendAsync(HttpMethod.Put, "v1/layers", content, ct);
    }
}
