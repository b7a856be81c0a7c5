#!/usr/bin/env bats
# The edit-build-check loop a student starts with: new-guest.sh copies the starter,
# build-guest.sh builds and checks it, simulate runs it. Leaves the checkout as it was.

load helpers

setup() {
  kit_setup
  NAME=bats-starter
  cp "$REPO/Cargo.lock" "$BATS_TEST_TMPDIR/Cargo.lock"
}

teardown() {
  rm -rf "$REPO/guests/$NAME" "$REPO/dist/guests/$NAME.wasm"
  cp "$BATS_TEST_TMPDIR/Cargo.lock" "$REPO/Cargo.lock"
}

@test "new-guest + an edit + build-guest give a checked guest that simulate runs" {
  run "$REPO/scripts/new-guest.sh" "$NAME"
  echo "$output"
  [ "$status" -eq 0 ]
  [ -f "$REPO/guests/$NAME/src/lib.rs" ]
  grep -q "^name = \"$NAME\"" "$REPO/guests/$NAME/Cargo.toml"
  # the student's edit: every pod gets an MTU of 1400
  sed -i 's/links::create_veth(&host, &req.ifname, cfg.mtu)/links::create_veth(\&host, \&req.ifname, cfg.mtu.or(Some(1400)))/' \
    "$REPO/guests/$NAME/src/lib.rs"
  grep -q 'Some(1400)' "$REPO/guests/$NAME/src/lib.rs"
  run "$REPO/scripts/build-guest.sh" "$NAME"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *"ok: dist/guests/$NAME.wasm implements wasm-cni:plugin/cni-policy@0.1.0"* ]]
  sim ADD pod-1 -c conf.json -g "$REPO/dist/guests/$NAME.wasm"
  [ "$status" -eq 0 ]
  [[ $output == *'links.create-veth("wc5eac89b8897f", "eth0", 1400) -> ok'* ]]
}

@test "new-guest refuses bad and taken names, leaving nothing behind" {
  run "$REPO/scripts/new-guest.sh" "Bad Name"
  [ "$status" -eq 2 ]
  run "$REPO/scripts/new-guest.sh" routed
  [ "$status" -eq 1 ]
  [[ $output == *"taken by a shipped guest"* ]]
  [ ! -e "$REPO/guests/Bad Name" ]
  cmp "$REPO/Cargo.lock" "$BATS_TEST_TMPDIR/Cargo.lock"
}
