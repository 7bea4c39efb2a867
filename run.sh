#!/usr/bin/env bash
# Starts a complete local TrEnv cluster on embedded defaults: one coordinator serving
# http://127.0.0.1:${TRENV_HTTP_PORT:-8080}, ${TRENV_WORKERS:-2} workers and the memory-pool node, each a
# separate process, with SQLite under .trenv/ and the pool under /dev/shm/trenv. Deploys the sample
# functions, prints "TrEnv ready: URL", and stops every process it started on Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
scripts/bootstrap.sh
CONFIGURATION=Release scripts/build.sh
scripts/publish-nodes.sh # the nodes precompiled (ReadyToRun): minutes the first time, seconds after
export TRENV_NODES_DIR=$root/artifacts/nodes
scripts/build-python.sh  # the Python runtime, once (cached under TRENV_RUNTIMES_DIR, outside the repo)
scripts/fetch-ruby.sh    # the Ruby runtime, once
export TRENV_CLUSTER_DIR=${TRENV_CLUSTER_DIR:-$root/.trenv}
http=${TRENV_HTTP_PORT:-8080}
url="http://127.0.0.1:$http"
if curl -sf "$url/healthz" >/dev/null 2>&1; then
  echo "Something already serves $url; stop it or set TRENV_HTTP_PORT." >&2
  exit 1
fi

scripts/cluster.sh
stop() {
  trap - INT TERM EXIT
  echo "stopping TrEnv"
  local pids
  pids=$(cat "$TRENV_CLUSTER_DIR/pids")
  kill $pids 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 $pids 2>/dev/null || break
    sleep 0.2
  done
  kill -9 $pids 2>/dev/null || true
}
trap stop INT TERM EXIT

workers=${TRENV_WORKERS:-2}
for _ in $(seq 1 240); do
  cluster=$(curl -sf "$url/v1/cluster" 2>/dev/null || true)
  # Ready when the coordinator serves, every worker reported, and the pool allocator answers.
  if [[ $(grep -o '"isolation"' <<<"$cluster" | wc -l) -ge $workers && $cluster == *'"pool":{'* ]] && curl -sf "$url/readyz" >/dev/null 2>&1; then
    break
  fi
  for pid in $(cat "$TRENV_CLUSTER_DIR/pids"); do
    kill -0 "$pid" 2>/dev/null || { echo "a node exited; see $TRENV_CLUSTER_DIR/*.log" >&2; exit 1; }
  done
  sleep 0.5
done
curl -sf "$url/readyz" >/dev/null || { echo "the cluster did not become ready; see $TRENV_CLUSTER_DIR/*.log" >&2; exit 1; }

auth=()
[[ -n ${TRENV_ADMIN_TOKEN:-} ]] && auth=(-H "Authorization: Bearer $TRENV_ADMIN_TOKEN")
for f in hello heavy trap loop membomb escape notebook; do
  q=""
  [[ $f == loop ]] && q="?timeoutMs=1000"
  [[ $f == membomb ]] && q="?memoryMb=64"
  curl -sf "${auth[@]}" -X PUT -H 'Content-Type: application/wasm' --data-binary "@guests/build/$f.wasm" "$url/v1/functions/$f$q" >/dev/null \
    || { echo "deploying $f failed" >&2; exit 1; }
done
# The Python sample tools, deployed from source (calc.py is the function "calc", and so on).
for f in guests/python/*.py; do
  name=$(basename "$f" .py)
  curl -sf "${auth[@]}" -X PUT --data-binary "@$f" "$url/v1/functions/${name//_/-}?runtime=python" >/dev/null \
    || { echo "deploying $f failed" >&2; exit 1; }
done
for f in guests/ruby/*.rb; do
  name=$(basename "$f" .rb)
  curl -sf "${auth[@]}" -X PUT --data-binary "@$f" "$url/v1/functions/${name//_/-}?runtime=ruby" >/dev/null \
    || { echo "deploying $f failed" >&2; exit 1; }
done
echo "TrEnv ready: $url"
echo "  curl -X POST --data 'world' $url/v1/functions/hello/invoke"
echo "  curl -X POST --data '(19.99 * 3) / 7' $url/v1/functions/calc/invoke"
# The nodes are not this shell's children (scripts/cluster.sh started them): watch them instead.
while sleep 1; do
  for pid in $(cat "$TRENV_CLUSTER_DIR/pids"); do
    kill -0 "$pid" 2>/dev/null || { echo "node $pid exited; see $TRENV_CLUSTER_DIR/*.log" >&2; exit 1; }
  done
done
