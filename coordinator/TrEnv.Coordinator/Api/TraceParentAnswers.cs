using TrEnv.Cluster;

namespace TrEnv.Coordinator.Api;

/// <summary>The traceparent every HTTP answer carries (W3C trace context), exporter or not.</summary>
public static class TraceParentAnswers
{
    /// <summary>
    /// Every answer carries a W3C traceparent: its request's span, continuing the caller's trace when it sent one
    /// (none at all with OTEL_SDK_DISABLED=true or OTEL_PROPAGATORS=none). Set before the handler runs, so error answers
    /// carry it too.
    /// </summary>
    public static void UseTraceParentAnswers(this WebApplication app)
    {
        if (!NodeTelemetry.Settings.AnswersTraceParent)
            return;
        app.Use((context, next) =>
        {
            context.Response.Headers["traceparent"] = NodeTelemetry.TraceParentAnswer(System.Diagnostics.Activity.Current, context.Request.Headers["traceparent"].ToString());
            return next(context);
        });
    }
}
