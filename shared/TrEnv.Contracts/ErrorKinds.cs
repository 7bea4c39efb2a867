namespace TrEnv.Contracts;

/// <summary>The error kinds of the HTTP contract plus the engine's own; each maps to one status.</summary>
public static class ErrorKinds
{
    public const string Trap = "trap";
    /// <summary>The guest reported a failure through trenv.error (a script's uncaught exception); its instance is intact.</summary>
    public const string Exception = "exception";
    public const string Timeout = "timeout";
    public const string Memory = "memory";
    public const string InvalidModule = "invalid_module";
    public const string InputTooLarge = "input_too_large";
    public const string TemplateInvalid = "template_invalid";
    public const string NotLoaded = "not_loaded";
    public const string SandboxCrashed = "sandbox_crashed";
    public const string Internal = "internal";
    /// <summary>The worker is at its sandbox or memory bound with nothing idle to give up; retry shortly.</summary>
    public const string NoCapacity = "no_capacity";
    /// <summary>A session's instance is gone with everything since its last pause (its worker died, or the guest trapped).</summary>
    public const string SessionLost = "session_lost";
    /// <summary>Paused sessions already hold their share of the pool: the pause is refused and the session stays active.</summary>
    public const string PoolQuota = "pool_quota";

    // The API's own refusals.
    public const string NotFound = "not_found";
    public const string BadRequest = "bad_request";
    public const string Unauthorized = "unauthorized";

    /// <summary>Nothing can take the request right now (no worker has room, a registry did not answer); retry shortly.</summary>
    public const string Unavailable = "unavailable";
    public const string Conflict = "conflict";
    public const string InvalidLayer = "invalid_layer";
    public const string RequestTimeout = "request_timeout";
    public const string TooManySessions = "too_many_sessions";

    public static int HttpStatus(string kind) => kind switch
    {
        Trap => 500,
        Timeout => 504,
        Memory or PoolQuota => 507,
        InvalidModule => 422,
        InputTooLarge => 413,
        SandboxCrashed or NoCapacity => 503,
        SessionLost => 410,
        _ => 500,
    };
}
