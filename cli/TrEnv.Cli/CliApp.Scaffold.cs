using System.CommandLine;

namespace TrEnv.Cli;

/// <summary>trenv new: scaffolds a C guest (source, trenv.h, build script) in a new directory.</summary>
public sealed partial class CliApp
{
    private Command New()
    {
        var name = new Argument<string>("name") { Description = "Function name; a directory of that name is created" };
        var parent = new Option<DirectoryInfo?>("--dir") { Description = "Where to create it (default: the current directory)" };
        var command = new Command("new", "Scaffold a C guest (guest ABI v1) with its build script") { name, parent };
        command.SetAction(async (p, ct) =>
        {
            var fn = p.GetValue(name)!;
            if (fn.Length == 0 || fn.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_')))
                return Usage($"\"{fn}\" is not a function name: use letters, digits, - and _.");
            var dir = new DirectoryInfo(Path.Combine(p.GetValue(parent)?.FullName ?? Directory.GetCurrentDirectory(), fn));
            if (dir.Exists && dir.EnumerateFileSystemInfos().Any())
                return Usage($"{dir.FullName} exists and is not empty.");
            dir.Create();
            await using (var header = typeof(CliApp).Assembly.GetManifestResourceStream("trenv.h")!)
            await using (var file = File.Create(Path.Combine(dir.FullName, "trenv.h")))
                await header.CopyToAsync(file, ct);
            var c = fn.Replace('-', '_');
            await File.WriteAllTextAsync(Path.Combine(dir.FullName, fn + ".c"), $$"""
                /* {{fn}}: a TrEnv function (guest ABI v1). trenv_init runs once; its state becomes the template
                 * every later instance starts from. trenv_handle answers one request. */
                #include "trenv.h"

                static char greeting[64];

                TRENV_EXPORT("trenv_init") void trenv_init(void) {
                  /* Expensive initialisation goes here: tables, models, parsed data. */
                  memcpy(greeting, "{{c}} says: ", sizeof "{{c}} says: ");
                }

                TRENV_DEFAULT_ALLOC

                static char *out;
                static uint32_t out_cap;

                TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
                  uint32_t prefix = (uint32_t)strlen(greeting);
                  uint32_t need = prefix + (uint32_t)len;
                  if (need > out_cap) {
                    free(out);
                    out = malloc(need);
                    out_cap = out ? need : 0;
                    if (!out) __builtin_trap(); /* a trap is an error answer, never a wrong one */
                  }
                  memcpy(out, greeting, prefix);
                  memcpy(out + prefix, (const void *)(uintptr_t)ptr, (size_t)len);
                  return trenv_result(out, need);
                }

                """, ct);
            var build = Path.Combine(dir.FullName, "build.sh");
            await File.WriteAllTextAsync(build, $$"""
                #!/bin/sh
                # Builds {{fn}}.wasm as a WASI reactor (Debian: apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32).
                set -e
                cd "$(dirname "$0")"
                ${CC:-clang-14} --target=wasm32-wasi -O2 -mexec-model=reactor -mmutable-globals -I. -o {{fn}}.wasm {{fn}}.c
                echo "built {{fn}}.wasm; deploy it with: trenv deploy {{fn}} {{fn}}.wasm"

                """, ct);
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(build, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            stdout.WriteLine($"created {dir.FullName}: {fn}.c, trenv.h, build.sh");
            return ExitCodes.Ok;
        });
        return command;
    }
}
