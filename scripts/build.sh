#!/usr/bin/env bash
# Build the runner (native, release) and the default guest (wasm32-wasip2 component),
# and put them where everything else looks for them:
#   dist/bin/wasm-cni          the runner (install as /opt/cni/bin/wasm-cni)
#   dist/bin/wasm-cni-registry `wasm-cni guest push|pull` (wasm-cni execs it from its own directory)
#   dist/guests/default.wasm   the default policy (guest/default; install as /opt/cni/wasm/default.wasm)
#   dist/guests/routed.wasm    the routed point-to-point policy (guest/routed)
#   dist/guests/host-gw.wasm   the default policy + routes to the other nodes' pods (guest/host-gw)
#   dist/guests/vxlan.wasm     the default policy + a VXLAN overlay to the other nodes (guest/vxlan)
#   dist/guests/js-bridge.wasm the default policy in JavaScript (guest/js-bridge; npm)
#   dist/guests/c-bridge.wasm  the default policy in C (guest/c-bridge)
#   dist/guests/py-routed.wasm the routed policy in Python (guest/py-routed)
# With --test-artifacts, also what only the tests use:
#   dist/test/hostile.wasm     a guest that misbehaves on purpose
#   dist/test/misfits/*.wasm   components `wasm-cni guest check` must refuse
#   dist/test/probe.wasm       a 0.2.0 guest that does what the request asks
#   dist/test/wasm-cni-faults  the runner with the fault-injection switch (WASM_CNI_FAIL_AT)
#   dist/test/native-floor     the benchmark's native floor (bench/native-floor; scripts/bench.sh)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "build: adding the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi
# The runner is exec'd for every CNI call: it is linked statically and position-dependent
# (glibc's crt-static, relocation-model=static), so an exec maps one file and applies no
# relocations: a VERSION call costs 0.65 ms against 1.29 ms dynamic PIE and 0.52 ms for
# /bin/true (docs/bench.md, "The process floor"). The flags go through RUSTFLAGS with an
# explicit --target, so they reach the target's crates but not build scripts and proc
# macros (which cannot be static); the binaries land in target/<host triple>/release.
host=$(rustc -vV | sed -n 's/^host: //p')
runner_build() {
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --locked -p wasm-cni --target "$host" "$@"
}
runner_out=target/$host/release

if [ "${1:-}" = --test-artifacts ]; then
  # Built first: it shares $runner_out/wasm-cni with the normal build below, which
  # then only re-copies its own (cached) binary.
  runner_build --bin wasm-cni --features fault-injection
  mkdir -p dist/test
  install -m 0755 "$runner_out/wasm-cni" dist/test/.wasm-cni-faults.tmp
  mv -f dist/test/.wasm-cni-faults.tmp dist/test/wasm-cni-faults
  cargo build --release --locked -p wasm-cni-hostile-guest --target wasm32-wasip2
  install -m 0644 target/wasm32-wasip2/release/wasm_cni_hostile_guest.wasm dist/test/hostile.wasm
  mkdir -p dist/test/misfits
  for f in other-world no-del v03 bad-types; do
    cargo build --release --locked -p wasm-cni-misfit-guests --features "$f" --target wasm32-wasip2
    install -m 0644 target/wasm32-wasip2/release/wasm_cni_misfit_guests.wasm "dist/test/misfits/$f.wasm"
  done
  printf '\0asm\1\0\0\0' > dist/test/misfits/core-module.wasm
  # a 0.2.0 guest that does literally what the request asks (tests/cni/request.bats)
  cargo build --release --locked -p wasm-cni-probe-guest --target wasm32-wasip2
  install -m 0644 target/wasm32-wasip2/release/wasm_cni_probe_guest.wasm dist/test/probe.wasm
  # a C guest that imports an interface outside the world (the C guest's toolchain)
  tests/guests/misfits/c-exec/build.sh dist/test/misfits/c-exec.wasm
  cargo build --release --locked -p wasm-cni-native-floor
  install -m 0755 target/release/native-floor dist/test/.native-floor.tmp
  mv -f dist/test/.native-floor.tmp dist/test/native-floor
fi
runner_build
cargo build --release --locked -p wasm-cni-guest -p wasm-cni-routed-guest \
  -p wasm-cni-host-gw-guest -p wasm-cni-vxlan-guest --target wasm32-wasip2

mkdir -p dist/bin dist/guests
# Copy to a temporary name and rename: a running runner mmaps its binary, and the
# precompiled-cache logic relies on files never being rewritten in place.
install -m 0755 "$runner_out/wasm-cni" dist/bin/.wasm-cni.tmp
mv -f dist/bin/.wasm-cni.tmp dist/bin/wasm-cni
install -m 0755 "$runner_out/wasm-cni-registry" dist/bin/.wasm-cni-registry.tmp
mv -f dist/bin/.wasm-cni-registry.tmp dist/bin/wasm-cni-registry
put_guest() {  # built.wasm name
  install -m 0644 "$1" "dist/guests/.$2.wasm.tmp"
  mv -f "dist/guests/.$2.wasm.tmp" "dist/guests/$2.wasm"
}
put_guest target/wasm32-wasip2/release/wasm_cni_guest.wasm default
put_guest target/wasm32-wasip2/release/wasm_cni_routed_guest.wasm routed
put_guest target/wasm32-wasip2/release/wasm_cni_host_gw_guest.wasm host-gw
put_guest target/wasm32-wasip2/release/wasm_cni_vxlan_guest.wasm vxlan
if [ -z "${SKIP_JS_GUEST:-}" ]; then
  guest/js-bridge/build.sh dist/guests/js-bridge.wasm
fi
# the C and Python guests (their toolchains: scripts/guest-tools.sh, run by setup.sh)
guest/c-bridge/build.sh dist/guests/c-bridge.wasm
guest/py-routed/build.sh dist/guests/py-routed.wasm
for g in dist/guests/*.wasm; do
  dist/bin/wasm-cni guest check "$g" | head -1 >&2
done
echo "build: dist/bin/wasm-cni and dist/guests/*.wasm are ready" >&2
