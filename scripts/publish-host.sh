#!/usr/bin/env bash
# Publishes the sandbox host to artifacts/sandbox-host: NativeAOT when the toolchain allows,
# otherwise the JIT build. Prints which one it made; the worker reads artifacts/sandbox-host/KIND.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=artifacts/sandbox-host
proj=worker/TrEnv.SandboxHost/TrEnv.SandboxHost.csproj
stamp=$out/.stamp
newest=$(find worker/TrEnv.SandboxHost worker/TrEnv.Engine worker/TrEnv.Sandbox shared memory-pool \( -name '*.cs' -o -name '*.csproj' -o -name '*.c' \) -not -path '*/obj/*' -not -path '*/bin/*' | xargs ls -t | head -1)
if [[ -f $stamp && ! $newest -nt $stamp && -x $out/TrEnv.SandboxHost ]]; then
  exit 0
fi
rm -rf "$out"
if [[ ${TRENV_NO_AOT:-0} != 1 ]] && dotnet publish "$proj" -c Release -r linux-x64 -o "$out" -nologo -v:q \
     -p:PublishAot=true -p:CppCompilerAndLinker=clang-14 -p:StripSymbols=true >"$root/artifacts/publish-host.log" 2>&1; then
  echo aot > "$out/KIND"
else
  echo "publish-host: NativeAOT publish failed (see artifacts/publish-host.log); using the JIT host" >&2
  rm -rf "$out"
  dotnet publish "$proj" -c Release -o "$out" -nologo -v:q -p:PublishAot=false >/dev/null
  echo jit > "$out/KIND"
fi
touch "$stamp"
echo "publish-host: $(cat "$out/KIND") sandbox host in $out"
