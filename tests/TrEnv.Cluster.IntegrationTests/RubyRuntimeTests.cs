using System.Net;
using System.Text;
using System.Text.Json;

namespace TrEnv.Tests;

/// <summary>
/// The Ruby runtime (scripts/fetch-ruby.sh; the engine's ruby.wasm adapter) on a real cluster: the same answers on
/// cold, template and warm starts, reseeded restores, exceptions as clean 500s, and the sample tool.
/// </summary>
public sealed class RubyRuntimeTests
{
    private const string Tool = """
        require "json"
        require "digest"

        TABLE = (0...2048).map { |i| Digest::SHA256.hexdigest(i.to_s)[0, 12] }

        def handle(request)
          return rand(2**62).to_s if request == "random"
          raise KeyError, "no such key" if request == "boom"
          JSON.generate({ "len" => request.bytesize, "digest" => TABLE[request.bytes.sum % 2048], "up" => request.dup.force_encoding("UTF-8").upcase })
        end
        """;

    [Fact]
    public async Task A_ruby_script_answers_the_same_on_every_start_is_reseeded_on_restore_and_fails_cleanly()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("tool", Encoding.UTF8.GetBytes(Tool), "runtime=ruby")).StatusCode);
        // The deploy has the worker compile Ruby's interpreter (25 s alone here, over a minute beside another
        // cluster test): wait for it, so the first call measures the start, not a compile on a loaded machine.
        var modules = Path.Combine(c.Directory, "worker-1", "modules");
        await Poll.UntilAsync(() => Task.FromResult(Directory.Exists(modules) && Directory.GetFiles(modules, "*.cwasm").Length > 0),
            TimeSpan.FromMinutes(5), () => "the worker to compile the Ruby runtime after the deploy");
        // Quotes, interpolation, backslashes, newlines and non-ASCII reach handle as the exact bytes sent.
        var inputs = new[] { "plain", "quote \" and #{interpolation} and \\ backslash", "line\r\nbreaks\n", "ünïcödé", new string('z', 3000) };

        var expected = await ScriptChecks.AnswersTheSameOnEveryStart(c, "tool", inputs);
        using (var doc = JsonDocument.Parse(expected[inputs[1]]))
            Assert.Equal(Encoding.UTF8.GetByteCount(inputs[1]), doc.RootElement.GetProperty("len").GetInt32());
        await ScriptChecks.RestoredInstancesDrawDifferently(c, "tool", "random");

        var boom = await c.Api.InvokeAsync("tool", "boom");
        Assert.Equal(HttpStatusCode.InternalServerError, boom.Status);
        using (var error = JsonDocument.Parse(boom.Body))
            Assert.Equal(("exception", "KeyError: no such key"), (error.RootElement.GetProperty("error").GetString(), error.RootElement.GetProperty("message").GetString()));
        var after = await c.Api.InvokeAsync("tool", "plain");
        Assert.Equal((HttpStatusCode.OK, "warm", expected["plain"]), (after.Status, after.Start, after.Body));
        string logs = "";
        await Poll.UntilAsync(async () => (logs = await c.Http.GetStringAsync("/v1/functions/tool/logs?tail=20")).Contains("no such key (KeyError)", StringComparison.Ordinal),
            TimeSpan.FromSeconds(10), () => "the backtrace in the function's log: " + logs);

        // A script that raises at its top level fails its start with the reason in the log.
        Assert.Equal(HttpStatusCode.Created, (await c.Api.DeployAsync("broken", "raise 'not today'\n"u8.ToArray(), "runtime=ruby")).StatusCode);
        var broken = await c.Api.InvokeAsync("broken", "x");
        Assert.Equal(HttpStatusCode.InternalServerError, broken.Status);
        Assert.Contains("main.rb failed at its top level: RuntimeError: not today", broken.Body, StringComparison.Ordinal);

        var sample = await c.Api.DeployAsync("word-count", await File.ReadAllBytesAsync(Path.Combine(TestGuests.RepoRoot, "guests", "ruby", "word_count.rb")), "runtime=ruby");
        Assert.Equal(HttpStatusCode.Created, sample.StatusCode);
        Assert.Equal("""{"words":8,"distinct":3,"top":[["cat",2],["hat",1]]}""", (await c.Api.InvokeAsync("word-count", "top: 2\nThe cat and the hat; the cat sat.")).Body);
    }
}
