#!/usr/bin/env bash
# Benchmarks. `./bench.sh startup [--samples N] [--pss-instances N] [--out FILE]` measures the start paths
# (cold, copy-restore, map-restore, warm) for hello and heavy and writes bench/results/startup.json.
# `./bench.sh e2e [--samples N]` measures heavy's starts and hello's throughput over HTTP (bench/results/e2e.json).
# `./bench.sh restart` runs only e2e's coordinator restart under load (printed, not written).
# `./bench.sh sandbox [--samples N]` measures sandbox create vs repurpose, SWITCH vs NEW starts over HTTP,
# idle sandbox memory and how many fit in 4 GiB (bench/results/sandbox.json).
# `./bench.sh pool [--samples N]` restores heavy on a node that never saw it: CXL map, rdma eager, lazy,
# prefetch and copy, through a memory-pool node it starts (bench/results/pool.json).
# `./bench.sh runtimes [--samples N]` measures the Python sample tools end to end (cold, template on a
# repurposed sandbox, warm) and the PSS of 16 live instances with and without a template (bench/results/runtimes.json).
# `./bench.sh agent [--samples N]` runs a synthetic agent trace against sessions of the Python analyst tool and of
# heavy on a two-worker cluster: calls, pauses, resumes, stored bytes and live PSS (bench/results/agent.json).
# `./bench.sh peer [FILE]` serves hello through Cloudflare's workerd and through ./run.sh's topology, loads both with
# wrk at concurrency 16 and 64, and writes requests/s, p50, p99 and their ratio (scripts/peer-bench.sh; bench/results/peer.json).
# `./bench.sh images` times the compose images: the first build from nothing and a rebuild after a code change
# (scripts/image-times.sh; bench/results/images.json).
# `./bench.sh report` runs all four with quick settings into bench/results/report-data/ and writes
# bench/results/report.md with PNG plots in bench/results/plots/ (latency CDF per start kind, PSS against
# live instances, restore time against template size).
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
what=${1:-}
if [[ $what == images ]]; then
  exec scripts/image-times.sh "${@:2}"
fi
case "$what" in
  startup|e2e|restart|sandbox|pool|runtimes|agent|report|peer) shift ;;
  *) echo "usage: ./bench.sh images | startup [--samples N] [--pss-instances N] [--sizes MIB,...] [--out FILE] | e2e [--samples N] | restart | sandbox [--samples N] | pool [--samples N] | runtimes [--samples N] | agent [--samples N] | peer [FILE] | report" >&2; exit 2 ;;
esac
if [[ -z ${TRENV_BENCH_NO_BUILD:-} ]]; then
  scripts/bootstrap.sh
  CONFIGURATION=Release scripts/build.sh >/dev/null
  scripts/publish-nodes.sh
  if [[ $what == runtimes || $what == agent ]]; then scripts/build-python.sh; fi
fi
export TRENV_SANDBOX_HOST="$root/artifacts/sandbox-host"
# The clusters benchmarks start run the ReadyToRun nodes, as run.sh does, when they are as new as the build.
if [[ artifacts/nodes/coordinator/trenv-coordinator.dll -nt coordinator/TrEnv.Coordinator/bin/Release/net10.0/trenv-coordinator.dll ]]; then
  export TRENV_NODES_DIR="$root/artifacts/nodes"
fi
if [[ $what == peer ]]; then
  exec scripts/peer-bench.sh "$@"
fi
bench=bench/TrEnv.Bench/bin/Release/net10.0/trenv-bench.dll
if [[ $what == report ]]; then
  data=bench/results/report-data
  mkdir -p "$data"
  export TRENV_BENCH_NO_BUILD=1
  ./bench.sh startup --samples 10 --pss-instances 64 --sizes 1,4,16,64,256 --out "$data/startup.json"
  TRENV_BENCH_SECONDS=3 TRENV_TRACING_ROUNDS=6 TRENV_TRACING_SECONDS=3 ./bench.sh e2e --samples 15 --out "$data/e2e.json"
  ./bench.sh sandbox --samples 10 --out "$data/sandbox.json"
  ./bench.sh pool --samples 10 --out "$data/pool.json"
  exec dotnet "$bench" report "$data" bench/results/report.md
fi
if [[ $what == startup ]]; then
  exec dotnet "$bench" startup "$@"
fi
if [[ $what == pool ]]; then
  # A memory-pool node of its own (it forms a one-node cluster) serving gRPC on a port apart from run.sh's.
  dir=$(mktemp -d /tmp/trenv-pool.XXXXXX)
  export TRENV_POOL_PATH=/dev/shm/trenv-poolbench-$$/pool TRENV_POOL_SIZE_MB=1024 TRENV_POOL_GRPC_PORT=${TRENV_POOL_GRPC_PORT:-4289}
  export TRENV_POOL_URL="http://127.0.0.1:$TRENV_POOL_GRPC_PORT"
  TRENV_NODE_NAME=memory-pool TRENV_PORT=4290 TRENV_DATA_DIR="$dir" \
    dotnet memory-pool/TrEnv.MemoryPool.Node/bin/Release/net10.0/trenv-memory-pool.dll >"$dir/memory-pool.log" 2>&1 &
  pool=$!
  trap 'kill $pool 2>/dev/null; wait $pool 2>/dev/null; rm -rf "$dir" "$(dirname "$TRENV_POOL_PATH")"' EXIT
  for _ in $(seq 1 120); do
    grep -q "gRPC on" "$dir/memory-pool.log" 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$TRENV_POOL_GRPC_PORT) 2>/dev/null && break
    sleep 0.5
  done
  dotnet "$bench" pool "$@"
  exit
fi

