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

    /// <summary>Prefix of the exports the engine adds for mutable globals.</summary>
    public const string GlobalExportPrefix = "__trenv_global_";
}
