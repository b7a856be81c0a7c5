#!/usr/bin/env bash
# Start a new policy guest from the starter (the routed guest, one commented file):
#   scripts/new-guest.sh NAME
# creates guests/NAME (a Cargo package named NAME in this workspace). Then:
#   edit guests/NAME/src/lib.rs
#   scripts/build-guest.sh NAME          build + `wasm-cni guest check`
#   dist/bin/wasm-cni simulate ADD pod-1 -c CONF -g dist/guests/NAME.wasm
#   sudo scripts/lab.sh guest dist/guests/NAME.wasm && sudo scripts/lab.sh test
# See docs/guests.md.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

name=${1:-}
if [[ ! $name =~ ^[a-z][a-z0-9-]{0,38}$ ]]; then
  echo "usage: $0 NAME   (lower-case letters, digits and '-', starting with a letter)" >&2
  exit 2
fi
case $name in kit|routed|js-bridge|default) echo "new-guest: '$name' is taken by a shipped guest" >&2; exit 1 ;; esac
# a package name the workspace already resolves (a dependency such as `log` or
# `serde`, or a member) would make `cargo build -p NAME` ambiguous
if grep -qx "name = \"$name\"" "$repo/Cargo.lock"; then
  echo "new-guest: '$name' is already a package name in Cargo.lock: pick another" >&2
  exit 1
fi
dir=$repo/guests/$name
[[ ! -e $dir ]] || { echo "new-guest: $dir exists already" >&2; exit 1; }

mkdir -p "$dir"
trap 'rm -rf "$dir"' ERR
cp -r "$repo/guests/routed/src" "$dir/src"
sed -e "s/^name = \"wasm-cni-routed-guest\"/name = \"$name\"/" \
    -e "s/^description = .*/description = \"A wasm-cni policy guest (started from guests\\/routed)\"/" \
    "$repo/guests/routed/Cargo.toml" > "$dir/Cargo.toml"
grep -q "^name = \"$name\"" "$dir/Cargo.toml" || { rm -rf "$dir"; echo "new-guest: could not rename the package" >&2; exit 1; }
# guests/* are workspace members: record the new package in Cargo.lock (its
# dependencies are the starter's, already locked, so nothing is downloaded)
(cd "$repo" && cargo update --workspace --offline --quiet)
trap - ERR
cat <<MSG
new-guest: guests/$name is ready (a copy of the routed policy).
  edit      guests/$name/src/lib.rs
  build     scripts/build-guest.sh $name            -> dist/guests/$name.wasm, checked
  try       dist/bin/wasm-cni simulate ADD pod-1 -c CONF.json -g dist/guests/$name.wasm -s node.json
  lab       sudo scripts/lab.sh guest dist/guests/$name.wasm && sudo scripts/lab.sh test
MSG
