using TrEnv.Contracts;

namespace TrEnv.Engine;

/// <summary>A failure with an error kind from <see cref="ErrorKinds"/> and a sentence a user can act on.</summary>
public class EngineException(string kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public string Kind { get; } = kind;
}

public sealed class InvalidModuleException(string message, Exception? inner = null)
    : EngineException(ErrorKinds.InvalidModule, message, inner);

public sealed class TemplateInvalidException(string message, Exception? inner = null)
    : EngineException(ErrorKinds.TemplateInvalid, message, inner);
