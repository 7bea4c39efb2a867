#!/usr/bin/env bash
# Installs the Ruby runtime: ruby.wasm (Ruby 3.4 for WASI with its stdlib embedded) from the npm package
# @ruby/3.4-wasm-wasi, into $TRENV_RUNTIMES_DIR/ruby/ruby.wasm (default /var/cache/trenv/runtimes, outside
# the repo). The engine drives its exports itself (worker/TrEnv.Engine/RubyGuest.cs). Idempotent.
set -euo pipefail
version=2.10.1
cache=${TRENV_RUNTIMES_DIR:-/var/cache/trenv/runtimes}
out=$cache/ruby
if [[ -f $out/ruby.wasm && $(cat "$out/.version" 2>/dev/null) == "$version" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  [[ $(id -u) -eq 0 ]] || { echo "fetch-ruby: npm is missing; install it as root." >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@ruby/3.4-wasm-wasi@$version" >/dev/null && tar -xzf ruby-3.4-wasm-wasi-$version.tgz package/dist/ruby+stdlib.wasm)
mkdir -p "$out"
mv "$work/package/dist/ruby+stdlib.wasm" "$out/ruby.wasm"
echo "$version" > "$out/.version"
echo "fetch-ruby: $(du -sh "$out/ruby.wasm" | cut -f1) ruby.wasm (@ruby/3.4-wasm-wasi $version) in $out"
