#!/usr/bin/env bats
# Installing a guest precompiles it into the cache the runner uses: the real runner and
# guests, installed by scripts/node/install-cni.sh into a throwaway ROOT, then the first
# ADD on the "fresh node" must load the guest from that cache (cache=Some(Hit) in the
# call log), never compile it at pod time.

load helpers

setup() {
  common_setup
  NODE_SCRIPT="$REPO/scripts/node/install-cni.sh"
  export ROOT="$BATS_TEST_TMPDIR/root"
  # the node's nft, which install-cni.sh only looks for
  mkdir -p "$ROOT/usr/sbin"
  printf '#!/bin/sh\nexit 0\n' >"$ROOT/usr/sbin/nft"
  chmod +x "$ROOT/usr/sbin/nft"
  NETS=(--host-network 10.0.0.0/16 --pod-network 200.200.0.0/16 --pod-subnet "$SUBNET" --mtu 1500)
  CACHE="$ROOT/var/cache/wasm-cni"
}
teardown() { common_teardown; }

# node_conf: what a runtime hands the runner from the installed conflist (its one
# plugin, with the list's name and version), its paths under ROOT; the cache is the one
# install-cni.sh filled, and the state and log are the test's.
node_conf() {
  jq --arg root "$ROOT" --arg w "$W" '
    .plugins[0] + {cniVersion, name}
    | .guest = $root + .guest
    | .cacheDir = $root + "/var/cache/wasm-cni"
    | .stateDir = $w + "/state" | .logFile = $w + "/wasm-cni.log"' \
    "$ROOT/etc/cni/net.d/10-wasm-cni.conflist" >"$W/node.json"
}

# first_add_hits CID POD: an ADD with the installed conflist succeeds and its call-log
# line says the guest came from the cache
first_add_hits() {
  node_conf
  : >"$W/wasm-cni.log"
  cni ADD "$1" "$2" eth0 "$W/node.json"
  expect_ok
  grep "ADD $1: ok" "$W/wasm-cni.log" | grep -q "cache=Some(Hit)" ||
    { cat "$W/wasm-cni.log" >&2; return 1; }
}

@test "install-cni's cache is the runner's default cacheDir" {
  grep -qx 'CACHE_DIR=/var/cache/wasm-cni' "$NODE_SCRIPT"
  grep -q '^pub const DEFAULT_CACHE_DIR: &str = "/var/cache/wasm-cni";$' "$REPO/runner/src/cni/config.rs"
}

@test "install: the first ADD on the node loads the default guest precompiled at install" {
  run "$NODE_SCRIPT" install --runner "$RUNNER" --default-guest "$GUEST" "${NETS[@]}"
  expect_ok
  [ "$(find "$CACHE" -name '*.cwasm' | wc -l)" = 1 ]
  add_pod a
  first_add_hits ca a
}

@test "guest --file, then guest --default with the cache cleared: each first ADD is a hit" {
  other="$REPO/dist/guests/c-bridge.wasm"  # the default policy, in C: other bytes
  [ -f "$other" ] || { echo "$other missing: run scripts/build.sh" >&2; return 1; }
  run "$NODE_SCRIPT" install --runner "$RUNNER" --default-guest "$GUEST" "${NETS[@]}"
  expect_ok
  run "$NODE_SCRIPT" guest --file "$other" "${NETS[@]}"
  expect_ok
  [ "$(find "$CACHE" -name '*.cwasm' | wc -l)" = 2 ]
  add_pod a; add_pod b
  first_add_hits ca a
  # the cache emptied (a node's cleanup, or a new runner), then back to the default
  rm -rf "$CACHE"
  run "$NODE_SCRIPT" guest --default "${NETS[@]}"
  expect_ok
  first_add_hits cb b
}
