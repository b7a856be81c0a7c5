#!/usr/bin/env bash
# Build the C bridge guest: guests/c-bridge/build.sh OUT.wasm
#
# 1. scripts/guest-tools.sh installs the pinned toolchain when missing (wit-bindgen and
#    wasm-tools from crates.io, zig from PyPI, all under .guest-tools/).
# 2. `wit-bindgen c` writes the bindings of the world cni-policy of
#    wasm-cni:plugin@0.1.0 (wit/deps/plugin-0.1.0, frozen; this guest stays on 0.1.0,
#    which the runner keeps serving, IPv4 only): cni_policy.h, cni_policy.c and
#    cni_policy_component_type.o (the world's types).
# 3. `zig cc -target wasm32-wasi -mexec-model=reactor` compiles bridge.c with them into
#    a core module (a library: no main, exports called by the host).
# 4. `wasm-tools component new` turns the core module into a component of the world.
# The component is written to a temporary file next to OUT and renamed onto OUT.
set -euo pipefail

usage() { printf 'usage: %s OUT.wasm\n' "$0" >&2; exit 2; }
(($# == 1)) || usage
out=$1
[[ -n $out ]] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools=${GUEST_TOOLS_DIR:-$repo/.guest-tools}
out_dir=$(cd "$(dirname "$out")" && pwd) || { printf 'build.sh: no directory for %s\n' "$out" >&2; exit 1; }
out=$out_dir/$(basename "$out")

"$repo/scripts/guest-tools.sh"

work=$(mktemp -d)
tmp=$(mktemp "$out_dir/.$(basename "$out").XXXXXX")
trap 'rm -rf "$work" "$tmp"' EXIT

"$tools/bin/wit-bindgen" c "$repo/wit/deps/plugin-0.1.0" --world cni-policy --out-dir "$work" >/dev/null
# the zig cache inside .guest-tools: wasi-libc is built once, then reused
ZIG_GLOBAL_CACHE_DIR=$tools/zig-cache ZIG_LOCAL_CACHE_DIR=$tools/zig-cache \
  "$tools/venv/bin/python" -m ziglang cc -target wasm32-wasi -mexec-model=reactor \
  -Os -std=c11 -Wall -Wextra -Werror -I "$work" \
  -o "$work/core.wasm" "$here/bridge.c" "$work/cni_policy.c" "$work/cni_policy_component_type.o"
"$tools/bin/wasm-tools" component new "$work/core.wasm" -o "$tmp"

chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap 'rm -rf "$work"' EXIT
printf 'build.sh: wrote %s (%s bytes)\n' "$out" "$(stat -c %s "$out")" >&2
