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

    private static async Task<(HttpStatusCode Status, string Body, string Start)> Invoke(LocalCluster c, string name, string input)
    {
        var r = await c.Http.PostAsync($"/v1/functions/{name}/invoke", new ByteArrayContent(Encoding.UTF8.GetBytes(input)));
        return (r.StatusCode, await r.Content.ReadAsStringAsync(), r.Headers.TryGetValues("X-TrEnv-Start", out var s) ? s.Single() : "");
    }

    private static async Task ScaleToZero(LocalCluster c, string name)
        => Assert.Equal(HttpStatusCode.OK, (await c.Http.PostAsync($"/v1/functions/{name}/scale-to-zero", null)).StatusCode);

    [Fact]
    public async Task A_ruby_script_answers_the_same_on_every_start_is_reseeded_on_restore_and_fails_cleanly()
    {
        await using var c = new LocalCluster();
        await c.StartAllAsync("worker-1");
        Assert.Equal(HttpStatusCode.Created, (await c.Http.PutAsync("/v1/functions/tool?runtime=ruby", new StringContent(Tool))).StatusCode);
        // Quotes, interpolation, backslashes, newlines and non-ASCII reach handle as the exact bytes sent.
        var inputs = new[] { "plain", "quote \" and #{interpolation} and \\ backslash", "line\r\nbreaks\n", "ünïcödé", new string('z', 3000) };

        var cold = await Invoke(c, "tool", inputs[0]);
        Assert.Equal((HttpStatusCode.OK, "cold"), (cold.Status, cold.Start));
        var expected = new Dictionary<string, string> { [inputs[0]] = cold.Body };
        foreach (var input in inputs.Skip(1))
        {
            var warm = await Invoke(c, "tool", input);
            Assert.Equal((HttpStatusCode.OK, "warm"), (warm.Status, warm.Start));
            expected[input] = warm.Body;
        }
        using (var doc = JsonDocument.Parse(expected[inputs[1]]))
            Assert.Equal(Encoding.UTF8.GetByteCount(inputs[1]), doc.RootElement.GetProperty("len").GetInt32());
        foreach (var input in inputs)
        {
            await ScaleToZero(c, "tool");
            var restored = await Invoke(c, "tool", input);
            Assert.Equal((HttpStatusCode.OK, "template", expected[input]), (restored.Status, restored.Start, restored.Body));
        }

        var draws = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            await ScaleToZero(c, "tool");
            var draw = await Invoke(c, "tool", "random");
            Assert.Equal((HttpStatusCode.OK, "template"), (draw.Status, draw.Start));
            draws.Add(draw.Body);
        }
        Assert.NotEqual(draws[0], draws[1]);

        var boom = await Invoke(c, "tool", "boom");
        Assert.Equal(HttpStatusCode.InternalServerError, boom.Status);
        using (var error = JsonDocument.Parse(boom.Body))
            Assert.Equal(("exception", "KeyError: no such key"), (error.RootElement.GetProperty("error").GetString(), error.RootElement.GetProperty("message").GetString()));
        var after = await Invoke(c, "tool", "plain");
        Assert.Equal((HttpStatusCode.OK, "warm", expected["plain"]), (after.Status, after.Start, after.Body));
        string logs = "";
        await Poll.UntilAsync(async () => (logs = await c.Http.GetStringAsync("/v1/functions/tool/logs?tail=20")).Contains("no such key (KeyError)", StringComparison.Ordinal),
            TimeSpan.FromSeconds(10), () => "the backtrace in the function's log: " + logs);

        // A script that raises at its top level fails its start with the reason in the log.
        Assert.Equal(HttpStatusCode.Created, (await c.Http.PutAsync("/v1/functions/broken?runtime=ruby", new StringContent("raise 'not today'\n"))).StatusCode);
        var broken = await Invoke(c, "broken", "x");
        Assert.Equal(HttpStatusCode.InternalServerError, broken.Status);
        Assert.Contains("main.rb failed at its top level: RuntimeError: not today", broken.Body, StringComparison.Ordinal);

        var sample = await c.Http.PutAsync("/v1/functions/word-count?runtime=ruby",
            new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(TestGuests.RepoRoot, "guests", "ruby", "word_count.rb"))));
        Assert.Equal(HttpStatusCode.Created, sample.StatusCode);
        Assert.Equal("""{"words":8,"distinct":3,"top":[["cat",2],["hat",1]]}""", (await Invoke(c, "word-count", "top: 2\nThe cat and the hat; the cat sat.")).Body);
    }
}
