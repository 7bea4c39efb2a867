using TrEnv.Coordinator.Sessions;

namespace TrEnv.Tests;

public sealed class SessionAdmissionTests
{
    private long _now;

    private SessionAdmission Admission(int percent = 50, int perFunction = 32) => new(percent, perFunction, () => _now);

    [Fact]
    public void Sessions_take_at_most_their_share_of_the_sandboxes_counting_admissions_the_catalog_does_not_show_yet()
    {
        var admission = Admission();
        var active = new List<(string, string)>();
        for (var i = 0; i < 8; i++)
            Assert.Null(admission.TryAdmit($"s{i}", "f", 16, active));
        var refused = admission.TryAdmit("s8", "g", 16, active);
        Assert.Contains("8 of the 8 sandboxes", refused, StringComparison.Ordinal);
        Assert.Contains("TRENV_SESSION_SANDBOX_PERCENT", refused, StringComparison.Ordinal);
    }

    [Fact]
    public void An_admission_shown_by_the_catalog_is_not_counted_twice_and_a_forgotten_one_frees_its_place()
    {
        var admission = Admission();
        Assert.Null(admission.TryAdmit("a", "f", 4, []));
        Assert.Null(admission.TryAdmit("b", "f", 4, [("a", "f")]));
        Assert.NotNull(admission.TryAdmit("c", "f", 4, [("a", "f")]));
        admission.Forget("b");
        Assert.Null(admission.TryAdmit("c", "f", 4, [("a", "f")]));
        // A session already active is admitted again (a resume of an active session takes nothing new).
        Assert.Null(admission.TryAdmit("a", "f", 4, [("a", "f"), ("c", "f")]));
    }

    [Fact]
    public void An_admission_the_catalog_records_in_any_state_stops_counting()
    {
        var admission = Admission();
        Assert.Null(admission.TryAdmit("a", "f", 4, []));
        Assert.Null(admission.TryAdmit("b", "f", 4, []));
        Assert.NotNull(admission.TryAdmit("c", "f", 4, []));
        // "a" was recorded (then paused or deleted): only the catalog's active list speaks for it now.
        Assert.Null(admission.TryAdmit("c", "f", 4, [], id => id == "a"));
    }

    [Fact]
    public void Each_function_has_its_own_cap_and_stale_admissions_expire()
    {
        var admission = Admission(perFunction: 2);
        Assert.Null(admission.TryAdmit("a", "f", 100, []));
        Assert.Null(admission.TryAdmit("b", "f", 100, []));
        Assert.Contains("TRENV_SESSIONS_PER_FUNCTION=2", admission.TryAdmit("c", "f", 100, []), StringComparison.Ordinal);
        Assert.Null(admission.TryAdmit("d", "g", 100, []));
        _now += SessionAdmission.PendingMs + 1;
        Assert.Null(admission.TryAdmit("c", "f", 100, []));
    }

    [Fact]
    public void No_sandboxes_or_a_zero_share_admits_nothing()
    {
        Assert.NotNull(Admission().TryAdmit("a", "f", 0, []));
        Assert.NotNull(Admission(percent: 0).TryAdmit("a", "f", 64, []));
    }
}
