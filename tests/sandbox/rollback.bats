#!/usr/bin/env bats
# Exact rollback: a failed ADD leaves the node exactly as it was
# before, not merely "the request undone": the previous MTU, the previous route with
# all its attributes, every link's forwarding value, IPv6 state, and the network's
# existing nftables table. Each hostile mode first does allowed work, then one change
# to something that already existed, then gives up (code 100, "did its work").

load sandbox-helpers

setup() { hostile_setup; }
teardown() { hostile_teardown; }

@test "an MTU change on the existing bridge is denied (it serves every pod), the call's work undone" {
  # (the exact undo of an MTU change on a link the call may change is in the gate's
  # unit tests: every_change_is_undone_exactly)
  mtu0=$(ip -n "$NODE" -j link show cni0 | jq '.[0].mtu')
  hostile_conf bridge-mtu
  hostile_call ADD evil b
  expect_error 100
  expect_msg "set mtu: denied: .*only the call that created it may set its MTU"
  expect_unchanged
  [ "$(ip -n "$NODE" -j link show cni0 | jq '.[0].mtu')" = "$mtu0" ]
  victim_ok
}

@test "removed routes come back with all their attributes (proto kernel, src, gateway, metric)" {
  # a kernel route (proto kernel, src) from a second bridge address, a route through a
  # gateway, a route with a metric; none covers the victim's address
  ip -n "$NODE" addr add 200.200.3.1/24 dev cni0
  ip -n "$NODE" route add 200.200.9.0/24 via 200.200.1.9 dev cni0
  ip -n "$NODE" route add 200.200.8.0/24 dev cni0 metric 77
  hostile_conf remove-routes '.routes = "200.200.3.0/24,200.200.9.0/24,200.200.8.0/24"'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "hostile mode remove-routes did its work"
  expect_unchanged
  routes=$(ip -n "$NODE" route show)
  grep -q '^200.200.3.0/24 dev cni0 proto kernel scope link src 200.200.3.1' <<<"$routes"
  grep -q '^200.200.9.0/24 via 200.200.1.9 dev cni0' <<<"$routes"
  grep -q '^200.200.8.0/24 dev cni0 .*metric 77' <<<"$routes"
  victim_ok
}

@test "writing ip_forward then failing restores every link's forwarding value" {
  # a node that does not forward, with one link that does: writing ip_forward copies
  # the value into every link, and undoing it (back to 0) would zero that link too
  ip -n "$NODE" link add mgmt0 type veth peer name mgmt1
  ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=0
  ip netns exec "$NODE" sysctl -qw net.ipv4.conf.mgmt0.forwarding=1
  hostile_conf ip-forward '.value = "1"'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "hostile mode ip-forward did its work"
  expect_unchanged
  [ "$(ip netns exec "$NODE" cat /proc/sys/net/ipv4/ip_forward)" = 0 ]
  [ "$(ip netns exec "$NODE" cat /proc/sys/net/ipv4/conf/mgmt0/forwarding)" = 1 ]
  victim_ok
}

@test "turning ip_forward off is denied: it would stop forwarding for every network" {
  [ "$(ip netns exec "$NODE" cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
  hostile_conf ip-forward '.value = "0"'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "set ip_forward: denied: .*every network on the node"
  expect_unchanged
  victim_ok
}

@test "disable_ipv6 on a link the call did not create (the bridge) is denied" {
  [ -d /proc/sys/net/ipv6 ] || { echo "this test needs IPv6 (built into the kernels here)" >&2; false; }
  # toggling disable_ipv6 deletes the link's IPv6 addresses and routes: not undoable
  ip -n "$NODE" addr add fd00:200::1/64 dev cni0 nodad
  hostile_conf disable-ipv6
  hostile_call ADD evil b
  expect_error 100
  expect_unchanged
  expect_msg "set disable_ipv6: denied: .*(cannot be undone|serve every pod)"
  grep -Eq "denied.*net.ipv6.conf.cni0.disable_ipv6" "$W/wasm-cni.log"
  ip -n "$NODE" -6 addr show dev cni0 | grep -q 'fd00:200::1/64'
  [ "$(ip netns exec "$NODE" cat /proc/sys/net/ipv6/conf/cni0/disable_ipv6)" = 0 ]
  victim_ok
}

@test "changes to the network's existing nftables table are undone exactly" {
  table0=$(ip netns exec "$NODE" nft list table ip wasm_cni_testnet)
  grep -q 'masquerade' <<<"$table0"
  # a new forward chain, and the masquerade rule's except list rewritten
  hostile_conf firewall-change
  hostile_call ADD evil b
  expect_error 100
  expect_msg "hostile mode firewall-change did its work"
  expect_unchanged
  [ "$(ip netns exec "$NODE" nft list table ip wasm_cni_testnet)" = "$table0" ]
  victim_ok
}
