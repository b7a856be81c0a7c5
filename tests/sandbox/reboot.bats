#!/usr/bin/env bats
# A node that reboots. The store survives a reboot while every pod
# namespace, veth, the bridge and the firewall are gone, and a runtime without CNI GC
# never sends DEL for them. The store records the boot id in
# $stateDir/<network>/boot_id; a call that finds another boot id there clears the
# network's store first, so a full pool is free again.

load sandbox-helpers

setup() {
  # shellcheck disable=SC2034 # read by write_conf (tests/cni/helpers.bash)
  SUBNET=200.200.1.0/29 # 5 pod addresses: .2 to .6
  common_setup
  add_uplink
}
teardown() { hostile_teardown; }

# Fill the pool: pods p1..p5, then a 6th ADD finds it exhausted (101).
fill_pool() {
  local i
  for i in 1 2 3 4 5; do
    add_pod "p$i"
    cni ADD "p$i" "p$i"; expect_ok
    ping_from "$T-p$i" 200.200.1.1
  done
  add_pod p6
  cni ADD p6 p6; expect_error 101
}

# What a reboot leaves: no pod namespaces, no host links, no bridge, no firewall table,
# ip_forward off; the store on disk untouched. No DEL is sent.
reboot_node() {
  local i l
  for i in 1 2 3 4 5 6; do ip netns del "$T-p$i" 2>/dev/null || true; done
  for l in $(node_links | grep '^wc' || true) cni0; do
    ip -n "$NODE" link del "$l" 2>/dev/null || true
  done
  ip netns exec "$NODE" nft delete table ip wasm_cni_testnet 2>/dev/null || true
  ip netns exec "$NODE" nft delete table ip6 wasm_cni_testnet 2>/dev/null || true
  ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=0
  ip netns exec "$NODE" sysctl -qw net.ipv6.conf.all.forwarding=0
  [ -z "$(node_links | grep -v '^uplink0$' || true)" ]
}

@test "after a reboot (another boot id) a full pool is free again without any DEL" {
  fill_pool
  reboot_node
  # as if the store had been written in an earlier boot
  cat /proc/sys/kernel/random/uuid > "$W/state/testnet/boot_id"
  for i in 1 2 3 4 5; do
    add_pod "q$i"
    cni ADD "q$i" "q$i"
    expect_ok
    ping_from "$T-q$i" 200.200.1.1
  done
  # the old reservations are gone, and the store now records this boot
  [ -z "$(store_keys | grep -E 'attach%2Fp[0-9]' || true)" ]
  [ "$(cat "$W/state/testnet/boot_id")" = "$(cat /proc/sys/kernel/random/boot_id)" ]
  # and the pool is full again with the new pods
  add_pod q6
  cni ADD q6 q6; expect_error 101
}

@test "control: the same boot id keeps the reservations (the pool stays exhausted)" {
  fill_pool
  reboot_node
  add_pod q1
  cni ADD q1 q1
  expect_error 101
  [ -n "$(store_keys | grep -E 'attach%2Fp1' || true)" ]
}
