#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io and docker-compose when dockerd is
# missing (root), starts dockerd in the background when it is installed but not running (no systemd
# here), and waits for its socket. Prints nothing when the engine already answers.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null || { ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; }; then
  [[ $(id -u) -eq 0 ]] || { echo "docker-engine: no Docker engine; install docker.io and docker-compose as root." >&2; exit 1; }
  echo "docker-engine: installing docker.io and docker-compose" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io docker-compose >/dev/null
fi
if docker info >/dev/null 2>&1; then
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "docker-engine: dockerd is not running; start it as root (dockerd &)." >&2; exit 1; }
log=/var/log/trenv-dockerd.log
echo "docker-engine: starting dockerd (log in $log)" >&2
# setsid: the engine outlives this script and the session that ran it.
setsid dockerd >>"$log" 2>&1 </dev/null &
for _ in $(seq 1 150); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "docker-engine: dockerd did not answer within 30 s; see $log" >&2
exit 1
