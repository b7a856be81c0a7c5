#!/usr/bin/env bats
# Results are checked against the grants: an ADD whose guest
# reports an address outside the pod network, a gateway outside it, or an address on
# an interface the call did not create is answered with an error (code 100, "invalid
# result") and rolled back: the runtime never records such an address for a pod.
# The guest (mode result-outside) really does allowed work first: its veth, an
# address 200.200.1.60/24 on the pod end, a store key.

load sandbox-helpers

setup() { hostile_setup; }
teardown() { hostile_teardown; }

@test "an address outside the pod network (10.0.0.5/16 via 10.0.0.1) is an invalid result, rolled back" {
  hostile_conf result-outside '.result_ip = "10.0.0.5/16" | .result_gw = "10.0.0.1"'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "invalid result"
  expect_unchanged
  victim_ok
}

@test "a gateway outside the pod network is an invalid result, rolled back" {
  hostile_conf result-outside '.result_ip = "200.200.1.60/24" | .result_gw = "10.0.0.1"'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "invalid result"
  expect_unchanged
  victim_ok
}

@test "an address on an interface the call did not create (cni0) is an invalid result, rolled back" {
  hostile_conf result-outside '.result_ip = "200.200.1.60/24" | .result_gw = "200.200.1.1" | .result_ifname = "cni0"'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "invalid result"
  expect_unchanged
  victim_ok
}

@test "control: the same guest with a result inside the grants succeeds" {
  hostile_conf result-outside '.result_ip = "200.200.1.60/24" | .result_gw = "200.200.1.1"'
  hostile_call ADD evil b
  expect_ok
  [ "$(jq -r '.ips[0].address' <<<"$output")" = 200.200.1.60/24 ]
  [ "$(jq -r '.ips[0].gateway' <<<"$output")" = 200.200.1.1 ]
  victim_ok
}
