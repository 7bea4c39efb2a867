namespace TrEnv.Contracts;

/// <summary>Names fixed by the guest ABI v1 (DESIGN.md section 3).</summary>
public static class GuestAbi
{
    public const int Version = 1;
    public const string Memory = "memory";
    public const string Initialize = "_initialize";
    public const string Init = "trenv_init";
    public const string Alloc = "trenv_alloc";
    public const string Handle = "trenv_handle";
    public const string Reseed = "trenv_reseed";
    public const string WasiModule = "wasi_snapshot_preview1";

    /// <summary>
    /// Optional import <c>trenv.error(ptr: i32, len: i32)</c>: the call in progress (trenv_handle or trenv_init) failed
    /// with this UTF-8 message. The guest then returns normally; the invocation answers 500 <c>exception</c> and the
    /// instance keeps serving (a script runtime's uncaught exception, not a trap).
    /// </summary>
    public const string ImportModule = "trenv";
    public const string ErrorImport = "error";

    /// <summary>Longest error message a guest may report; longer ones are cut.</summary>
    public const int MaxErrorBytes = 64 * 1024;

    /// <summary>Prefix of the exports the engine adds for mutable globals.</summary>
    public const string GlobalExportPrefix = "__trenv_global_";
}
