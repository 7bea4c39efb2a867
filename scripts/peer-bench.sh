#!/usr/bin/env bash
# ./bench.sh peer: the same guest (hello) behind Cloudflare's workerd and behind TrEnv (./run.sh's topology: one
# coordinator, two workers, the pool), loaded one after the other by the same client with the same settings
# (wrk -t2, a 5-byte POST body) at concurrency 16 and 64. workerd warms up 5 s, TrEnv 20 s (its JIT tiers up).
# Writes bench/results/peer.json: one {client, concurrency, workerd, trenv, ratio_rps} per concurrency; each side
# also counts its failed answers (non-2xx and socket errors), which its rps includes.
# A third subject, "floor" (bench/peer/relay.c, built with cc), is TrEnv's topology with nothing else in it: an HTTP
# front, a TCP hop to a middle process and a pipe to one of many leaf processes, each a C epoll loop or blocking
# read. floor_ratio (floor / workerd) says how far the crossings themselves would let TrEnv go on this machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
workerd_version=1.20261201.1 # @cloudflare/workerd-linux-64, pinned
seconds=${TRENV_PEER_SECONDS:-10}
out=${1:-bench/results/peer.json}
command -v wrk >/dev/null || { echo "peer: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
workerd=artifacts/npm/node_modules/@cloudflare/workerd-linux-64/bin/workerd
if [[ ! -x $workerd ]] || [[ $(cat artifacts/npm/workerd.version 2>/dev/null) != "$workerd_version" ]]; then
  mkdir -p artifacts/npm
  npm install --silent --no-audit --no-fund --prefix artifacts/npm "@cloudflare/workerd-linux-64@$workerd_version" >/dev/null
  echo "$workerd_version" >artifacts/npm/workerd.version
fi

work=$(mktemp -d /tmp/trenv-peer.XXXXXX)
workerd_pid=""
relay_pids=""
cleanup() {
  [[ -n $workerd_pid ]] && kill "$workerd_pid" 2>/dev/null || true
  [[ -n $relay_pids ]] && kill $relay_pids 2>/dev/null || true
  if [[ -f $work/cluster/pids ]]; then
    kill $(cat "$work/cluster/pids") 2>/dev/null || true
    sleep 2
    kill -9 $(cat "$work/cluster/pids") 2>/dev/null || true
  fi
  rm -rf "$work" "/dev/shm/trenv-peer-$$"
}
trap cleanup EXIT
printf 'wrk.method = "POST"\nwrk.body = "world"\n' >"$work/post.lua"

# load URL SECONDS CONCURRENCY: prints "rps p50_ms p99_ms failed" (failed: answers other than 2xx/3xx, and socket errors).
load() {
  wrk -t2 -c"$3" -d"${2}s" --timeout 10s --latency -s "$work/post.lua" "$1" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses/ { failed += $NF }
    /Socket errors/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) failed += $i + 0 }
    END { printf "%s %.3f %.3f %d\n", rps, p50, p99, failed }'
}

# measure LABEL URL WARMUP_S ARRAY: waits until URL answers hello, then loads it (warm-up first) at concurrency 16 and
# 64 and keeps each "rps p50 p99 failed" in ARRAY[concurrency].
measure() {
  local label=$1 target=$2 warmup=$3 c
  local -n into=$4
  for _ in $(seq 1 100); do
    curl -sf -X POST -d world "$target" >/dev/null 2>&1 && break
    sleep 0.1
  done
  [[ $(curl -sf -X POST -d world "$target") == "hello: world" ]] || { echo "peer: $label did not answer" >&2; return 1; }
  for c in 16 64; do
    load "$target" "$warmup" "$c" >/dev/null
    into[$c]=$(load "$target" "$seconds" "$c")
    echo "$label c=$c: ${into[$c]} (requests/s, p50 ms, p99 ms, failed)"
  done
}

