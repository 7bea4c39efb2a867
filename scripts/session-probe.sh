#!/usr/bin/env bash
# Where a fork's and a resume's time goes, one step at a time: starts a two-worker cluster of its own (ports
# 8290/4290+, the build output), deploys the Python analyst tool, then N times forks a session into one child,
# resumes the child, calls it, pauses and resumes it again, printing each HTTP round trip and the worker's own
# resume time; last, the coordinator's log line per fork (capture, durable copy, holds, children).
# Usage: scripts/session-probe.sh [N]   (after CONFIGURATION=Release scripts/build.sh and scripts/build-python.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rounds=${1:-6}
export TRENV_CLUSTER_DIR=$(mktemp -d /tmp/trenv-probe.XXXXXX) TRENV_WORKERS=2 TRENV_HTTP_PORT=8290 TRENV_BASE_PORT=4290
export TRENV_POOL_PATH=/dev/shm/trenv-probe-$$/pool TRENV_POOL_SIZE_MB=4096 TRENV_SANDBOX_HOST=$root/artifacts/sandbox-host
url=http://127.0.0.1:$TRENV_HTTP_PORT
scripts/cluster.sh
trap 'kill $(cat "$TRENV_CLUSTER_DIR/pids") 2>/dev/null; sleep 2; kill -9 $(cat "$TRENV_CLUSTER_DIR/pids") 2>/dev/null; rm -rf "$TRENV_CLUSTER_DIR" "$(dirname "$TRENV_POOL_PATH")"' EXIT
for _ in $(seq 1 240); do
  cluster=$(curl -sf "$url/v1/cluster" || true)
  [[ $(grep -o '"isolation"' <<<"$cluster" | wc -l) -ge 2 && $cluster == *'"pool":{'* ]] && curl -sf "$url/readyz" >/dev/null && break
  sleep 0.5
done
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }
out=$TRENV_CLUSTER_DIR/answer.json
curl -sf -X PUT --data-binary @guests/python/analyst.py "$url/v1/functions/probe-analyst?runtime=python" >/dev/null
curl -sf -d '{"function":"probe-analyst","idleTimeoutS":0}' "$url/v1/sessions" -o "$out"
parent=$(field "$out" '["id"]')
curl -sf -d 'load t 1,2,3' "$url/v1/sessions/$parent/invoke" >/dev/null
for _ in $(seq 1 "$rounds"); do
  curl -sf -d '{"count":1}' "$url/v1/sessions/$parent/fork" -o "$out" -w "fork %{time_total}s  "
  child=$(field "$out" '["sessions"][0]')
  curl -sf -X POST "$url/v1/sessions/$child/resume" -o "$out" -w "resume %{time_total}s "
  echo -n "(on the worker $(field "$out" '["lastResumeMs"]') ms)  "
  curl -sf -d 'tables' "$url/v1/sessions/$child/invoke" -o /dev/null -w "first call %{time_total}s  "
  curl -sf -X POST "$url/v1/sessions/$child/pause" -o /dev/null -w "pause %{time_total}s  "
  curl -sf -X POST "$url/v1/sessions/$child/resume" -o /dev/null -w "resume again %{time_total}s\n"
  curl -sf -X DELETE "$url/v1/sessions/$child" -o /dev/null
done
grep -o '"Message":"Fork of session[^"]*' "$TRENV_CLUSTER_DIR/coordinator-1.log" | sed 's/"Message":"//' | tail -n "$rounds"
