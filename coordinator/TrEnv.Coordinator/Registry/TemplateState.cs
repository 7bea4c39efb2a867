using System.Collections.Immutable;
using TrEnv.Contracts;
using static TrEnv.Contracts.TemplateCommands;
using static TrEnv.Contracts.TemplateReplies;

namespace TrEnv.Coordinator.Registry;

public enum TemplateStatus
{
    None,
    Capturing,
    Sealed,
    Retired,
    Freed,
}

/// <summary>
/// One template's lifecycle as a pure state machine. A single capture lease at a time (so concurrent
/// first invocations capture once); live mappings per worker are volatile, re-reported by workers, and a
/// retired template's region is freed only when they all reach zero.
/// </summary>
public sealed record TemplateState(
    string Key,
    TemplateStatus Status,
    string? CapturingWorker,
    DateTimeOffset? LeaseSince,
    PoolRegion? Region,
    TemplateInfo? Template,
    ImmutableDictionary<string, int> Mappings)
{
    /// <summary>A capture that has not sealed within this time loses its lease to the next worker that asks.</summary>
    public static readonly TimeSpan LeaseTimeout = TimeSpan.FromMinutes(2);

    public static TemplateState Empty(string key) => new(key, TemplateStatus.None, null, null, null, null, ImmutableDictionary<string, int>.Empty.WithComparers(StringComparer.Ordinal));

    public int LiveMappings => Mappings.Values.Sum();

    public string StatusName => Status.ToString().ToLowerInvariant();

    public State ToReply() => new(Key, StatusName, Template, LiveMappings, Mappings);

    /// <summary>What a BeginCapture should do: refuse, grant the held region again, or start a new lease (which needs a region first).</summary>
    public IProtocolMessage? Decide(BeginCapture begin, DateTimeOffset now) => Status switch
    {
        TemplateStatus.Sealed => new CaptureRefused(Key, "the template is already sealed", Template),
        TemplateStatus.Retired or TemplateStatus.Freed => new CaptureRefused(Key, "this function version was retired", null),
        TemplateStatus.Capturing when CapturingWorker == begin.Worker && Region is { } r && r.Length >= begin.Bytes => new CaptureGranted(Key, r),
        TemplateStatus.Capturing when now - LeaseSince < LeaseTimeout => new CaptureRefused(Key, $"a capture is in progress on {CapturingWorker}", null),
        _ => null,
    };

    public (IProtocolMessage Reply, IEvent? Event) Process(ITemplateCommand command, DateTimeOffset now)
    {
        switch (command)
        {
            case Seal seal when Status == TemplateStatus.Capturing && CapturingWorker == seal.Worker && Region is { } region:
                var info = new TemplateInfo(Key, Function!, Version, Sha256!, region, seal.NonZeroPages, seal.MemoryBytes, seal.Worker, now, seal.Header);
                return (new TemplateReplies.Sealed(info), new TemplateEvents.Sealed(info));
            case Seal seal:
                return (new CaptureRefused(Key, $"{seal.Worker} holds no capture lease (status {StatusName})", Template), null);
            case AbortCapture abort when Status == TemplateStatus.Capturing && CapturingWorker == abort.Worker:
                return (new Ack(Key), new TemplateEvents.CaptureAborted(Key, abort.Worker, abort.Reason));
            case AbortCapture:
                return (new Ack(Key), null);
            case Retire when Status is TemplateStatus.Sealed or TemplateStatus.Capturing:
                return (new Ack(Key), new TemplateEvents.Retired(Key, now));
            case Retire:
                return (new Ack(Key), null);
            case TemplateCommands.Get:
                return (ToReply(), null);
            case Hold hold when Holders.Contains(hold.Holder):
                return (new Ack(Key), null);
            case Hold when Status is TemplateStatus.Freed:
                return (new CaptureRefused(Key, "the template's region was already freed", null), null);
            case Hold hold:
                return (new Ack(Key), new TemplateEvents.Held(Key, hold.Holder));
            case Unhold unhold when Holders.Contains(unhold.Holder):
                return (new Ack(Key), new TemplateEvents.Unheld(Key, unhold.Holder));
            case Unhold:
                return (new Ack(Key), null);
            case HoldAll when Status is TemplateStatus.Freed:
                return (new CaptureRefused(Key, "the template's region was already freed", null), null);
            case HoldAll all:
                var added = all.Holders.Where(h => !Holders.Contains(h)).Distinct(StringComparer.Ordinal).ToList();
                return (new Ack(Key), added.Count == 0 ? null : new TemplateEvents.HeldAll(Key, added));
            default:
                throw new ArgumentException($"{command.GetType().Name} is handled by the actor.");
        }
    }

    // Remembered from the lease so Seal can build the full TemplateInfo.
    public string? Function { get; init; }
    public int Version { get; init; }
    public string? Sha256 { get; init; }

    /// <summary>Sessions whose deltas apply over this template: its region stays while any holds it.</summary>
    public ImmutableHashSet<string> Holders { get; init; } = ImmutableHashSet<string>.Empty.WithComparer(StringComparer.Ordinal);

    public TemplateState Apply(IEvent e) => e switch
    {
        TemplateEvents.CaptureStarted s => this with
        {
            Status = TemplateStatus.Capturing, CapturingWorker = s.Worker, LeaseSince = s.At, Region = s.Region,
            Function = s.Function, Version = s.Version, Sha256 = s.Sha256,
        },
        TemplateEvents.CaptureAborted => this with { Status = TemplateStatus.None, CapturingWorker = null, LeaseSince = null, Region = null },
        TemplateEvents.Sealed s => this with { Status = TemplateStatus.Sealed, Template = s.Template, CapturingWorker = null, LeaseSince = null },
        TemplateEvents.Retired => this with { Status = TemplateStatus.Retired },
        TemplateEvents.Freed => this with { Status = TemplateStatus.Freed, Region = null },
        TemplateEvents.Held h => this with { Holders = Holders.Add(h.Holder) },
        TemplateEvents.Unheld u => this with { Holders = Holders.Remove(u.Holder) },
        TemplateEvents.HeldAll h => this with { Holders = Holders.Union(h.Holders) },
        _ => this,
    };

    public TemplateState WithMappings(string worker, int count)
        => this with { Mappings = count <= 0 ? Mappings.Remove(worker) : Mappings.SetItem(worker, count) };

    /// <summary>A retired template whose pages nobody maps can give its region back.</summary>
    public bool ShouldFree => Status == TemplateStatus.Retired && Region is not null && LiveMappings == 0 && Holders.IsEmpty;
}
