#!/usr/bin/env bash
# Measures what preparing the compose images costs (./bench.sh images): the first build from nothing (every
# TrEnv image, stand-in, imported rootfs and cached layer removed first) and a rebuild after a code change (a
# new C# file in shared/, which every node image compiles), both through scripts/images.sh. Writes
# bench/results/images.json. Run it with nothing else running; it takes a quarter of an hour.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-bench/results/images.json}
scripts/docker-engine.sh
images=(trenv/coordinator:local trenv/worker:local trenv/memory-pool:local trenv/debian:12 trenv/dotnet-sdk:10.0 trenv/dotnet-aspnet:10.0 trenv/postgres:15 trenv/debian-rootfs:12)
if [[ -n $(docker ps -aq --filter label=com.docker.compose.project) ]]; then
  echo "image-times: compose containers exist; remove them first (./trenv down --compose)" >&2
  exit 1
fi
docker rmi -f "${images[@]}" >/dev/null 2>&1 || true
docker image prune -af >/dev/null
docker builder prune -af >/dev/null 2>&1 || true

# Seconds one scripts/images.sh takes, its progress lines kept in $1.
run() {
  local t0 log=$1
  t0=$(date +%s%N)
  scripts/images.sh 2>"$log" || { cat "$log" >&2; echo "image-times: scripts/images.sh failed" >&2; return 1; }
  awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.1f", ns / 1e9 }'
}
first=$(run artifacts/images-first.log) || exit 1
probe=shared/TrEnv.Contracts/ImageTimingProbe.cs
trap 'rm -f "$probe"' EXIT
printf '// Written and removed by scripts/image-times.sh: a code change for the rebuild measurement (%s).\n' "$(date +%s%N)" > "$probe"
rebuild=$(run artifacts/images-rebuild.log) || exit 1
rm -f "$probe"
restore=$(run artifacts/images-restore.log) || exit 1
steps=$(grep -E '^images: ' artifacts/images-first.log | sed -E 's/^images: (.*[^ ]) +([0-9]+) s$/"\1": \2/; t; d' | paste -sd, -)
mkdir -p "$(dirname "$out")"
cat >"$out" <<JSON
{
  "command": "./bench.sh images",
  "machine": "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, docker $(docker version -f '{{.Server.Version}}')",
  "base_images": "$(grep -E '^images: base images' artifacts/images-first.log | sed -E 's/^images: base images +//')",
  "first_build_s": $first,
  "rebuild_after_code_change_s": $rebuild,
  "rebuild_back_to_the_checkout_s": $restore,
  "first_build_steps_s": {$steps}
}
JSON
cat "$out"
