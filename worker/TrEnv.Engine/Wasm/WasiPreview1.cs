namespace TrEnv.Engine.Wasm;

/// <summary>
/// The functions of <c>wasi_snapshot_preview1</c> that the host links, with their core signatures. A deploy whose
/// module imports another name, or one of these with another type, could never be instantiated.
/// </summary>
public static class WasiPreview1
{
    private const byte I = 0x7F, L = 0x7E;

    private static readonly Dictionary<string, FuncType> Functions = new(StringComparer.Ordinal)
    {
        ["args_get"] = F(I, I),
        ["args_sizes_get"] = F(I, I),
        ["environ_get"] = F(I, I),
        ["environ_sizes_get"] = F(I, I),
        ["clock_res_get"] = F(I, I),
        ["clock_time_get"] = F(I, L, I),
        ["fd_advise"] = F(I, L, L, I),
        ["fd_allocate"] = F(I, L, L),
        ["fd_close"] = F(I),
        ["fd_datasync"] = F(I),
        ["fd_fdstat_get"] = F(I, I),
        ["fd_fdstat_set_flags"] = F(I, I),
        ["fd_fdstat_set_rights"] = F(I, L, L),
        ["fd_filestat_get"] = F(I, I),
        ["fd_filestat_set_size"] = F(I, L),
        ["fd_filestat_set_times"] = F(I, L, L, I),
        ["fd_pread"] = F(I, I, I, L, I),
        ["fd_prestat_get"] = F(I, I),
        ["fd_prestat_dir_name"] = F(I, I, I),
        ["fd_pwrite"] = F(I, I, I, L, I),
        ["fd_read"] = F(I, I, I, I),
        ["fd_readdir"] = F(I, I, I, L, I),
        ["fd_renumber"] = F(I, I),
        ["fd_seek"] = F(I, L, I, I),
        ["fd_sync"] = F(I),
        ["fd_tell"] = F(I, I),
        ["fd_write"] = F(I, I, I, I),
        ["path_create_directory"] = F(I, I, I),
        ["path_filestat_get"] = F(I, I, I, I, I),
        ["path_filestat_set_times"] = F(I, I, I, I, L, L, I),
        ["path_link"] = F(I, I, I, I, I, I, I),
        ["path_open"] = F(I, I, I, I, I, L, L, I, I),
        ["path_readlink"] = F(I, I, I, I, I, I),
        ["path_remove_directory"] = F(I, I, I),
        ["path_rename"] = F(I, I, I, I, I, I),
        ["path_symlink"] = F(I, I, I, I, I),
        ["path_unlink_file"] = F(I, I, I),
        ["poll_oneoff"] = F(I, I, I, I),
        ["proc_exit"] = new FuncType([I], []),
        ["proc_raise"] = F(I),
        ["sched_yield"] = F(),
        ["random_get"] = F(I, I),
        ["sock_accept"] = F(I, I, I),
        ["sock_recv"] = F(I, I, I, I, I, I),
        ["sock_send"] = F(I, I, I, I, I),
        ["sock_shutdown"] = F(I, I),
    };

    /// <summary>Every linked function and its signature.</summary>
    public static IReadOnlyDictionary<string, FuncType> All => Functions;

    /// <summary>The signature the host links under <paramref name="name"/>, or null when it links none.</summary>
    public static FuncType? Find(string name) => Functions.GetValueOrDefault(name);

    // An errno-returning function: its parameters, then one i32 result.
    private static FuncType F(params byte[] parameters) => new(parameters, [I]);
}
