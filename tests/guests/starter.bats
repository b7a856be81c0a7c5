#!/usr/bin/env bats
# The edit-build-check loop a student starts with: new-guest.sh copies the starter,
# build-guest.sh builds and checks it, simulate runs it. Leaves the checkout as it was.

load helpers

setup() {
  kit_setup
  NAME=bats-starter
  cp "$REPO/Cargo.lock" "$BATS_TEST_TMPDIR/Cargo.lock"
  cp "$REPO/Cargo.toml" "$BATS_TEST_TMPDIR/Cargo.toml"
}

teardown() {
  rm -rf "$REPO/guest/$NAME" "$REPO/dist/guests/$NAME.wasm"
  cp "$BATS_TEST_TMPDIR/Cargo.lock" "$REPO/Cargo.lock"
  cp "$BATS_TEST_TMPDIR/Cargo.toml" "$REPO/Cargo.toml"
}

@test "new-guest + an edit + build-guest give a checked guest that simulate runs" {
  run "$REPO/scripts/new-guest.sh" "$NAME"
  echo "$output"
  [ "$status" -eq 0 ]
  [ -f "$REPO/guest/$NAME/src/lib.rs" ]
  grep -q "^name = \"$NAME\"" "$REPO/guest/$NAME/Cargo.toml"
  # the student's edit: every pod gets an MTU of 1400
  sed -i 's/links::create_veth(&host, &req.ifname, cfg.mtu, mac)/links::create_veth(\&host, \&req.ifname, cfg.mtu.or(Some(1400)), mac)/' \
    "$REPO/guest/$NAME/src/lib.rs"
  grep -q 'Some(1400)' "$REPO/guest/$NAME/src/lib.rs"
  run "$REPO/scripts/build-guest.sh" "$NAME"
  echo "$output"
  [ "$status" -eq 0 ]
  # the Rust starter is built on the current contract
  [[ $output == *"ok: dist/guests/$NAME.wasm implements wasm-cni:plugin/cni-policy@0.2.0"* ]]
  sim ADD pod-1 -c conf.json -g "$REPO/dist/guests/$NAME.wasm"
  [ "$status" -eq 0 ]
  [[ $output == *'links.create-veth("wc5eac89b8897f", "eth0", 1400, none) -> ok'* ]]
}

@test "new-guest refuses bad and taken names, leaving nothing behind" {
  run "$REPO/scripts/new-guest.sh" "Bad Name"
  [ "$status" -eq 2 ]
  run "$REPO/scripts/new-guest.sh" routed
  [ "$status" -eq 1 ]
  [[ $output == *"taken by a shipped guest"* ]]
  [ ! -e "$REPO/guest/Bad Name" ]
  cmp "$REPO/Cargo.lock" "$BATS_TEST_TMPDIR/Cargo.lock"
}

@test "new-guest --lang c and --lang python start from the C and Python guests, which build, check and run" {
  local lang file edit
  for lang in c python; do
    case $lang in
      c) file=bridge.c; edit='s/info(fmt("pod %s got %s on %s", cid, cidr, host));/info(fmt("pod %s got %s on %s (edited)", cid, cidr, host));/' ;;
      python) file=app.py; edit='s/info(f"pod {req.container_id} got {pod} on {host}")/info(f"pod {req.container_id} got {pod} on {host} (edited)")/' ;;
    esac
    run "$REPO/scripts/new-guest.sh" "$NAME" --lang "$lang"
    echo "$output"
    [ "$status" -eq 0 ]
    [ -f "$REPO/guest/$NAME/$file" ]
    [ -x "$REPO/guest/$NAME/build.sh" ]
    [ ! -e "$REPO/guest/$NAME/Cargo.toml" ]
    # not a Rust package: the workspace excludes it (cargo still loads the workspace)
    grep -q "^exclude = .*\"guest/$NAME\"" "$REPO/Cargo.toml"
    (cd "$REPO" && cargo metadata --no-deps --format-version 1 --offline >/dev/null)
    sed -i "$edit" "$REPO/guest/$NAME/$file"
    grep -q '(edited)' "$REPO/guest/$NAME/$file"
    run "$REPO/scripts/build-guest.sh" "$NAME"
    echo "$output"
    [ "$status" -eq 0 ]
    # the C and Python starters stay on contract 0.1.0, which the runner still serves
    [[ $output == *"ok: dist/guests/$NAME.wasm implements wasm-cni:plugin/cni-policy@0.1.0"* ]]
    sim ADD pod-1 -c conf.json -g "$REPO/dist/guests/$NAME.wasm"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *'log.write(info, "pod pod-1 got 200.200.1.2/'*' on wc5eac89b8897f (edited)")'* ]]
    rm -rf "$REPO/guest/$NAME"
    cp "$BATS_TEST_TMPDIR/Cargo.toml" "$REPO/Cargo.toml"
  done
  run "$REPO/scripts/new-guest.sh" "$NAME" --lang cobol
  [ "$status" -eq 2 ]
  [[ $output == *"--lang is rust, js, c or python"* ]]
  [ ! -e "$REPO/guest/$NAME" ]
}
