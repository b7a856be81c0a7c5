#!/usr/bin/env bash
# Start a new policy guest from a starter in the language you know:
#   scripts/new-guest.sh NAME [--lang rust|js|c|python]      (default: rust)
# creates guest/NAME, a copy of the starter of that language:
#   rust    guest/routed      the routed policy (a Cargo package named NAME in this workspace;
#                             contract 0.2.0: IPv4, IPv6 or both, requested ips/mac)
#   js      guest/js-bridge   the bridge policy in JavaScript (jco, QuickJS; contract 0.1.0)
#   c       guest/c-bridge    the bridge policy in C (wit-bindgen, zig cc, wasm-tools; 0.1.0)
#   python  guest/py-routed   the routed policy in Python (componentize-py; 0.1.0)
# The runner serves both contract versions; `wasm-cni guest check` names a guest's.
# Then:
#   edit guest/NAME/...
#   scripts/build-guest.sh NAME          build + `wasm-cni guest check`
#   dist/bin/wasm-cni simulate ADD pod-1 -c CONF -g dist/guests/NAME.wasm
#   sudo scripts/lab.sh guest dist/guests/NAME.wasm && sudo scripts/lab.sh test
# See docs/guests.md.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  echo "usage: $0 NAME [--lang rust|js|c|python]   (NAME: lower-case letters, digits and '-', starting with a letter)" >&2
  exit 2
}
name=${1:-}
lang=rust
(($# >= 1)) || usage
shift
while (($#)); do
  case $1 in
    --lang) (($# >= 2)) || usage; lang=$2; shift 2 ;;
    --lang=*) lang=${1#--lang=}; shift ;;
    *) usage ;;
  esac
done
[[ $name =~ ^[a-z][a-z0-9-]{0,38}$ ]] || usage
case $lang in
  rust) starter=routed; edit=src/lib.rs ;;
  js) starter=js-bridge; edit=app.js ;;
  c) starter=c-bridge; edit=bridge.c ;;
  python) starter=py-routed; edit=app.py ;;
  *) echo "new-guest: --lang is rust, js, c or python, not '$lang'" >&2; exit 2 ;;
esac
case $name in kit|routed|js-bridge|c-bridge|py-routed|default|host-gw|vxlan) echo "new-guest: '$name' is taken by a shipped guest" >&2; exit 1 ;; esac
# a package name the workspace already resolves (a dependency such as `log` or
# `serde`, or a member) would make `cargo build -p NAME` ambiguous
if grep -qx "name = \"$name\"" "$repo/Cargo.lock"; then
  echo "new-guest: '$name' is already a package name in Cargo.lock: pick another" >&2
  exit 1
fi
dir=$repo/guest/$name
[[ ! -e $dir ]] || { echo "new-guest: $dir exists already" >&2; exit 1; }

mkdir -p "$dir"
trap 'rm -rf "$dir"' ERR
src=$repo/guest/$starter
if [[ $lang == rust ]]; then
  cp -r "$src/src" "$dir/src"
  sed -e "s/^name = \"wasm-cni-routed-guest\"/name = \"$name\"/" \
      -e "s/^description = .*/description = \"A wasm-cni policy guest (started from guest\\/routed)\"/" \
      "$src/Cargo.toml" > "$dir/Cargo.toml"
  grep -q "^name = \"$name\"" "$dir/Cargo.toml" || { rm -rf "$dir"; echo "new-guest: could not rename the package" >&2; exit 1; }
  # guest/* are workspace members: record the new package in Cargo.lock (its
  # dependencies are the starter's, already locked, so nothing is downloaded)
  (cd "$repo" && cargo update --workspace --offline --quiet)
else
  # the policy file, its build.sh (and for JavaScript the pinned npm tool list)
  for f in "$edit" build.sh package.json package-lock.json; do
    [[ -f $src/$f ]] && cp -p "$src/$f" "$dir/$f"
  done
  # guest/* are Cargo workspace members unless excluded: exclude this one
  if ! grep -q "\"guest/$name\"" "$repo/Cargo.toml"; then
    sed -i "s|^exclude = \[\(.*\)\]\$|exclude = [\1, \"guest/$name\"]|" "$repo/Cargo.toml"
    grep -q "^exclude = .*\"guest/$name\"" "$repo/Cargo.toml" ||
      { rm -rf "$dir"; echo "new-guest: could not add guest/$name to the workspace's exclude list in Cargo.toml" >&2; exit 1; }
  fi
fi
trap - ERR
cat <<MSG
new-guest: guest/$name is ready (a copy of guest/$starter, $lang).
  edit      guest/$name/$edit
  build     scripts/build-guest.sh $name            -> dist/guests/$name.wasm, checked
  try       dist/bin/wasm-cni simulate ADD pod-1 -c CONF.json -g dist/guests/$name.wasm -s node.json
  lab       sudo scripts/lab.sh guest dist/guests/$name.wasm && sudo scripts/lab.sh test
MSG