# workerd: the guest's module and a worker that drives its exports as TrEnv's host does (bench/peer/).
cp bench/peer/worker.js bench/peer/config.capnp "$work/"
cp guests/build/hello.wasm "$work/guest.wasm"
(cd "$work" && exec "$root/$workerd" serve config.capnp >"$work/workerd.log" 2>&1) &
workerd_pid=$!
declare -A peer
measure "workerd $workerd_version " http://127.0.0.1:8195/ 5 peer || { cat "$work/workerd.log" >&2; exit 1; }
kill "$workerd_pid"
wait "$workerd_pid" 2>/dev/null || true
workerd_pid=""

# The floor: the same three processes and two hops, with no work in them (64 leaves, as many sandboxes as calls).
cc -O2 -o "$work/relay" bench/peer/relay.c
"$work/relay" middle 8198 64 &
relay_pids=$!
"$work/relay" front 8197 8198 &
relay_pids="$relay_pids $!"
declare -A floor
measure "floor (relay.c) " http://127.0.0.1:8197/ 5 floor || exit 1
kill $relay_pids 2>/dev/null || true
wait $relay_pids 2>/dev/null || true
relay_pids=""

# TrEnv, as ./run.sh starts it, on ports of its own; hello may run 128 calls at once (the default limit is lower).
export TRENV_CLUSTER_DIR=$work/cluster TRENV_HTTP_PORT=8196 TRENV_BASE_PORT=4490 TRENV_WORKERS=2
export TRENV_POOL_PATH=/dev/shm/trenv-peer-$$/pool TRENV_POOL_SIZE_MB=1024
export TRENV_SANDBOX_HOST="$root/artifacts/sandbox-host"
url="http://127.0.0.1:$TRENV_HTTP_PORT"
scripts/cluster.sh
for _ in $(seq 1 240); do
  cluster=$(curl -sf "$url/v1/cluster" 2>/dev/null || true)
  [[ $(grep -o '"isolation"' <<<"$cluster" | wc -l) -ge 2 ]] && curl -sf "$url/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf -X PUT --data-binary @guests/build/hello.wasm -H 'Content-Type: application/wasm' "$url/v1/functions/hello?concurrency=128" >/dev/null
declare -A ours
measure "trenv           " "$url/v1/functions/hello/invoke" 20 ours || exit 1

mkdir -p "$(dirname "$out")"
{
  echo "["
  sep=""
  for c in 16 64; do
    read -r wr w50 w99 wf <<<"${peer[$c]}"
    read -r tr t50 t99 tf <<<"${ours[$c]}"
    read -r fr f50 f99 ff <<<"${floor[$c]}"
    ratio=$(awk -v t="$tr" -v w="$wr" 'BEGIN { printf "%.2f", t / w }')
    floor_ratio=$(awk -v f="$fr" -v w="$wr" 'BEGIN { printf "%.2f", f / w }')
    printf '%s  {"client": "wrk -t2 -c%s -d%ss --latency, POST of a 5-byte body", "concurrency": %s, "workerd_version": "%s", "seconds": %s,\n' "$sep" "$c" "$seconds" "$c" "$workerd_version" "$seconds"
    printf '   "workerd": {"rps": %s, "p50_ms": %s, "p99_ms": %s, "failed": %s},\n' "$wr" "$w50" "$w99" "$wf"
    printf '   "trenv": {"rps": %s, "p50_ms": %s, "p99_ms": %s, "failed": %s},\n' "$tr" "$t50" "$t99" "$tf"
    printf '   "floor": {"rps": %s, "p50_ms": %s, "p99_ms": %s, "failed": %s},\n' "$fr" "$f50" "$f99" "$ff"
    printf '   "ratio_rps": %s, "floor_ratio": %s}\n' "$ratio" "$floor_ratio"
    sep=","
  done
  echo "]"
} >"$out"
echo "wrote $out"
grep -o '"concurrency": [0-9]*\|"ratio_rps": [0-9.]*\|"floor_ratio": [0-9.]*' "$out" | paste - - - | sed 's/"//g'
