using TrEnv.Contracts;
using TrEnv.Coordinator.Registry;
using static TrEnv.Contracts.FunctionCommands;
using static TrEnv.Contracts.FunctionReplies;

namespace TrEnv.Tests;

public sealed class FunctionStateTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UnixEpoch;
    private static readonly string ShaA = new('a', 64), ShaB = new('b', 64);

    private static FunctionState Run(FunctionState s, IFunctionCommand c, out IFunctionReply reply)
    {
        var (r, e) = s.Process(c, Now);
        reply = r;
        return e is null ? s : s.Apply(e);
    }

    [Fact]
    public void Redeploying_the_same_bytes_and_limits_is_idempotent()
    {
        var s = Run(FunctionState.Empty("f"), new Deploy("f", ShaA, 10, FunctionLimits.Default), out var first);
        var again = s.Process(new Deploy("f", ShaA, 10, FunctionLimits.Default), Now);
        Assert.Equal(new Deployed("f", 1, ShaA, true), first);
        Assert.Equal(new Deployed("f", 1, ShaA, false), again.Reply);
        Assert.Null(again.Event);
    }

    [Fact]
    public void New_bytes_or_new_limits_make_a_new_version()
    {
        var s = Run(FunctionState.Empty("f"), new Deploy("f", ShaA, 10, FunctionLimits.Default), out _);
        s = Run(s, new Deploy("f", ShaB, 10, FunctionLimits.Default), out var second);
        s = Run(s, new Deploy("f", ShaB, 10, FunctionLimits.Default with { MemoryMb = 512 }), out var third);
        Assert.Equal(2, ((Deployed)second).Version);
        Assert.Equal(3, ((Deployed)third).Version);
        Assert.Equal(512, s.Current!.Limits.MemoryMb);
        Assert.Equal(3, s.Versions.Count);
    }

    [Fact]
    public void Delete_hides_the_function_and_a_later_deploy_continues_the_numbering()
    {
        var s = Run(FunctionState.Empty("f"), new Deploy("f", ShaA, 10, FunctionLimits.Default), out _);
        s = Run(s, new FunctionCommands.Delete("f"), out var deleted);
        Assert.Equal(new FunctionReplies.Deleted("f", true), deleted);
        Assert.Null(s.Current);
        s = Run(s, new FunctionCommands.Delete("f"), out var twice);
        Assert.Equal(new FunctionReplies.Deleted("f", false), twice);
        s = Run(s, new Deploy("f", ShaA, 10, FunctionLimits.Default), out var back);
        Assert.Equal(new Deployed("f", 2, ShaA, true), back);
    }

    [Fact]
    public void Env_differences_count_as_different_limits()
    {
        var a = FunctionLimits.Default with { Env = new Dictionary<string, string> { ["K"] = "1" } };
        var b = FunctionLimits.Default with { Env = new Dictionary<string, string> { ["K"] = "2" } };
        Assert.False(a.SameAs(b));
        Assert.True(a.SameAs(a with { Env = new Dictionary<string, string> { ["K"] = "1" } }));
    }
}
