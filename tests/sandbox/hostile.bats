#!/usr/bin/env bats
# A corpus of hostile guests: each must end in a CNI error within its
# deadline, and leave the node, the pod and the store exactly as they were.

load sandbox-helpers

setup() {
  common_setup
  [ -f "$HOSTILE" ] || { echo "missing $HOSTILE: run scripts/build.sh --test-artifacts" >&2; return 1; }
  add_uplink
  add_pod a; add_pod b
  # A healthy pod first: node setup exists, and there is another pod to protect.
  cni ADD victim a; expect_ok
  VICTIM_LINK=$(jq -r '.interfaces[0].name' <<<"$output")
  cp "$W/conf.json" "$W/good.json"
}
teardown() { common_teardown; }

# run_hostile MODE [timeoutMs]: ADD pod b with the hostile guest; checks the snapshot.
run_hostile() {
  local mode=$1 timeout=${2:-2000}
  jq --arg g "$HOSTILE" --arg m "$mode" --argjson t "$timeout" \
    '.guest = $g | .hostile = $m | .target = "uplink0" | .victim = "victim" | .timeoutMs = $t' \
    "$W/good.json" > "$W/hostile.json"
  before=$(snapshot "$T-b")
  local t0 t1
  t0=$(date +%s%N)
  cni ADD evil b eth0 "$W/hostile.json"
  t1=$(date +%s%N)
  elapsed_ms=$(( (t1 - t0) / 1000000 ))
  after=$(snapshot "$T-b")
  if [ "$before" != "$after" ]; then
    diff <(echo "$before") <(echo "$after") >&2 || true
    echo "mode $mode changed the node" >&2
    return 1
  fi
  # the victim pod still works
  ping_from "$T-a" 200.200.1.1
  ip -n "$NODE" link show "$VICTIM_LINK" >/dev/null
}

@test "infinite loop: code 11 naming the deadline, answered within deadline + margin" {
  # warm the cache so compile time is not in the measured call
  jq --arg g "$HOSTILE" '.guest = $g | .hostile = "garbage"' "$W/good.json" > "$W/warm.json"
  cni ADD warm b eth0 "$W/warm.json" || true
  run_hostile loop 300
  expect_error 11
  grep -q "deadline of 300 ms" <<<"$output"
  [ "$elapsed_ms" -lt 1800 ] || { echo "took $elapsed_ms ms" >&2; false; }
}

@test "memory bomb: error naming the memory limit" {
  run_hostile membomb
  expect_error 100
  grep -q "memory limit of 64 MiB" <<<"$output"
}

@test "panic: error with the guest's panic message" {
  run_hostile panic
  expect_error 100
  grep -q "panics on purpose" <<<"$output"
}

@test "garbage result is refused" {
  run_hostile garbage
  expect_error 100
  grep -q "invalid result" <<<"$output"
}

@test "oversize result is refused" {
  run_hostile oversize
  expect_error 100
  grep -q "invalid result" <<<"$output"
}

@test "deleting the node's uplink is denied and the call's own work rolled back" {
  run_hostile delete-uplink
  expect_error 100
  grep -q "node's uplink" <<<"$output"
  grep -q "denied delete link uplink0" "$W/wasm-cni.log"
  ip -n "$NODE" link show uplink0 >/dev/null
}

@test "adding an address to the uplink is denied" {
  run_hostile address-on-uplink
  expect_error 100
  grep -q "denied add address 200.200.1.99/24 to uplink0" "$W/wasm-cni.log"
}

@test "touching another pod's link is denied" {
  run_hostile other-pod
  expect_error 100
  grep -q "other links belong to other pods" <<<"$output"
}

@test "a route outside the pod network is denied (container and host)" {
  run_hostile route-outside
  expect_error 100
  grep -q "outside the pod network" <<<"$output"
  run_hostile host-route
  expect_error 100
  grep -q "name the link" <<<"$output"
}

@test "a sysctl off the allow-list is denied" {
  run_hostile sysctl-off-list
  expect_error 100
  grep -q "not on the allow-list" <<<"$output"
}

@test "a store key outside the network is denied" {
  run_hostile store-outside
  expect_error 100
  grep -q "refused" <<<"$output"
}

@test "a firewall rule outside the pod network is denied" {
  run_hostile firewall-outside
  expect_error 100
  grep -q "firewall rule for 10.0.0.0/16" <<<"$output"
}

@test "a policy error after real work is rolled back completely" {
  run_hostile error-after-work
  expect_error 150
  grep -q "rolled_back=" "$W/wasm-cni.log"
}
