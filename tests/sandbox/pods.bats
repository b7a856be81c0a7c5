#!/usr/bin/env bats
# One pod's call cannot hurt another pod of the same network.
# - The runner remembers each successful ADD's addresses: a host route or an address
#   covering the victim's address is denied ("belongs to another attachment"), and a
#   result claiming it is an invalid result.
# - STATUS and CHECK are read-only: every change they ask for is denied ("read-only").
# - A store key written by attachment A's ADD can be deleted only by A's calls and GC.

load sandbox-helpers

setup() { hostile_setup; }
teardown() { hostile_teardown; }

@test "a host route to another pod's address through the caller's own link is denied" {
  hostile_conf steal-address ".how = \"route\" | .victim_ip = \"$VICTIM_IP\""
  hostile_call ADD evil b
  expect_error 100
  expect_msg "host route: denied: .*belongs to another attachment"
  expect_unchanged
  victim_ok
}

@test "another pod's address on the caller's own pod interface is denied" {
  hostile_conf steal-address ".how = \"address\" | .victim_ip = \"$VICTIM_IP\""
  hostile_call ADD evil b
  expect_error 100
  expect_msg "pod address: denied: .*belongs to another attachment"
  expect_unchanged
  victim_ok
}

@test "a result claiming another pod's address is an invalid result, rolled back" {
  hostile_conf steal-address ".how = \"result\" | .victim_ip = \"$VICTIM_IP\""
  hostile_call ADD evil b
  expect_error 100
  expect_msg "invalid result"
  expect_unchanged
  victim_ok
}

@test "STATUS is read-only: ip_forward, firewall and store writes are denied" {
  write_conf 1.1.0
  jq --arg g "$HOSTILE" '.guest = $g | .hostile = "status-writes"' "$W/conf.json" > "$W/hostile.json"
  hostile_call STATUS "" ""
  expect_unchanged
  [ "$status" -ne 0 ] || { echo "STATUS succeeded: the writes were allowed" >&2; false; }
  expect_msg "ip_forward: denied: [^|]*read-only"
  expect_msg "allow_forward: denied: [^|]*read-only"
  expect_msg "store: denied: [^|]*read-only"
  victim_ok
}

@test "CHECK is read-only: ip_forward, firewall and store writes are denied" {
  jq --arg g "$HOSTILE" --argjson prev "$VICTIM_RESULT" \
    '.guest = $g | .hostile = "status-writes" | .prevResult = $prev' "$W/good.json" > "$W/hostile.json"
  # another attachment's CHECK: the configured (hostile) guest runs it
  hostile_call CHECK evil b
  expect_unchanged
  expect_error 100
  expect_msg "ip_forward: denied: [^|]*read-only"
  expect_msg "allow_forward: denied: [^|]*read-only"
  expect_msg "store: denied: [^|]*read-only"
  # the victim's own CHECK runs the guest that set it up, not the one swapped in
  hostile_call CHECK victim a
  expect_ok
  expect_unchanged
  victim_ok
}

@test "another attachment's IPAM reservation cannot be deleted by an ADD" {
  ip_key="ip%2F$VICTIM_IP" attach_key="attach%2Fvictim%2Feth0"
  [ -f "$W/state/testnet/kv/$ip_key" ]
  [ -f "$W/state/testnet/kv/$attach_key" ]
  hostile_conf delete-reservation ".victim_ip = \"$VICTIM_IP\""
  hostile_call ADD evil b
  # the keys remain (their values: in the snapshot)
  [ -f "$W/state/testnet/kv/$ip_key" ]
  [ -f "$W/state/testnet/kv/$attach_key" ]
  expect_error 100
  expect_msg "delete ip/$VICTIM_IP: denied: .*belongs to another attachment"
  expect_unchanged
  victim_ok
  # the owner's own DEL still releases them
  cni DEL victim a; expect_ok
  [ ! -e "$W/state/testnet/kv/$ip_key" ]
  [ ! -e "$W/state/testnet/kv/$attach_key" ]
}
