#!/usr/bin/env bash
# Install the toolchains of the C and Python guests when missing, pinned, into the
# project-local .guest-tools/ (nothing in ~/.cargo/bin or the system's Python):
#   .guest-tools/venv/   PyPI: componentize-py, ziglang (guest/requirements.txt)
#   .guest-tools/bin/    crates.io: wit-bindgen (C bindings), wasm-tools (component new)
# Called by scripts/setup.sh and by the guests' build.sh; quick when all is there.
# GUEST_TOOLS_DIR overrides the place.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${GUEST_TOOLS_DIR:-$repo/.guest-tools}
req=$repo/guest/requirements.txt

# crates.io tools: the versions that match wit-bindgen 0.63 (the Rust guests' bindings)
# and wit-component 0.262; only the features the build uses (C bindings; component new)
WIT_BINDGEN_VERSION=0.63.0
WASM_TOOLS_VERSION=1.262.0

say() { printf 'guest-tools: %s\n' "$*" >&2; }
secs() { echo $(( $(date +%s) - $1 )); }

# PyPI: a venv whose installed requirements file is the committed one
if [[ ! -x $tools/venv/bin/python ]] || ! cmp -s "$req" "$tools/venv/requirements.installed"; then
  start=$(date +%s)
  say "PyPI: $(grep -o '^[a-z-]*==[0-9.]*' "$req" | tr '\n' ' ')into $tools/venv"
  python3 -m venv --help >/dev/null 2>&1 || {
    say "python3 has no venv module: installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  }
  rm -rf "$tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
  cp "$req" "$tools/venv/requirements.installed"
  say "PyPI tools installed in $(secs "$start") s"
fi

# crates.io: cargo install --locked, pinned, with its own target dir (removed after)
cargo_tool() {  # crate version binary features
  local crate=$1 version=$2 bin=$3 features=$4 have
  have=$("$tools/bin/$bin" --version 2>/dev/null || true)
  [[ $have == "$bin $version"* || $have == "$crate $version"* ]] && return 0
  command -v cargo >/dev/null || { say "cargo not found: install Rust with rustup first"; exit 1; }
  local start target
  start=$(date +%s)
  target=$(mktemp -d)
  say "crates.io: $crate $version (features: $features) into $tools/bin"
  cargo install --locked --quiet --root "$tools" \
    --target-dir "$target" --version "$version" --no-default-features --features "$features" "$crate"
  rm -rf "$target"
  say "$crate installed in $(secs "$start") s"
}
cargo_tool wit-bindgen-cli "$WIT_BINDGEN_VERSION" wit-bindgen c
cargo_tool wasm-tools "$WASM_TOOLS_VERSION" wasm-tools component
