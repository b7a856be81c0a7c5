#!/usr/bin/env bash
# Build the JavaScript bridge guest: guests/js-bridge/build.sh OUT.wasm
#
# 1. `npm ci` installs the pinned jco + componentize tools from package-lock.json
#    (only when node_modules is missing or older than the lock file).
# 2. `jco componentize` with the QuickJS backend turns app.js into a component of the
#    world cni-policy of wasm-cni:plugin@0.1.0 (wit/deps/plugin-0.1.0, frozen): a small
#    JS engine plus our code, no WASI. This guest stays on 0.1.0, which the runner keeps
#    serving (IPv4 only); wit/world.wit is 0.2.0.
# 3. The component is written to a temporary file next to OUT and renamed onto OUT, so
#    a runner reading OUT never sees a half-written file.
set -euo pipefail

usage() { printf 'usage: %s OUT.wasm\n' "$0" >&2; exit 2; }
(($# == 1)) || usage
out=$1
[[ -n $out ]] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out_dir=$(cd "$(dirname "$out")" && pwd) || { printf 'build.sh: no directory for %s\n' "$out" >&2; exit 1; }
out=$out_dir/$(basename "$out")

# node_modules/.package-lock.json is what npm ci last installed; reinstall when the
# committed lock file is newer (someone bumped a version) or anything is missing.
stamp=$here/node_modules/.package-lock.json
if [[ ! -f $stamp || $here/package-lock.json -nt $stamp || ! -x $here/node_modules/.bin/jco ]]; then
    printf 'build.sh: npm ci (pinned toolchain from package-lock.json)\n' >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

tmp=$(mktemp "$out_dir/.$(basename "$out").XXXXXX")
trap 'rm -f "$tmp"' EXIT

# --backend quickjs               QuickJS engine (1.6 MB) instead of StarlingMonkey (12 MB)
# --backend-qjs-disable-async     plain synchronous exports: the runner calls them directly
# --backend-qjs-stub-wasi         no WASI imports at all: the guest only talks WIT to the runner
(cd "$here" && ./node_modules/.bin/jco componentize app.js \
    --backend quickjs --backend-qjs-disable-async --backend-qjs-stub-wasi \
    --wit "$repo/wit/deps/plugin-0.1.0" --world-name cni-policy \
    --out "$tmp" >&2)

chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
printf 'build.sh: wrote %s (%s bytes)\n' "$out" "$(stat -c %s "$out")" >&2
