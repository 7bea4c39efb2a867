#!/usr/bin/env bash
# Builds guests, the solution, and the NativeAOT sandbox host (JIT fallback when AOT fails).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

guests/build.sh
dotnet build TrEnv.Cluster.sln -c "${CONFIGURATION:-Release}" -nologo -clp:ErrorsOnly -v:q
scripts/publish-host.sh
