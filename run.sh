#!/usr/bin/env bash
# Starts the platform. Until the cluster lands (issue 3) this is the engine demo: it builds everything,
# then drives hello and heavy through cold start, template capture, map restore and warm invocations
# in real sandbox host processes.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
scripts/bootstrap.sh
CONFIGURATION=Release scripts/build.sh
export TRENV_SANDBOX_HOST="$root/artifacts/sandbox-host"
exec dotnet bench/TrEnv.Bench/bin/Release/net10.0/trenv-bench.dll demo "$@"
