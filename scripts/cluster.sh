#!/usr/bin/env bash
# Starts a local cluster as separate processes: one memory-pool node, coordinator(s) and workers.
# Used by run.sh and bench.sh. Environment: TRENV_HTTP_PORT (8080), TRENV_WORKERS (2),
# TRENV_CLUSTER_DIR (.trenv), TRENV_POOL_PATH (/dev/shm/trenv/pool), TRENV_BASE_PORT (4053; the pool's
# gRPC service listens on TRENV_BASE_PORT-1 unless TRENV_POOL_GRPC_PORT says otherwise).
# Writes the PIDs to $TRENV_CLUSTER_DIR/pids and each node's output to $TRENV_CLUSTER_DIR/NODE.log.
# `scripts/cluster.sh coordinator NAME AKKA_PORT HTTP_PORT [VAR=VALUE...]` adds one more coordinator to the cluster
# started with the same environment (its PID appended to pids and printed), with VAR=VALUE in its environment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${TRENV_CLUSTER_DIR:-$root/.trenv}
http=${TRENV_HTTP_PORT:-8080}
workers=${TRENV_WORKERS:-2}
base=${TRENV_BASE_PORT:-4053}
cfg=${CONFIGURATION:-Release}
mkdir -p "$dir"
# The pool node is a second seed: a restarted coordinator-1 (the first seed) joins the running cluster through
# it instead of forming a cluster of its own.
export TRENV_SEEDS="akka.tcp://trenv@127.0.0.1:$base,akka.tcp://trenv@127.0.0.1:$((base + 1))"
export TRENV_POOL_PATH=${TRENV_POOL_PATH:-/dev/shm/trenv/pool}
export TRENV_SANDBOX_HOST=${TRENV_SANDBOX_HOST:-$root/artifacts/sandbox-host}
# The pool service's gRPC port sits just below the Akka ports, so clusters on other base ports do not collide.
export TRENV_POOL_GRPC_PORT=${TRENV_POOL_GRPC_PORT:-$((base - 1))}
export TRENV_POOL_URL=${TRENV_POOL_URL:-http://127.0.0.1:$TRENV_POOL_GRPC_PORT}

start() { # name, dll, extra env...
  local name=$1 dll=$2; shift 2
  [[ $dll == /* ]] || dll=$root/$dll
  env "$@" TRENV_NODE_NAME="$name" TRENV_DATA_DIR="$dir/$name" dotnet "$dll" >"$dir/$name.log" 2>&1 &
  echo $! >> "$dir/pids"
}

# TRENV_NODES_DIR: the ReadyToRun nodes scripts/publish-nodes.sh leaves (run.sh and bench.sh); else the build output.
if [[ -n ${TRENV_NODES_DIR:-} ]]; then
  coordinator=$TRENV_NODES_DIR/coordinator/trenv-coordinator.dll pool=$TRENV_NODES_DIR/memory-pool/trenv-memory-pool.dll
  worker=$TRENV_NODES_DIR/worker/trenv-worker.dll
else
  coordinator=coordinator/TrEnv.Coordinator/bin/$cfg/net10.0/trenv-coordinator.dll
  pool=memory-pool/TrEnv.MemoryPool.Node/bin/$cfg/net10.0/trenv-memory-pool.dll
  worker=worker/TrEnv.Worker/bin/$cfg/net10.0/trenv-worker.dll
fi
if [[ ${1:-} == coordinator ]]; then
  [[ $# -ge 4 ]] || { echo "usage: scripts/cluster.sh coordinator NAME AKKA_PORT HTTP_PORT [VAR=VALUE...]" >&2; exit 2; }
  start "$2" "$coordinator" TRENV_PORT="$3" TRENV_HTTP_PORT="$4" "${@:5}"
  tail -n 1 "$dir/pids"
  exit 0
fi
: > "$dir/pids"
start coordinator-1 "$coordinator" TRENV_PORT=$base TRENV_HTTP_PORT=$http
start memory-pool "$pool" TRENV_PORT=$((base + 1))
for i in $(seq 1 "$workers"); do
  start "worker-$i" "$worker" TRENV_PORT=$((base + 1 + i))
done
