using System.Diagnostics;
using TrEnv.Cluster;

namespace TrEnv.Tests;

public sealed class TelemetryEnvironmentTests
{
    private static TelemetryEnvironment Parse(params (string Name, string Value)[] variables)
    {
        var map = variables.ToDictionary(v => v.Name, v => v.Value);
        return TelemetryEnvironment.Parse(name => map.GetValueOrDefault(name));
    }

    [Fact]
    public void By_default_nothing_is_exported_and_answers_continue_the_callers_trace()
    {
        var t = Parse();
        Assert.Null(t.Problem);
        Assert.False(t.ExportsTraces);
        Assert.False(t.PushesMetrics);
        Assert.True(t.AnswersTraceParent);
    }

    [Fact]
    public void An_endpoint_exports_both_signals_unless_one_is_turned_off()
    {
        var endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        Assert.True(Parse(endpoint).ExportsTraces);
        Assert.True(Parse(endpoint).PushesMetrics);

        var metricsOnly = Parse(endpoint, ("OTEL_TRACES_EXPORTER", "none"));
        Assert.False(metricsOnly.ExportsTraces);
        Assert.True(metricsOnly.PushesMetrics);

        var tracesOnly = Parse(endpoint, ("OTEL_METRICS_EXPORTER", "prometheus"));
        Assert.True(tracesOnly.ExportsTraces);
        Assert.False(tracesOnly.PushesMetrics);
        Assert.False(Parse(endpoint, ("OTEL_METRICS_EXPORTER", "none")).PushesMetrics);
        Assert.True(Parse(endpoint, ("OTEL_METRICS_EXPORTER", " OTLP , prometheus ")).PushesMetrics);
    }

    [Fact]
    public void The_sdk_switch_turns_every_signal_off()
    {
        var off = Parse(("OTEL_SDK_DISABLED", "TRUE"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"));
        Assert.Null(off.Problem);
        Assert.False(off.ExportsTraces);
        Assert.False(off.PushesMetrics);
        Assert.False(off.AnswersTraceParent);
        Assert.True(Parse(("OTEL_SDK_DISABLED", "false")).AnswersTraceParent);
    }

    [Theory]
    [InlineData("none", false)]
    [InlineData("tracecontext", true)]
    [InlineData("baggage", false)]
    [InlineData("tracecontext,baggage", true)]
    public void Propagators_decide_whether_answers_carry_a_traceparent(string propagators, bool answers)
    {
        var t = Parse(("OTEL_PROPAGATORS", propagators));
        Assert.Null(t.Problem);
        Assert.Equal(answers, t.AnswersTraceParent);
    }

    [Theory]
    [InlineData("OTEL_PROPAGATORS", "b3", "b3")]
    [InlineData("OTEL_PROPAGATORS", "none,tracecontext", "combines none")]
    [InlineData("OTEL_TRACES_EXPORTER", "zipkin", "zipkin")]
    [InlineData("OTEL_METRICS_EXPORTER", "console", "console")]
    [InlineData("OTEL_SDK_DISABLED", "yes", "neither true nor false")]
    public void What_cannot_be_honoured_is_refused_by_name(string name, string value, string expected)
    {
        var problem = Parse((name, value)).Problem;
        Assert.NotNull(problem);
        Assert.Contains(name, problem);
        Assert.Contains(expected, problem);
    }

    [Fact]
    public void An_answer_without_a_span_continues_the_callers_trace_and_sampling_flag()
    {
        var caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        var answer = NodeTelemetry.TraceParentAnswer(null, caller).Split('-');
        Assert.Equal("0af7651916cd43dd8448eb211c80319c", answer[1]);
        Assert.NotEqual("b7ad6b7169203331", answer[2]);
        Assert.Equal("01", answer[3]);

        var fresh = NodeTelemetry.TraceParentAnswer(null, "garbage").Split('-');
        Assert.Equal(4, fresh.Length);
        Assert.NotEqual("0af7651916cd43dd8448eb211c80319c", fresh[1]);
        Assert.Equal("00", fresh[3]);

        using var own = new Activity("request").SetIdFormat(ActivityIdFormat.W3C).Start();
        Assert.Equal(own.Id, NodeTelemetry.TraceParentAnswer(own, caller));
    }
}
