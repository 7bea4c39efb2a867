#!/usr/bin/env bash
# Benchmarks. `./bench.sh startup [--samples N] [--pss-instances N] [--out FILE]` measures the start paths
# (cold, copy-restore, map-restore, warm) for hello and heavy and writes bench/results/startup.json.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
what=${1:-}
case "$what" in
  startup) shift ;;
  *) echo "usage: ./bench.sh startup [--samples N] [--pss-instances N] [--out FILE]" >&2; exit 2 ;;
esac
scripts/bootstrap.sh
CONFIGURATION=Release scripts/build.sh >/dev/null
export TRENV_SANDBOX_HOST="$root/artifacts/sandbox-host"
exec dotnet bench/TrEnv.Bench/bin/Release/net10.0/trenv-bench.dll startup "$@"
