#!/usr/bin/env bash
# Build the misfit C guest: tests/guests/misfits/c-exec/build.sh OUT.wasm
# The world is wit/world.wit (the current contract, 0.2.0) with one more import
# (interface exec); the toolchain is the C bridge guest's (scripts/guest-tools.sh).
set -euo pipefail
(($# == 1)) || { echo "usage: $0 OUT.wasm" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
tools=${GUEST_TOOLS_DIR:-$repo/.guest-tools}
"$repo/scripts/guest-tools.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/wit"
sed 's/^    import log;$/    import log;\n    import exec;/' "$repo/wit/world.wit" > "$work/wit/world.wit"
grep -q '^    import exec;$' "$work/wit/world.wit" || { echo "build.sh: could not add the import" >&2; exit 1; }
cat >> "$work/wit/world.wit" <<'WIT'

/// Not in the runner's world: run a command on the node.
interface exec {
    run: func(command: string) -> string;
}
WIT
"$tools/bin/wit-bindgen" c "$work/wit" --world cni-policy --out-dir "$work" >/dev/null
ZIG_GLOBAL_CACHE_DIR=$tools/zig-cache ZIG_LOCAL_CACHE_DIR=$tools/zig-cache \
  "$tools/venv/bin/python" -m ziglang cc -target wasm32-wasi -mexec-model=reactor -Os -Wall -Werror \
  -I "$work" -o "$work/core.wasm" "$here/exec.c" "$work/cni_policy.c" "$work/cni_policy_component_type.o"
"$tools/bin/wasm-tools" component new "$work/core.wasm" -o "$work/out.wasm"
install -m 0644 "$work/out.wasm" "$out"
