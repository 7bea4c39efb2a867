using TrEnv.Contracts;
using Wasmtime;

namespace TrEnv.Engine;

/// <summary>
/// The platform's guest ABI (guests/CONTRACT.md): <c>trenv_init</c> once, then per call <c>trenv_alloc(len)</c>
/// for the input and <c>trenv_handle(ptr, len)</c>, whose i64 result packs the output's pointer and length.
/// </summary>
internal sealed class NativeGuest(FunctionInstance owner, GuestModule module, Instance instance) : IGuestAbi
{
    private readonly Func<int, int> _alloc = instance.GetFunction<int, int>(GuestAbi.Alloc)!;
    private readonly Func<int, int, long> _handle = instance.GetFunction<int, int, long>(GuestAbi.Handle)!;
    private readonly Action? _init = module.HasInit ? instance.GetAction(GuestAbi.Init) : null;
    private readonly Action? _reseed = module.HasReseed ? instance.GetAction(GuestAbi.Reseed) : null;

    public void Initialize(string? tmpDirectory) => _init?.Invoke();

    public byte[] Invoke(ReadOnlySpan<byte> input)
    {
        var ptr = _alloc(input.Length);
        input.CopyTo(owner.GuestSpan(ptr, input.Length, GuestAbi.Alloc));
        var result = _handle(ptr, input.Length);
        // What the guest reported through trenv.error wins over whatever it returned.
        if (owner.TakeGuestError("") is { } reported)
            throw reported;
        var length = (uint)result;
        if (length > (uint)owner.Options.MaxOutputBytes)
        {
            owner.Poison();
            throw new EngineException(ErrorKinds.Trap, $"trenv_handle returned {length} bytes of output; the limit is {owner.Options.MaxOutputBytes} bytes.");
        }
        return owner.GuestSpan((int)(uint)((ulong)result >> 32), (int)length, GuestAbi.Handle).ToArray();
    }

    public bool CanReseed => _reseed is not null;

    public void Reseed() => _reseed?.Invoke();
}
