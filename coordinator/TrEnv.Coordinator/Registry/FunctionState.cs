using System.Collections.Immutable;
using TrEnv.Contracts;
using static TrEnv.Contracts.FunctionCommands;
using static TrEnv.Contracts.FunctionReplies;

namespace TrEnv.Coordinator.Registry;

/// <summary>
/// A function's versions, as a pure state machine: <see cref="Process"/> decides, <see cref="Apply"/> evolves.
/// Redeploying the same module with the same limits is a no-op, so a retried deploy never adds a version.
/// </summary>
public sealed record FunctionState(string Name, ImmutableList<FunctionVersion> Versions, bool IsDeleted)
{
    public static FunctionState Empty(string name) => new(name, [], false);

    public FunctionVersion? Current => IsDeleted || Versions.IsEmpty ? null : Versions[^1];

    public View ToView() => new(Name, Current, Versions, IsDeleted);

    public (IFunctionReply Reply, IEvent? Event) Process(IFunctionCommand command, DateTimeOffset now)
    {
        if (command.Name != Name)
            throw new ArgumentException($"Command for {command.Name} reached function {Name}.");
        switch (command)
        {
            case Deploy d:
                if (Current is { } current && current.Sha256 == d.Sha256 && current.Limits.SameAs(d.Limits))
                    return (new Deployed(Name, current.Version, current.Sha256, Created: false), null);
                var version = new FunctionVersion((Versions.IsEmpty ? 0 : Versions[^1].Version) + 1, d.Sha256, d.SizeBytes, d.Limits, now);
                return (new Deployed(Name, version.Version, d.Sha256, Created: true), new FunctionEvents.VersionAdded(Name, version));
            case Delete:
                return Current is null
                    ? (new FunctionReplies.Deleted(Name, Existed: false), null)
                    : (new FunctionReplies.Deleted(Name, Existed: true), new FunctionEvents.Deleted(Name, now));
            case Get:
                return (ToView(), null);
            default:
                throw new ArgumentException($"Unknown function command {command.GetType().Name}.");
        }
    }

    public FunctionState Apply(IEvent e) => e switch
    {
        FunctionEvents.VersionAdded v => this with { Versions = Versions.Add(v.Version), IsDeleted = false },
        FunctionEvents.Deleted => this with { IsDeleted = true },
        _ => this,
    };
}
