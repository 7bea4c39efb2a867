#!/usr/bin/env bash
# Where the CPU time of one warm invocation goes: a one-coordinator, one-worker cluster of its own serves hello
# under wrk (-c16), and `perf record -a` samples every process while it does. Prints the share of the machine's
# samples per process (coordinator, worker, sandbox host, wrk, kernel threads), CPU microseconds per request in
# each, after the idle cost of each node. The samples are kept for a closer look at each process's hottest code.
# A second load of the same length then counts system calls and context switches per request in each process
# (perf stat), and a third names the system calls each thread makes (perf trace, which slows the calls it watches:
# read its counts, not its times).
# Usage: scripts/profile-hot-path.sh [SECONDS] (default 10; a 40 s warm-up at full load comes first).
# Run it with nothing else on the machine: it measures the machine, not one process. The samples stay in
# /tmp/trenv-profile.perf.data for `perf report -i` (JIT frames resolve only while /tmp/perf-PID.map files exist).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-10}
command -v perf >/dev/null || { echo "profile: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "profile: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

export TRENV_CLUSTER_DIR=$(mktemp -d /tmp/trenv-profile.XXXXXX)
export TRENV_HTTP_PORT=${TRENV_HTTP_PORT:-8193} TRENV_BASE_PORT=${TRENV_BASE_PORT:-4393} TRENV_WORKERS=1
export TRENV_POOL_PATH=/dev/shm/trenv-profile-$$/pool TRENV_POOL_SIZE_MB=1024
export TRENV_SANDBOX_HOST="$root/artifacts/sandbox-host"
# The runtime writes /tmp/perf-PID.map, so perf names JIT-compiled frames; without W^X double mapping the code
# lives where the map says (with it, perf sees an anonymous memfd and names nothing).
export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0
url="http://127.0.0.1:$TRENV_HTTP_PORT"
scripts/cluster.sh
cleanup() {
  kill $(cat "$TRENV_CLUSTER_DIR/pids") 2>/dev/null || true
  sleep 2
  kill -9 $(cat "$TRENV_CLUSTER_DIR/pids") 2>/dev/null || true
  [[ -f $TRENV_CLUSTER_DIR/perf.data ]] && mv "$TRENV_CLUSTER_DIR/perf.data" /tmp/trenv-profile.perf.data
  rm -rf "$TRENV_CLUSTER_DIR" "$(dirname "$TRENV_POOL_PATH")"
}
trap cleanup EXIT
for _ in $(seq 1 240); do
  cluster=$(curl -sf "$url/v1/cluster" 2>/dev/null || true)
  [[ $cluster == *'"isolation"'* ]] && curl -sf "$url/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf -X PUT --data-binary @guests/build/hello.wasm -H 'Content-Type: application/wasm' "$url/v1/functions/hello" >/dev/null
lua=$TRENV_CLUSTER_DIR/post.lua
printf 'wrk.method = "POST"\nwrk.body = "world"\n' >"$lua"
wrk -t2 -c16 -d40s -s "$lua" "$url/v1/functions/hello/invoke" >/dev/null # warm-up: tiered JIT settles after about 30 s

# What each node costs with no calls at all (timers, heartbeats, thread-pool spinning): a tax every request pays.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
roles=(coordinator memory-pool worker)
mapfile -t node_pids <"$TRENV_CLUSTER_DIR/pids"
sleep 2
before=(); for p in "${node_pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
sleep "$seconds"
echo "idle, after the warm-up, CPU ms per second of wall time:"
for i in "${!node_pids[@]}"; do
  awk -v r="${roles[$i]:-node}" -v d=$(( $(cpu_ticks "${node_pids[$i]}") - ${before[$i]} )) -v s="$seconds" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "  %-12s %6.1f\n", r, d * 1000 / hz / s }'
done
echo

data=$TRENV_CLUSTER_DIR/perf.data
perf record -a -g -F 499 -o "$data" -- sleep "$seconds" >/dev/null 2>&1 &
recorder=$!
out=$(wrk -t2 -c16 -d"${seconds}s" -s "$lua" "$url/v1/functions/hello/invoke")
wait $recorder || true
requests=$(awk '/requests in/ {print $1}' <<<"$out")
rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
echo "hello under wrk -c16 for ${seconds}s: $requests requests, $rate/s"

