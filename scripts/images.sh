#!/usr/bin/env bash
# Prepares everything `docker compose` needs for compose/docker-compose.yml, with no manual step:
#  1. a Docker engine (scripts/docker-engine.sh);
#  2. the base images compose/Dockerfile and the compose file name: the canonical ones (debian:12,
#     mcr.microsoft.com/dotnet/sdk:10.0 and aspnet:10.0, postgres:15) when present or pullable, otherwise
#     stand-ins built here from Debian packages (debootstrap) and this machine's .NET SDK
#     (compose/standins/); the choice goes to artifacts/compose-images.env, which scripts/compose.sh reads;
#  3. the three TrEnv images (trenv/coordinator, trenv/worker, trenv/memory-pool:local).
# Prints one line per step with its time. TRENV_IMAGES_NO_BUILD=1 stops after step 2.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} # the legacy builder: BuildKit here has no buildx and no registry for its frontend
env_file=${TRENV_IMAGES_ENV:-$root/artifacts/compose-images.env}
cache=${TRENV_IMAGES_CACHE:-/var/cache/trenv/images}
standins=$root/compose/standins
mkdir -p "$(dirname "$env_file")" "$cache"

step() { printf 'images: %-44s %s\n' "$1" "$2" >&2; }
# timed LABEL COMMAND...: runs it in this shell (a failure stops the script) and prints its time.
timed() { local label=$1 t0=$SECONDS; shift; "$@"; step "$label" "$((SECONDS - t0)) s"; }
have() { docker image inspect "$1" >/dev/null 2>&1; }
# The label a stand-in was built from; an image with another label is rebuilt.
label_of() { docker image inspect -f '{{ index .Config.Labels "trenv.standin" }}' "$1" 2>/dev/null || true; }

scripts/docker-engine.sh

# A canonical image, if this engine has it or can pull it; empty otherwise.
canonical() {
  if have "$1" || timeout 120 docker pull -q "$1" >/dev/null 2>&1; then
    echo "$1"
  fi
}

debian_standin() {
  local tag=trenv/debian:12 cas key
  cas=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-16)
  key="bookworm-minbase-$cas"
  [[ $(label_of $tag) == "$key" ]] && return 0
  if ! have trenv/debian-rootfs:12; then
    local mirror rootfs=$cache/bookworm
    # The mirror apt uses (either sources format; some files may be missing).
    mirror=$( (grep -hoE '^(deb|URIs:) +(\[[^]]*\] +)?https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true) | grep -v security | head -1 | awk '{print $NF}')
    command -v debootstrap >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1 \
      || { echo "images: debootstrap failed; see $cache/debootstrap.log" >&2; exit 1; }
    tar -C "$rootfs" -c . | docker import - trenv/debian-rootfs:12 >/dev/null
    rm -rf "$rootfs"
  fi
  local ctx
  ctx=$(mktemp -d)
  mkdir "$ctx/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  docker build -q --label "trenv.standin=$key" -t $tag -f "$standins/debian.Dockerfile" "$ctx" >/dev/null 2>"$cache/standin.log" || { cat "$cache/standin.log" >&2; exit 1; }
  rm -rf "$ctx"
}

dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
sdk_version=$(dotnet --version)

# Builds a stand-in from this machine's .NET install: $1 tag, $2 Dockerfile, the rest the paths it takes.
dotnet_standin() {
  local tag=$1 file=$2 key
  key="$sdk_version-$(sha256sum "$standins/$file" | cut -c1-16)"
  shift 2
  [[ $(label_of "$tag") == "$key" ]] && return 0
  local ctx
  ctx=$(mktemp -d)
  cp "$standins/$file" "$ctx/Dockerfile"
  tar -c -C "$ctx" Dockerfile -C "$dotnet_root" "$@" \
    | docker build -q --label "trenv.standin=$key" --build-arg BASE_IMAGE=trenv/debian:12 -t "$tag" - >/dev/null 2>"$cache/standin.log" || { cat "$cache/standin.log" >&2; exit 1; }
  rm -rf "$ctx"
}

postgres_standin() {
  local key
  key=$(cat "$standins/postgres.Dockerfile" "$standins/postgres-entrypoint.sh" | sha256sum | cut -c1-16)
  [[ $(label_of trenv/postgres:15) == "$key" ]] && return 0
  docker build -q --label "trenv.standin=$key" --build-arg BASE_IMAGE=trenv/debian:12 -t trenv/postgres:15 \
    -f "$standins/postgres.Dockerfile" "$standins" >/dev/null 2>"$cache/standin.log" || { cat "$cache/standin.log" >&2; exit 1; }
}

debian=$(canonical debian:12)
sdk=$(canonical mcr.microsoft.com/dotnet/sdk:10.0)
runtime=$(canonical mcr.microsoft.com/dotnet/aspnet:10.0)
postgres=$(canonical postgres:15)
if [[ -z $debian || -z $sdk || -z $runtime || -z $postgres ]]; then
  timed "stand-in trenv/debian:12" debian_standin
fi
if [[ -z $debian ]]; then debian=trenv/debian:12; fi
if [[ -z $sdk ]]; then
  timed "stand-in trenv/dotnet-sdk:10.0 (SDK $sdk_version)" dotnet_standin trenv/dotnet-sdk:10.0 dotnet-sdk.Dockerfile .
  sdk=trenv/dotnet-sdk:10.0
fi
if [[ -z $runtime ]]; then
  timed "stand-in trenv/dotnet-aspnet:10.0" dotnet_standin trenv/dotnet-aspnet:10.0 dotnet-aspnet.Dockerfile dotnet host shared
  runtime=trenv/dotnet-aspnet:10.0
fi
if [[ -z $postgres ]]; then
  timed "stand-in trenv/postgres:15" postgres_standin
  postgres=trenv/postgres:15
fi
cat >"$env_file" <<ENV
# Written by scripts/images.sh: the base images this engine uses (canonical, or stand-ins built here).
TRENV_DEBIAN_IMAGE=$debian
TRENV_SDK_IMAGE=$sdk
TRENV_RUNTIME_IMAGE=$runtime
TRENV_POSTGRES_IMAGE=$postgres
ENV
step "base images" "$debian, $sdk, $runtime, $postgres"
[[ ${TRENV_IMAGES_NO_BUILD:-0} == 1 ]] && exit 0

# The Python and Ruby runtimes this machine built already (scripts/build-python.sh, fetch-ruby.sh) seed the
# image's runtimes stage, which then only checks their stamps instead of compiling CPython again.
seed=$root/artifacts/runtimes-seed
runtimes=${TRENV_RUNTIMES_DIR:-/var/cache/trenv/runtimes}
rm -rf "$seed"
mkdir -p "$seed"
for r in python ruby; do
  if [[ -d $runtimes/$r ]]; then
    mkdir -p "$seed/$r"
    (cd "$runtimes/$r" && tar -c --exclude=./src --exclude=./build . | tar -x -C "$seed/$r")
  fi
done

build_target() {
  docker build -f compose/Dockerfile --target "$1" -t "trenv/$1:local" \
    --build-arg "DEBIAN_IMAGE=$debian" --build-arg "SDK_IMAGE=$sdk" --build-arg "RUNTIME_IMAGE=$runtime" . >"$cache/build-$1.log" 2>&1 \
    || { tail -30 "$cache/build-$1.log" >&2; echo "images: building trenv/$1:local failed; the whole log is $cache/build-$1.log" >&2; exit 1; }
}
total=$SECONDS
for target in coordinator memory-pool worker; do
  timed "trenv/$target:local" build_target "$target"
done
step "TrEnv images built" "$((SECONDS - total)) s"
