#!/usr/bin/env bash
# Builds the Python runtime: CPython 3.11 from Debian's source for wasm32-wasi, linked with our shim
# (runtimes/python/shim.c) into a guest-ABI reactor, plus the stdlib with precompiled .pyc files.
# Output: $TRENV_RUNTIMES_DIR/python/python.wasm and .../python/lib/python3.11 (default
# /var/cache/trenv/runtimes, outside the repo). Idempotent: a stamp of the inputs skips a rebuild.
# About 3 minutes on 2 cores the first time; the built interpreter is never committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TRENV_RUNTIMES_DIR:-/var/cache/trenv/runtimes}
out=$cache/python
shim=$root/runtimes/python/shim.c
inputs=$(cat "$0" "$shim" | sha256sum | cut -c1-16)
if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$inputs" && -f $out/python.wasm ]]; then
  exit 0
fi
echo "build-python: building the Python runtime into $out (about 3 minutes)"

missing=()
for p in clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 llvm-14 python3.11 dpkg-dev make bzip2 xz-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || { echo "build-python: missing packages ${missing[*]}; install them as root." >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
host_python=/usr/bin/python3.11  # Debian's 3.11.2: the same bytecode magic as the source we build

# Debian's source packages through a private apt state, so the machine's sources lists stay untouched.
src=$cache/src
mkdir -p "$src/apt/lists/partial" "$src/apt/archives/partial"
echo "deb-src http://deb.debian.org/debian bookworm main" > "$src/apt/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$src/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$src/apt/lists" -o "Dir::Cache::Archives=$src/apt/archives" -o APT::Sandbox::User=root)
if ! ls "$src"/python3.11_3.11.2.orig.tar.gz "$src"/zlib_*.orig.tar.* >/dev/null 2>&1; then
  apt-get "${apt_opts[@]}" update -qq
  (cd "$src" && apt-get "${apt_opts[@]}" source --download-only -qq python3.11 zlib >/dev/null)
fi

# CPython itself is rebuilt only when this script changes; a change to the shim only relinks.
work=$cache/build
py=$work/Python-3.11.2
sr=$work/sysroot
cc=(clang-14 --target=wasm32-wasi --sysroot="$sr")
cpython_inputs=$(sha256sum "$0" | cut -c1-16)
if [[ ! -f $work/.stamp || $(cat "$work/.stamp") != "$cpython_inputs" || ! -f $py/libpython3.11.a ]]; then
rm -rf "$work"
mkdir -p "$work"
tar -C "$work" -xzf "$src"/python3.11_3.11.2.orig.tar.gz
tar -C "$work" -xf "$(ls "$src"/zlib_*.orig.tar.*)"
zl=$(ls -d "$work"/zlib-*)

# A private sysroot: wasi-libc's headers and libraries, plus zlib built for wasm32-wasi. Without
# --sysroot clang would also search the host's /usr/include.
mkdir -p "$sr/include" "$sr/lib/wasm32-wasi"
for f in /usr/include/wasm32-wasi/*; do ln -s "$f" "$sr/include/"; done
for f in /usr/lib/wasm32-wasi/*; do ln -s "$f" "$sr/lib/wasm32-wasi/"; done
(
  cd "$zl"
  for c in adler32 compress crc32 deflate gzclose gzlib gzread gzwrite infback inffast inflate inftrees trees uncompr zutil; do
    "${cc[@]}" -O2 -D_LARGEFILE64_SOURCE=1 -c "$c.c" -o "$c.o"
  done
  llvm-ar-14 rcs "$sr/lib/wasm32-wasi/libz.a" ./*.o
  cp zlib.h zconf.h "$sr/include/"
)

mkdir -p "$work/empty-pkgconfig"
(
  cd "$py"
  export CC="${cc[*]}" AR=llvm-ar-14 RANLIB=llvm-ranlib-14 READELF=true PKG_CONFIG_LIBDIR=$work/empty-pkgconfig
  CONFIG_SITE=Tools/wasm/config.site-wasm32-wasi ./configure -q --host=wasm32-unknown-wasi --build="$(./config.guess)" \
    --with-build-python="$host_python" --disable-test-modules >/dev/null
  make -s -j"$(nproc)" libpython3.11.a python.wasm >/dev/null 2>"$work/make.log" || { tail -30 "$work/make.log" >&2; exit 1; }
)
echo "$cpython_inputs" > "$work/.stamp"
fi

# The reactor: the shim plus everything python.wasm links, with CPython's stack and memory settings.
var() { make -s -C "$py" -f Makefile -f - "print-$1" <<<'print-%: ; @echo $($*)'; }
"${cc[@]}" -O2 -I"$py/Include" -I"$py" -c "$shim" -o "$work/shim.o"
mkdir -p "$out.new"
# shellcheck disable=SC2046
# CONFIGURE_LDFLAGS_NODIST carries WASI's 512 KiB stack placed first (an overflow traps instead of
# overwriting data) and the initial memory; --strip-debug drops 14 MB of DWARF but keeps names for traps.
(cd "$py" && "${cc[@]}" -mexec-model=reactor -O2 $(var CONFIGURE_LDFLAGS_NODIST) -Wl,--strip-debug -o "$out.new/python.wasm" "$work/shim.o" libpython3.11.a \
  $(var MODLIBS) $(var LIBS) $(var SYSLIBS))
grep -q -- "--stack-first" <<<"$(var CONFIGURE_LDFLAGS_NODIST)" || { echo "build-python: CPython's WASI stack flags are missing" >&2; exit 1; }

# The stdlib, compiled to .pyc (unchecked: the files never change under a function), without what a
# sandboxed tool cannot use.
lib=$out.new/lib/python3.11
mkdir -p "$lib"
cp -a "$py"/Lib/. "$lib/"
cp "$py"/build/lib.wasi-wasm32-3.11/_sysconfigdata__wasi_wasm32-wasi.py "$lib/" 2>/dev/null || true
rm -rf "$lib"/{test,idlelib,tkinter,turtledemo,ensurepip,lib2to3,distutils/tests,unittest/test,venv,pydoc_data,__phello__}
find "$lib" -name '__pycache__' -prune -exec rm -rf {} +
"$host_python" -m compileall -q -j0 --invalidation-mode unchecked-hash "$lib" >/dev/null || true
rm -rf "$out"
mv "$out.new" "$out"
echo "$inputs" > "$out/.stamp"
echo "build-python: $(du -sh "$out/python.wasm" | cut -f1) python.wasm, $(du -sh "$out/lib" | cut -f1) of stdlib in $out"
