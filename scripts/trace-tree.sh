#!/usr/bin/env bash
# One template start as a span tree: starts a one-worker cluster of its own (ports 8390/4390+, the build output)
# whose nodes export traces over OTLP to a receiver in trenv-bench, starts hello cold, scales it to zero, invokes it
# under a trace of its own and prints that trace: each span's service, its offset from the first and its duration.
# Usage: scripts/trace-tree.sh   (after CONFIGURATION=Release scripts/build.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sink_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TRENV_CLUSTER_DIR=$(mktemp -d /tmp/trenv-trace.XXXXXX) TRENV_WORKERS=1 TRENV_HTTP_PORT=8390 TRENV_BASE_PORT=4390
export TRENV_POOL_PATH=/dev/shm/trenv-trace-$$/pool TRENV_POOL_SIZE_MB=1024 TRENV_SANDBOX_HOST=$root/artifacts/sandbox-host
export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_BSP_SCHEDULE_DELAY=200
url=http://127.0.0.1:$TRENV_HTTP_PORT
scripts/cluster.sh
trap 'kill $(cat "$TRENV_CLUSTER_DIR/pids") 2>/dev/null; sleep 2; kill -9 $(cat "$TRENV_CLUSTER_DIR/pids") 2>/dev/null; rm -rf "$TRENV_CLUSTER_DIR" "$(dirname "$TRENV_POOL_PATH")"' EXIT
for _ in $(seq 1 240); do
  cluster=$(curl -sf "$url/v1/cluster" || true)
  [[ $cluster == *'"isolation"'* && $cluster == *'"pool":{'* ]] && curl -sf "$url/readyz" >/dev/null && break
  sleep 0.5
done
dotnet bench/TrEnv.Bench/bin/Release/net10.0/trenv-bench.dll trace "$url" "$sink_port" guests/build/hello.wasm
