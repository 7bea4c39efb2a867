namespace TrEnv.Chaos;

/// <summary>A node the runner starts, faults and watches: a local process (<see cref="NodeProcess"/>) or a container (<see cref="ContainerNode"/>).</summary>
public interface IChaosNode
{
    LocalNode Node { get; }
    bool Running { get; }
    int Starts { get; }
    DateTimeOffset StartedAt { get; }

    /// <summary>Exits nobody asked for, with their exit codes (a node that downed itself, a crash).</summary>
    List<string> UnplannedExits { get; }

    void Start();

    /// <summary>Sends a signal (9 or 15) and waits for the node to end; it stays down until <see cref="Start"/>.</summary>
    Task SignalAsync(int signal, TimeSpan wait);
}