# e2e: wrk generates the throughput load when it can be installed (Debian package wrk).
command -v wrk >/dev/null || { [[ $(id -u) -eq 0 ]] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 || true; }

# e2e: a cluster of its own (one coordinator, one worker, the pool), on ports apart from run.sh's.
export TRENV_CLUSTER_DIR=$(mktemp -d /tmp/trenv-$what.XXXXXX)
if [[ $what == sandbox ]]; then
  # One sandbox slot and none pre-started: heavy's starts are a SWITCH or a NEW, as each sample asks.
  export TRENV_MAX_SANDBOXES=1 TRENV_PRESTART_SANDBOXES=0
fi
if [[ $what == agent ]]; then
  # Two workers, so sessions resume wherever placement puts them; sessions pause explicitly, never by the clock.
  export TRENV_WORKERS=${TRENV_WORKERS:-2}
fi
export TRENV_HTTP_PORT=${TRENV_HTTP_PORT:-8190} TRENV_BASE_PORT=${TRENV_BASE_PORT:-4190} TRENV_WORKERS=${TRENV_WORKERS:-1}
export TRENV_POOL_PATH=/dev/shm/trenv-e2e-$$/pool TRENV_POOL_SIZE_MB=8192
export TRENV_URL="http://127.0.0.1:$TRENV_HTTP_PORT"
sink=
stop_cluster() {
  kill $(cat "$TRENV_CLUSTER_DIR/pids") 2>/dev/null || true
  sleep 2
  kill -9 $(cat "$TRENV_CLUSTER_DIR/pids") 2>/dev/null || true
  rm -rf "$TRENV_CLUSTER_DIR"/* "$(dirname "$TRENV_POOL_PATH")"
}
cleanup() {
  stop_cluster
  [[ -n $sink ]] && kill "$sink" 2>/dev/null
  rm -rf "$TRENV_CLUSTER_DIR"
}
trap cleanup EXIT
start_cluster() {
  scripts/cluster.sh
  for _ in $(seq 1 240); do
    cluster=$(curl -sf "$TRENV_URL/v1/cluster" 2>/dev/null || true)
    # Ready when the coordinator serves, every worker reported, and the pool allocator answers.
    [[ $(grep -o '"isolation"' <<<"$cluster" | wc -l) -ge $TRENV_WORKERS && $cluster == *'"pool":{'* ]] && curl -sf "$TRENV_URL/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
}
start_cluster
if [[ $what == restart ]]; then
  dotnet "$bench" restart "$TRENV_URL"
  exit
fi
dotnet "$bench" "$what" "$@"
if [[ $what == e2e ]]; then
  out=bench/results/e2e.json
  for ((i = 1; i <= $#; i++)); do [[ ${!i} == --out ]] && { j=$((i + 1)); out=$(dirname "${!j}")/e2e.json; }; done
  # What tracing and metrics cost with no exporter: one more coordinator per mode in a fresh cluster, loaded in
  # alternating short bursts (fresh clusters differ here by more than the few per cent asked about): the default,
  # OTEL_PROPAGATORS=none (no tracing code runs) and OTEL_SDK_DISABLED=true (no metrics either). Then again with the
  # modes in three new processes.
  added=()
  add_coordinator() { # index, extra env...
    local k=$1; shift
    added+=("$(scripts/cluster.sh coordinator "coordinator-$((k + 1))" $((TRENV_BASE_PORT + 20 + k)) $((TRENV_HTTP_PORT + k)) "$@")")
    for _ in $(seq 1 240); do
      curl -sf "http://127.0.0.1:$((TRENV_HTTP_PORT + k))/readyz" >/dev/null 2>&1 && break
      sleep 0.5
    done
  }
  stop_added() { # SIGTERM: each leaves the cluster before it exits
    kill "${added[@]}" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "${added[@]}" 2>/dev/null || break; sleep 0.5; done
    kill -9 "${added[@]}" 2>/dev/null || true
    added=()
  }
  at() { echo "http://127.0.0.1:$((TRENV_HTTP_PORT + $1))"; }
  stop_cluster
  start_cluster
  add_coordinator 1
  add_coordinator 2 OTEL_PROPAGATORS=none
  add_coordinator 3 OTEL_SDK_DISABLED=true
  dotnet "$bench" tracing-paired 1 "$out" none="$(at 1)" no_tracing="$(at 2)" off="$(at 3)"
  stop_added
  add_coordinator 4 OTEL_SDK_DISABLED=true
  add_coordinator 5
  add_coordinator 6 OTEL_PROPAGATORS=none
  dotnet "$bench" tracing-paired 2 "$out" off="$(at 4)" none="$(at 5)" no_tracing="$(at 6)"
  stop_added

  # What exporting costs: hello's warm throughput on fresh clusters with OpenTelemetry off, exporting every span
  # over OTLP to a local receiver, and one trace in a hundred; twice each, alternating, medians counted.
  sink_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  dotnet "$bench" sink "$sink_port" &
  sink=$!
  for mode in off otlp otlp_sampled off otlp otlp_sampled; do
    stop_cluster
    unset OTEL_SDK_DISABLED OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_PROTOCOL OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG
    case $mode in
      off) export OTEL_SDK_DISABLED=true ;;
      otlp) export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf ;;
      # One trace in a hundred recorded (the rest propagated only), as a busy deployment would sample.
      otlp_sampled) export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
        OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 ;;
    esac
    start_cluster
    TRENV_BENCH_SECONDS=${TRENV_TRACING_SECONDS:-10} dotnet "$bench" tracing "$TRENV_URL" "$mode" "$out"
  done
  unset OTEL_SDK_DISABLED OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_PROTOCOL OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG
fi
