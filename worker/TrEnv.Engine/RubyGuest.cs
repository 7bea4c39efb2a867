using System.Text;
using TrEnv.Contracts;
using Wasmtime;

namespace TrEnv.Engine;

/// <summary>
/// Drives ruby.wasm (npm @ruby/3.4-wasm-wasi, the Ruby runtime) through its own exports, whose names are wit
/// signatures, in place of the trenv_* ABI: init boots the VM and evaluates the script (/tmp/main.rb) and a
/// prelude defining <c>__trenv_call</c>; each invocation evaluates <c>__trenv_call("…")</c> with the request as an
/// escaped literal and reads the answer back; reseed evaluates <c>Random.srand</c>. All of its state is in linear
/// memory (handles are the Ruby values themselves), so templates capture and restore it like any guest.
/// </summary>
internal sealed class RubyGuest : IGuestAbi
{
    private const string Init = "ruby-init:", Eval = "rb-eval-string-protect:", StringPtr = "rstring-ptr:";
    private const string Realloc = "cabi_realloc", PostStringPtr = "cabi_post_rstring-ptr", Drop = "canonical_abi_drop_rb-abi-value";
    private const string ScriptFile = "main.rb";

    // Every answer starts with 0 (the handler's bytes follow) or 1 (an exception's full message follows).
    private const string Prelude = """
        $stdout.sync = true
        $stderr.sync = true
        def __trenv_call(request)
          result = handle(request)
          "\x00".b + (result.nil? ? "" : (String === result ? result : result.to_s)).b
        rescue Exception => e
          $stderr.write(e.full_message(highlight: false))
          "\x01".b + "#{e.class}: #{e.message}".b
        end
        nil
        """;

    private readonly Memory _memory;
    private readonly Func<int, int, int, int, int> _realloc;
    private readonly Func<int, int, int> _eval;
    private readonly Func<int, int> _stringPtr;
    private readonly Action<int> _postStringPtr;
    private readonly Action<int> _drop;
    private readonly Action<int, int> _init;

    public static bool Is(IEnumerable<string> exports)
    {
        bool init = false, eval = false;
        foreach (var name in exports)
        {
            init |= name.StartsWith(Init, StringComparison.Ordinal);
            eval |= name.StartsWith(Eval, StringComparison.Ordinal);
        }
        return init && eval;
    }

    /// <summary>Import modules the adapter satisfies (besides WASI): the canonical ABI's handle table, and JS interop as traps.</summary>
    public static bool Provides(string module) => module is GuestAbi.WasiModule or "canonical_abi" or "rb-js-abi-host";

    /// <summary>Defines the non-WASI imports of <paramref name="module"/> on the engine's linker, once per name.</summary>
    public static void DefineImports(Linker linker, Module module, HashSet<string> defined)
    {
        lock (defined)
        {
            foreach (var import in module.Imports.OfType<FunctionImport>())
            {
                var key = import.ModuleName + "\0" + import.Name;
                if (import.ModuleName == GuestAbi.WasiModule || !defined.Add(key))
                    continue;
                if (import.ModuleName == "canonical_abi" && import.Name.StartsWith("resource_drop_", StringComparison.Ordinal))
                    linker.DefineFunction(import.ModuleName, import.Name, (int _) => { });
                else if (import.ModuleName == "canonical_abi")
                    // The handle table is the identity: a handle is the Ruby value, so there is no host state to lose on restore.
                    linker.DefineFunction(import.ModuleName, import.Name, (int value) => value);
                else
                    linker.DefineFunction(import.ModuleName, import.Name,
                        (Caller _, ReadOnlySpan<ValueBox> _, Span<ValueBox> _) => throw new InvalidOperationException("JavaScript interop (require \"js\") is not available in TrEnv."),
                        import.Parameters, import.Results);
            }
        }
    }

    private readonly int _maxOutputBytes;

    public RubyGuest(Instance instance, Memory memory, IEnumerable<string> exports, int maxOutputBytes)
    {
        _memory = memory;
        _maxOutputBytes = maxOutputBytes;
        var names = exports.ToList();
        string Named(string prefix) => names.FirstOrDefault(n => n.StartsWith(prefix, StringComparison.Ordinal))
            ?? throw new EngineException(ErrorKinds.InvalidModule, $"The Ruby module does not export {prefix}.");
        _realloc = instance.GetFunction<int, int, int, int, int>(Realloc) ?? throw new EngineException(ErrorKinds.InvalidModule, $"The Ruby module does not export {Realloc}.");
        _eval = instance.GetFunction<int, int, int>(Named(Eval))!;
        _stringPtr = instance.GetFunction<int, int>(Named(StringPtr))!;
        _postStringPtr = instance.GetAction<int>(PostStringPtr)!;
        _drop = instance.GetAction<int>(Drop)!;
        _init = instance.GetAction<int, int>(Named(Init))!;
    }