# Samples per process (perf names threads, so fold them by pid), each process named by its role.
coordinator=$(sed -n 1p "$TRENV_CLUSTER_DIR/pids")
pool=$(sed -n 2p "$TRENV_CLUSTER_DIR/pids")
worker=$(sed -n 3p "$TRENV_CLUSTER_DIR/pids")
perf script -i "$data" -F pid 2>/dev/null | awk '{n[$1]++} END {for (p in n) print p, n[p]}' >"$TRENV_CLUSTER_DIR/by-pid"
total=$(awk '{s+=$2} END {print s}' "$TRENV_CLUSTER_DIR/by-pid")
echo
echo "share of all CPU samples (499 Hz on each of $(nproc) cores) and CPU µs per request, by process:"
while read -r pid n; do
  if [[ $pid == "$coordinator" ]]; then role=coordinator
  elif [[ $pid == "$worker" ]]; then role=worker
  elif [[ $pid == "$pool" ]]; then role=memory-pool
  elif [[ $pid == 0 ]]; then role=idle
  else role=$(ps -o comm= -p "$pid" 2>/dev/null || echo "gone (wrk)"); [[ $role == TrEnv.SandboxHo* ]] && role="sandbox host"
  fi
  echo "$role $n"
done <"$TRENV_CLUSTER_DIR/by-pid" | awk -v total="$total" -v req="$requests" -v hz=499 '
  { n = $NF; $NF = ""; sub(/ $/, ""); share[$0] += n }
  END { for (r in share) printf "  %5.1f%%  %7.1f µs/request  %s\n", 100 * share[r] / total, share[r] / hz * 1e6 / req, r }' | sort -rn | sed -n 1,8p
echo
echo "threads per process (share of its samples):"
for role in coordinator worker; do
  pid=${!role}
  perf script -i "$data" -F comm,pid -G 2>/dev/null | awk -v p="$pid" -v r="$role" '$NF == p { $NF = ""; n[$0]++; t++ }
    END { for (k in n) if (100 * n[k] / t >= 1) printf "  %-12s %5.1f%%  %s\n", r, 100 * n[k] / t, k }' | sort -k2 -rn
done
echo "samples kept in /tmp/trenv-profile.perf.data: perf report -i /tmp/trenv-profile.perf.data --pid PID --children --sort sym"

# System calls and thread switches per request: counted by the kernel for each process during a load of its own.
# Every sandbox host process counts: the worker spreads concurrent calls over several warm instances.
host=$(for p in $(pgrep -f sandbox-host || true); do [[ $(ps -o comm= -p "$p" 2>/dev/null) == TrEnv.SandboxHo* ]] && echo "$p"; done | paste -sd, -)
declare -A watched=([coordinator]=$coordinator [worker]=$worker)
[[ -n $host ]] && watched["sandbox host"]=$host
for role in "${!watched[@]}"; do
  perf stat -e raw_syscalls:sys_enter,context-switches -p "${watched[$role]}" -o "$TRENV_CLUSTER_DIR/stat-${role// /-}" -- sleep "$seconds" >/dev/null 2>&1 &
done
out=$(wrk -t2 -c16 -d"${seconds}s" -s "$lua" "$url/v1/functions/hello/invoke")
wait
requests=$(awk '/requests in/ {print $1}' <<<"$out")
echo
echo "system calls and context switches per request ($requests requests, $(awk '/Requests\/sec/ {print $2}' <<<"$out")/s):"
for role in coordinator worker "sandbox host"; do
  f=$TRENV_CLUSTER_DIR/stat-${role// /-}
  [[ -f $f ]] || continue
  awk -v r="$requests" -v who="$role" '/raw_syscalls:sys_enter/ {gsub(",", "", $1); s = $1} /context-switches/ {gsub(",", "", $1); c = $1}
    END { printf "  %-12s %5.2f system calls  %5.2f context switches\n", who, s / r, c / r }' "$f"
done

# Which calls, by thread: perf trace summarises each thread of the process it follows.
echo
echo "system calls by thread under perf trace (counts per request; the tracing slows the load):"
for role in coordinator worker "sandbox host"; do
  pid=${watched[$role]:-}
  [[ -n $pid ]] || continue
  f=$TRENV_CLUSTER_DIR/trace-${role// /-}
  perf trace -s -p "$pid" -o "$f" -- sleep "$seconds" >/dev/null 2>&1 &
  tracer=$!
  out=$(wrk -t2 -c16 -d"${seconds}s" -s "$lua" "$url/v1/functions/hello/invoke")
  wait $tracer || true
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v r="$requests" -v who="$role" '
    /^ [^ ].*\([0-9]+\), [0-9]+ events/ { thread = $0; sub(/^ /, "", thread); sub(/ \([0-9]+\).*/, "", thread) }
    /^   [a-z_0-9]+ +[0-9]+ / { n[thread " " $1] += $2 }
    END { for (k in n) if (n[k] / r >= 0.05) printf "  %6.2f  %-12s  %s\n", n[k] / r, who, k }' "$f" | sort -rn
done
