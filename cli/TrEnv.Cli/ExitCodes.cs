using TrEnv.Contracts;

namespace TrEnv.Cli;

/// <summary>Exit codes: one per HTTP error kind, so scripts can tell a trap from a timeout without parsing text.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int Usage = 2;
    public const int NotFound = 3;
    public const int Invalid = 4;
    public const int Trap = 5;
    public const int Timeout = 6;
    public const int Memory = 7;
    public const int Unavailable = 8;
    public const int Unauthorized = 9;
    public const int TooLarge = 10;
    public const int Unreachable = 11;
    public const int SessionLost = 12;

    /// <summary>The exit code for an error answer: by its kind when the coordinator named one, else by status.</summary>
    public static int For(int status, string? kind) => kind switch
    {
        ErrorKinds.NotFound => NotFound,
        ErrorKinds.InvalidModule or ErrorKinds.InvalidLayer or ErrorKinds.BadRequest => Invalid,
        ErrorKinds.Trap or ErrorKinds.Exception => Trap,
        ErrorKinds.Timeout => Timeout,
        ErrorKinds.Memory => Memory,
        ErrorKinds.NoCapacity or ErrorKinds.SandboxCrashed or ErrorKinds.Unavailable => Unavailable,
        ErrorKinds.Unauthorized => Unauthorized,
        ErrorKinds.InputTooLarge => TooLarge,
        ErrorKinds.SessionLost => SessionLost,
        _ => status switch
        {
            404 => NotFound,
            400 or 422 => Invalid,
            401 or 403 => Unauthorized,
            413 => TooLarge,
            503 => Unavailable,
            504 => Timeout,
            507 => Memory,
            410 => SessionLost,
            _ => Failed,
        },
    };

    public const string Table = """
        exit codes: 0 ok, 1 other failure, 2 usage, 3 not found, 4 invalid (module, layer, request), 5 trap,
        6 timeout, 7 memory limit, 8 unavailable or no capacity (retry), 9 unauthorized, 10 too large,
        11 coordinator unreachable, 12 session lost
        """;
}
