#!/usr/bin/env bash
# Runs Compose on compose/docker-compose.yml with whichever is installed: `docker compose` (v2) or
# `docker-compose` (1.29), in the environment scripts/images.sh chose (stand-in base images where the
# canonical ones cannot be pulled). Usage: scripts/compose.sh [compose arguments...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
images=${TRENV_IMAGES_ENV:-$root/artifacts/compose-images.env}
if [[ -f $images ]]; then
  set -a
  # shellcheck disable=SC1090
  . "$images"
  set +a
fi
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-trenv}
# From compose/: docker-compose 1.29 reads the seccomp profile (security_opt) relative to the working directory.
cd "$root/compose"
if docker compose version >/dev/null 2>&1; then
  exec docker compose -f "$root/compose/docker-compose.yml" "$@"
elif command -v docker-compose >/dev/null; then
  exec docker-compose -f "$root/compose/docker-compose.yml" "$@"
fi
echo "compose: neither 'docker compose' nor 'docker-compose' is installed (scripts/docker-engine.sh installs it)" >&2
exit 1
