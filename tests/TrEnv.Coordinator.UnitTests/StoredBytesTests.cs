using TrEnv.Contracts;
using TrEnv.Coordinator.Catalog;

namespace TrEnv.Tests;

public sealed class StoredBytesTests
{
    private static FunctionVersion V(int n, string sha, string? layer = null)
        => new(n, sha, 1, new FunctionLimits(256, 1000, 1, new Dictionary<string, string>(), Layer: layer), DateTimeOffset.UnixEpoch);

    [Fact]
    public void Bytes_of_deleted_functions_and_unused_uploads_are_unreferenced_old_versions_and_sessions_keep_theirs()
    {
        IEvent[] functions =
        [
            new FunctionEvents.VersionAdded("live", V(1, "m-old", "l-old")),
            new FunctionEvents.VersionAdded("live", V(2, "m-live")),
            new FunctionEvents.VersionAdded("gone", V(1, "m-gone", "l-gone")),
            new FunctionEvents.VersionAdded("pinned", V(1, "m-pinned")),
            new FunctionEvents.Deleted("gone", DateTimeOffset.UnixEpoch),
            new FunctionEvents.Deleted("pinned", DateTimeOffset.UnixEpoch),
            new FunctionEvents.VersionAdded("again", V(1, "m-first")),
            new FunctionEvents.Deleted("again", DateTimeOffset.UnixEpoch),
            new FunctionEvents.VersionAdded("again", V(2, "m-second")),
        ];
        IEvent[] sessions =
        [
            new SessionEvents.Created("s1", "pinned", V(1, "m-pinned"), 0, DateTimeOffset.UnixEpoch),
            new SessionEvents.Created("s2", "gone", V(1, "m-gone", "l-gone"), 0, DateTimeOffset.UnixEpoch),
            new SessionEvents.Deleted("s2", DateTimeOffset.UnixEpoch),
        ];
        string[] stored = ["m-old", "l-old", "m-live", "m-gone", "l-gone", "m-pinned", "m-first", "m-second", "l-upload", "m-live"];

        Assert.Equal(["l-gone", "l-upload", "m-first", "m-gone"], StoredBytes.Unreferenced(stored, functions, sessions));
    }
}
