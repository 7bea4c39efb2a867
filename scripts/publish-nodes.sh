#!/usr/bin/env bash
# Publishes the three node programs ReadyToRun (precompiled, framework-dependent) into artifacts/nodes/, so a
# node started or restarted under load runs compiled code from its first request instead of JIT-compiling it.
# Incremental: a second run with nothing changed takes seconds. scripts/cluster.sh runs these when
# TRENV_NODES_DIR names this directory (run.sh and bench.sh set it); the tests run the plain build output.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
for node in coordinator:coordinator/TrEnv.Coordinator memory-pool:memory-pool/TrEnv.MemoryPool.Node worker:worker/TrEnv.Worker; do
  name=${node%%:*}
  dotnet publish "${node#*:}" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
    -o "artifacts/nodes/$name" -nologo -v:q -clp:ErrorsOnly
done
