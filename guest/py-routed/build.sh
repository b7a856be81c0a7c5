#!/usr/bin/env bash
# Build the Python routed guest: guests/py-routed/build.sh OUT.wasm
#
# 1. scripts/guest-tools.sh installs the pinned toolchain when missing
#    (componentize-py from PyPI into .guest-tools/venv).
# 2. `componentize-py -d wit/deps/plugin-0.1.0 -w cni-policy componentize app`
#    generates the bindings of the world of wasm-cni:plugin@0.1.0 (frozen; this guest
#    stays on 0.1.0, which the runner keeps serving, IPv4 only) as the `wit_world`
#    package, and packs CPython, app.py and the modules it
#    imports into one component, initialized at build time (imports done).
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

tmp=$(mktemp "$out_dir/.$(basename "$out").XXXXXX")
src=$(mktemp -d)
trap 'rm -rf "$tmp" "$src"' EXIT
# built from a copy: componentize-py leaves __pycache__ next to the module it imports
cp "$here/app.py" "$src/"
(cd "$src" && "$tools/venv/bin/componentize-py" \
    -d "$repo/wit/deps/plugin-0.1.0" -w cni-policy componentize app -p "$src" -o "$tmp" >&2)

chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap 'rm -rf "$src"' EXIT
printf 'build.sh: wrote %s (%s bytes)\n' "$out" "$(stat -c %s "$out")" >&2
