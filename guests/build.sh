#!/usr/bin/env bash
# Builds every guest in src/ to build/NAME.wasm as a WASI reactor.
# Guests are built WITHOUT exporting __stack_pointer on purpose: the engine
# must make non-exported mutable globals capturable by itself. hello is also
# built with the exports (hello-exported.wasm) so both shapes stay covered.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
CC=${CC:-clang-14}
flags=(--target=wasm32-wasi -O2 -Wl,--strip-debug -mexec-model=reactor -mmutable-globals -Iinclude)
for src in src/*.c; do
  name=$(basename "$src" .c)
  out=build/$name.wasm
  if [[ ! -f $out || $src -nt $out || include/trenv.h -nt $out ]]; then
    "$CC" "${flags[@]}" -o "$out" "$src"
  fi
done
if [[ ! -f build/hello-exported.wasm || src/hello.c -nt build/hello-exported.wasm ]]; then
  "$CC" "${flags[@]}" -Wl,--export=__stack_pointer -Wl,--export=__heap_base \
    -o build/hello-exported.wasm src/hello.c
fi
