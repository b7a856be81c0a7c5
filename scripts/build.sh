#!/usr/bin/env bash
# Build the runner (native, release) and the default guest (wasm32-wasip2 component),
# and put them where everything else looks for them:
#   dist/bin/wasm-cni          the runner (install as /opt/cni/bin/wasm-cni)
#   dist/guests/default.wasm   the default policy (install as /opt/cni/wasm/default.wasm)
# With --test-artifacts, also what only the tests use:
#   dist/test/hostile.wasm     a guest that misbehaves on purpose
#   dist/test/wasm-cni-faults  the runner with the fault-injection switch (WASM_CNI_FAIL_AT)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "build: adding the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi
if [ "${1:-}" = --test-artifacts ]; then
  # Built first: it shares target/release/wasm-cni with the normal build below, which
  # then only re-copies its own (cached) binary.
  cargo build --release --locked -p wasm-cni --features fault-injection
  mkdir -p dist/test
  install -m 0755 target/release/wasm-cni dist/test/.wasm-cni-faults.tmp
  mv -f dist/test/.wasm-cni-faults.tmp dist/test/wasm-cni-faults
  cargo build --release --locked -p wasm-cni-hostile-guest --target wasm32-wasip2
  install -m 0644 target/wasm32-wasip2/release/wasm_cni_hostile_guest.wasm dist/test/hostile.wasm
fi
cargo build --release --locked -p wasm-cni
cargo build --release --locked -p wasm-cni-guest --target wasm32-wasip2

mkdir -p dist/bin dist/guests
# Copy to a temporary name and rename: a running runner mmaps its binary, and the
# precompiled-cache logic relies on files never being rewritten in place.
install -m 0755 target/release/wasm-cni dist/bin/.wasm-cni.tmp
mv -f dist/bin/.wasm-cni.tmp dist/bin/wasm-cni
install -m 0644 target/wasm32-wasip2/release/wasm_cni_guest.wasm dist/guests/.default.wasm.tmp
mv -f dist/guests/.default.wasm.tmp dist/guests/default.wasm
dist/bin/wasm-cni validate dist/guests/default.wasm >&2
echo "build: dist/bin/wasm-cni and dist/guests/default.wasm are ready" >&2
