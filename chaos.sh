#!/usr/bin/env bash
# The chaos soak: starts compose/docker-compose.yml's topology as local processes (PostgreSQL from apt, the
# memory pool, both coordinators, the workers each in its own network namespace when root), drives checked
# invocations and deploys through both coordinators, applies faults, and writes chaos/results/summary.json.
#   ./chaos.sh --rounds 10 --kill random --restart
#   ./chaos.sh --rounds 6 --kill worker --partition 4 --restart
# ./chaos.sh --help lists every knob. Exit status 0 means no invariant was violated.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
if [[ " $* " != *" --help "* && ${TRENV_CHAOS_NO_BUILD:-} != 1 ]]; then
  scripts/bootstrap.sh
  CONFIGURATION=Release scripts/build.sh
fi
exec dotnet chaos/TrEnv.Chaos/bin/Release/net10.0/trenv-chaos.dll "$@"
