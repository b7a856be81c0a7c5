#!/usr/bin/env bash
# Build one guest into dist/guests/NAME.wasm and check it against the runner's world:
#   scripts/build-guest.sh NAME|DIR
# NAME is a directory under guest/ (or DIR a guest directory inside this workspace):
# its Cargo package is built for wasm32-wasip2; a directory with its own build.sh
# instead (guest/js-bridge, guest/c-bridge, guest/py-routed) runs that.
# The runner (dist/bin/wasm-cni) is not rebuilt: build it once with scripts/build.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

arg=${1:-}
[[ -n $arg ]] || { echo "usage: $0 NAME|DIR" >&2; exit 2; }
dir=$arg
[[ -d $dir ]] || dir=guest/$arg
[[ -d $dir ]] || { echo "build-guest: no directory $arg or guest/$arg" >&2; exit 1; }
name=$(basename "$(realpath "$dir")")
[[ -x dist/bin/wasm-cni ]] || { echo "build-guest: dist/bin/wasm-cni missing: run scripts/build.sh once" >&2; exit 1; }
mkdir -p dist/guests
out=dist/guests/$name.wasm
start=$(date +%s%N)

if [[ -f $dir/Cargo.toml ]]; then
  pkg=$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)
  cargo build --release -p "$pkg" --target wasm32-wasip2
  built=target/wasm32-wasip2/release/${pkg//-/_}.wasm
  [[ -f $built ]] || { echo "build-guest: $built not produced (is the crate a cdylib?)" >&2; exit 1; }
  # aside and rename: a runner may have the old file mapped
  install -m 0644 "$built" "$out.tmp.$$"
  mv -f "$out.tmp.$$" "$out"
elif [[ -x $dir/build.sh ]]; then
  "$dir/build.sh" "$out"
else
  echo "build-guest: $dir has neither Cargo.toml nor build.sh" >&2; exit 1
fi

# check, and precompile into simulate's cache (a Python guest compiles for seconds:
# the first `simulate` then does not)
cache=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/wasm-cni
if mkdir -p "$cache" 2>/dev/null && [[ -w $cache ]]; then
  dist/bin/wasm-cni guest check --cache-dir "$cache" "$out"
else
  dist/bin/wasm-cni guest check "$out"
fi
echo "build-guest: $out in $(( ($(date +%s%N) - start) / 1000000 )) ms" >&2