    /// <summary>Boots the VM and runs the script's top level, then the prelude; a failure is the script's exception.</summary>
    public void Initialize(string? tmpDirectory)
    {
        var args = new[] { "ruby", "-EUTF-8", "-e_=0" };
        var list = Alloc(8 * args.Length);
        for (var i = 0; i < args.Length; i++)
        {
            var bytes = Encoding.UTF8.GetBytes(args[i] + "\0"); // the guest hands them to C as argv
            var at = Alloc(bytes.Length);
            bytes.CopyTo(_memory.GetSpan(at, bytes.Length));
            _memory.WriteInt32(list + 8 * i, at);
            _memory.WriteInt32(list + 8 * i + 4, bytes.Length);
        }
        _init(list, args.Length);

        var path = tmpDirectory is null ? null : Path.Combine(tmpDirectory, ScriptFile);
        if (path is null || !File.Exists(path))
            throw new EngineException(ErrorKinds.Exception, $"The function's initialisation failed: there is no /tmp/{ScriptFile} to run.");
        // Evaluated under its own file name, so backtraces point into main.rb; the answer is "" or why it failed.
        var script = File.ReadAllBytes(path);
        var code = new List<byte>();
        code.AddRange("begin\n  Kernel.eval("u8.ToArray());
        code.AddRange(Literal(script));
        code.AddRange(Encoding.UTF8.GetBytes($"""
            .force_encoding(Encoding::UTF_8), TOPLEVEL_BINDING, "/tmp/{ScriptFile}", 1)
              (Object.private_method_defined?(:handle) || Object.method_defined?(:handle)) ? "".b : "{ScriptFile} defines no handle(request) method.".b
            rescue Exception => e
              $stderr.write(e.full_message(highlight: false))
              "{ScriptFile} failed at its top level: #{"{"}e.class{"}"}: #{"{"}e.message{"}"}".b
            end
            """));
        var (value, status) = Evaluate([.. code]);
        if (status != 0)
            throw new EngineException(ErrorKinds.Exception, $"The function's initialisation failed: {ScriptFile} could not be evaluated.");
        var failure = ReadString(value);
        _drop(value);
        if (failure.Length > 0)
            throw new EngineException(ErrorKinds.Exception, "The function's initialisation failed: " + Encoding.UTF8.GetString(failure));
        (value, status) = Evaluate(Encoding.UTF8.GetBytes(Prelude));
        if (status != 0)
            throw new EngineException(ErrorKinds.Internal, "The Ruby adapter's prelude failed.");
        _drop(value);
    }

    /// <summary>Calls handle(request); returns its bytes, or throws <c>exception</c> with the Ruby exception's class and message.</summary>
    public byte[] Invoke(ReadOnlySpan<byte> input)
    {
        var code = new List<byte>(input.Length + 32);
        code.AddRange("__trenv_call("u8.ToArray());
        code.AddRange(Literal(input));
        code.Add((byte)')');
        var (value, status) = Evaluate([.. code]);
        if (status != 0)
            throw new EngineException(ErrorKinds.Exception, "The Ruby handler failed outside handle (a syntax or VM error).");
        try
        {
            var answer = ReadString(value);
            if (answer.Length == 0)
                throw new EngineException(ErrorKinds.Internal, "The Ruby adapter returned nothing.");
            if (answer[0] != 0)
                throw new EngineException(ErrorKinds.Exception, Encoding.UTF8.GetString(answer, 1, answer.Length - 1));
            if (answer.Length - 1 > _maxOutputBytes)
                throw new EngineException(ErrorKinds.Trap, $"handle returned {answer.Length - 1} bytes of output; the limit is {_maxOutputBytes} bytes.");
            return answer[1..];
        }
        finally
        {
            _drop(value);
        }
    }

    public bool CanReseed => true;

    /// <summary>After a restore: a new random state, so restored instances do not share a sequence.</summary>
    public void Reseed()
    {
        var (value, _) = Evaluate("Random.srand; nil"u8.ToArray());
        _drop(value);
    }

    private (int Value, int Status) Evaluate(byte[] code)
    {
        var at = Write(code);
        var result = _eval(at, code.Length);
        return (_memory.ReadInt32(result), _memory.ReadInt32(result + 4) & 0xF);
    }

    private byte[] ReadString(int value)
    {
        var result = _stringPtr(value);
        var (at, length) = (_memory.ReadInt32(result), _memory.ReadInt32(result + 4));
        var bytes = _memory.GetSpan(at, length).ToArray();
        _postStringPtr(result);
        return bytes;
    }

    private int Alloc(int length) => _realloc(0, 0, 1, Math.Max(1, length));

    // The guest never frees argument buffers: one buffer, grown with realloc, carries every evaluated code string.
    private int _buffer;
    private int _bufferLength;

    private int Write(byte[] bytes)
    {
        if (bytes.Length > _bufferLength || _buffer == 0)
        {
            _buffer = _realloc(_buffer, _bufferLength, 1, Math.Max(1, bytes.Length));
            _bufferLength = Math.Max(1, bytes.Length);
        }
        bytes.CopyTo(_memory.GetSpan(_buffer, bytes.Length));
        return _buffer;
    }

    // A double-quoted Ruby literal of exactly these bytes (binary): printable ASCII passes, except the quote,
    // backslash and '#' (interpolation); every other byte is \xHH, so no encoding or newline rule can alter it.
    private static byte[] Literal(ReadOnlySpan<byte> bytes)
    {
        var literal = new List<byte>(bytes.Length + 8) { (byte)'"' };
        foreach (var b in bytes)
        {
            if (b is >= 0x20 and <= 0x7E && b is not ((byte)'"' or (byte)'\\' or (byte)'#'))
            {
                literal.Add(b);
                continue;
            }
            literal.Add((byte)'\\');
            literal.Add((byte)'x');
            literal.Add((byte)"0123456789abcdef"[b >> 4]);
            literal.Add((byte)"0123456789abcdef"[b & 0xF]);
        }
        literal.AddRange("\".b"u8.ToArray());
        return [.. literal];
    }
}
