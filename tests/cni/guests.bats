#!/usr/bin/env bats
# Which guest runs: a pinned digest (guestDigest) refuses other bytes, and the DEL of
# a pod runs the guest that set it up, also after the config was swapped to another.

load helpers

setup() { common_setup; }
teardown() { common_teardown; }

HOSTILE=${WASM_CNI_HOSTILE:-$REPO/dist/test/hostile.wasm}

digest_of() { "$RUNNER" guest check "$1" | awk '$1 == "digest" { print $2 }'; }

@test "guest check prints the sha256 digest that guestDigest pins" {
  run digest_of "$GUEST"
  [ "$status" -eq 0 ]
  [ "$output" = "sha256:$(sha256sum "$GUEST" | cut -d' ' -f1)" ]
}

@test "a pinned guest whose file changed is refused with code 7 naming both digests, and nothing is set up" {
  cp "$GUEST" "$W/guest.wasm"
  pin=$(digest_of "$W/guest.wasm")
  write_conf 1.1.0 ".guest = \"$W/guest.wasm\" | .guestDigest = \"$pin\""
  add_pod a; add_pod b
  cni ADD ca a; expect_ok
  # the file is replaced by another guest (a student's upload over the pinned one)
  cp "$REPO/dist/guests/routed.wasm" "$W/guest.wasm"
  other=$(digest_of "$W/guest.wasm")
  [ "$other" != "$pin" ]
  cni ADD cb b
  expect_error 7
  grep -qF "$pin" <<<"$output"
  grep -qF "$other" <<<"$output"
  # b got nothing: no link for it, no address recorded for it
  [ "$(node_links | grep -c '^wc')" -eq 1 ]
  [ "$(store_keys | grep -c '^ip%2F')" -eq 1 ]
  # a malformed pin is an invalid config
  write_conf 1.1.0 '.guestDigest = "sha256:1234"'
  cni ADD cb b
  expect_error 7
  grep -q guestDigest <<<"$output"
}

@test "after a swap, GC of a default-guest pod the runtime lost drops the kept copy with it" {
  [ -f "$HOSTILE" ] || { echo "$HOSTILE missing: run scripts/build.sh --test-artifacts" >&2; false; }
  write_conf 1.1.0
  add_pod a
  cni ADD ca a; expect_ok
  d=$(digest_of "$GUEST")
  kept="$W/state/testnet/guests/${d#sha256:}.wasm"
  cmp "$GUEST" "$kept"
  # swapped, and the runtime no longer knows the pod: GC with no valid attachment
  write_conf 1.1.0 ".guest = \"$HOSTILE\" | .[\"cni.dev/valid-attachments\"] = []"
  cni GC "" ""; expect_ok
  # the runner released the lost pod's addresses, so no live pod needs the old guest
  [ ! -e "$kept" ]
}

@test "after a swap, DEL runs the guest that set the pod up; its kept copy goes with its last pod" {
  [ -f "$HOSTILE" ] || { echo "$HOSTILE missing: run scripts/build.sh --test-artifacts" >&2; false; }
  write_conf 1.1.0
  add_pod a; add_pod b; add_pod c
  cni ADD ca a; expect_ok
  cni ADD cb b; expect_ok
  d=$(digest_of "$GUEST")
  kept="$W/state/testnet/guests/${d#sha256:}.wasm"
  cmp "$GUEST" "$kept"
  # swap to a guest that knows nothing of the default guest's layout: its DEL does nothing
  write_conf 1.1.0 ".guest = \"$HOSTILE\""
  cni DEL ca a; expect_ok
  grep -q "attachment \"ca eth0\" was set up by guest $d: running it" "$W/wasm-cni.log"
  cni DEL cb b; expect_ok
  # the default guest's DEL ran: no host link, no address, no reservation left
  [ -z "$(node_links | grep '^wc' || true)" ]
  [ -z "$(store_keys | grep -E '^(ip|attach)%2F' || true)" ]
  # no pod needs the old guest any more
  [ ! -e "$kept" ]
  # a pod the new guest handles is the new guest's: no kept copy is asked for (this guest
  # refuses an ADD without a mode; its DEL is a no-op)
  cni ADD cc c
  expect_error 7
  cni DEL cc c; expect_ok
  run grep -c "was set up by guest" "$W/wasm-cni.log"
  [ "$output" -eq 2 ]
}
