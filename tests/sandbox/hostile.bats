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

# attack_refused MODE ATTACK WANT: the hostile guest in MODE runs ATTACK (written into
# good.json, which the calls after it keep) and is refused, its error matching WANT (ERE).
attack_refused() {
  jq --arg a "$2" '.attack = $a' "$W/good.json" > "$W/attack.json"
  cp "$W/attack.json" "$W/good.json"
  run_hostile "$1"
  expect_error 100
  grep -Eq "$3" <<<"$output" || { echo "$2: $output" >&2; false; }
}

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

# The cluster interface (host-gw, VXLAN): every refused change is refused after allowed
# work, and the work is undone.
@test "cluster: VXLAN, FDB, neighbour and uplink-route changes outside the grants are refused, nothing stays" {
  cluster_conf
  local attack want
  for attack in vxlan-name vxlan-second vxlan-local vxlan-vni vxlan-mac fdb-remote-outside \
    fdb-not-peer fdb-multicast-mac fdb-uplink fdb-bridge neigh-uplink neigh-outside \
    uplink-route-not-peer uplink-route-wrong-gw uplink-route-outside uplink-route-own \
    uplink-route-no-gw uplink-default-remove uplink-address uplink-down-mtu; do
    case $attack in
      vxlan-vni|vxlan-mac|fdb-multicast-mac) want=": (invalid-argument|denied): " ;;
      fdb-remote-outside) want="fdb: denied: .*(outside the host network|not a peer)" ;;
      *) want=": denied: " ;;
    esac
    attack_refused cluster "$attack" "$want"
  done
  # the node's gateway keeps its real MAC, the uplink its routes
  [ -z "$(ip -n "$NODE" neigh show nud permanent)" ]
  ip -n "$NODE" route show default | grep -q "via 10.0.0.1 dev uplink0"
}

@test "cluster: every allowed cluster change, then a failure, is undone (ADD)" {
  cluster_conf
  run_hostile overlay
  expect_error 100
  grep -q "hostile mode overlay did its work and gives up" <<<"$output"
  grep -Eq "rolled_back=[1-9]" "$W/wasm-cni.log"
}

@test "reconcile: a failing, looping, panicking or attacking reconcile leaves the node as it was" {
  cluster_conf
  local what before after
  for what in overlay loop panic fdb-not-peer neigh-uplink uplink-route-wrong-gw; do
    jq --arg g "$HOSTILE" --arg r "$what" '.guest = $g | .reconcile = $r | .timeoutMs = 500' \
      "$W/good.json" > "$W/rec.json"
    before=$(snapshot)
    reconcile "$W/rec.json"
    after=$(snapshot)
    [ "$status" -ne 0 ] || { echo "$what: reconcile succeeded: $output" >&2; false; }
    if [ "$before" != "$after" ]; then
      diff <(echo "$before") <(echo "$after") >&2 || true
      echo "reconcile $what changed the node" >&2; false
    fi
    case $what in
      loop) grep -q "deadline of 500 ms" <<<"$output" ;;
      panic) grep -q "panics on purpose" <<<"$output" ;;
      overlay) grep -q "gives up" <<<"$output" ;;
      *) grep -q "denied" <<<"$output" ;;
    esac || { echo "$what: $output" >&2; false; }
  done
  ping_from "$T-a" 200.200.1.1
}

@test "cluster: once the VXLAN link exists, a pod's call may not delete it; its entries stay" {
  cluster_conf
  jq --arg g "$HOSTILE" '.guest = $g | .reconcile = "overlay-ok"' "$W/good.json" > "$W/rec.json"
  reconcile "$W/rec.json"
  [ "$status" -eq 0 ] || { echo "$output" >&2; false; }
  bridge -n "$NODE" fdb show dev wcni.1 | grep -q "0e:cc:0a:00:00:04 dst 10.0.0.4"
  ip -n "$NODE" neigh show dev wcni.1 | grep -q "200.200.2.0 lladdr 0e:cc:0a:00:00:04 PERMANENT"
  ip -n "$NODE" route show 200.200.2.128/25 | grep -q "via 10.0.0.4 dev uplink0"
  jq '.attack = "vxlan-delete"' "$W/good.json" > "$W/attack.json"
  cp "$W/attack.json" "$W/good.json"
  run_hostile cluster
  expect_error 100
  grep -q "delete vxlan: denied: " <<<"$output" || { echo "$output" >&2; false; }
  ip -n "$NODE" link show wcni.1 >/dev/null
}

# IPv6 (contract 0.2.0): what is refused for IPv4 is refused for IPv6, and the work the
# guest did first is undone. The network is dual-stack for these.
dual_stack_conf() {
  jq '.myPodNetwork = ["200.200.0.0/16", "fd00:200::/40"]' "$W/good.json" > "$W/ds.json"
  mv "$W/ds.json" "$W/good.json"
}

@test "IPv6: link-local on links it may not change, ::/0 in the host, prefixes outside the pod network are denied" {
  dual_stack_conf
  # the node forwards IPv6 (turning it off must be refused, as for ip_forward)
  ip netns exec "$NODE" sysctl -qw net.ipv6.conf.all.forwarding=1
  local attack
  for attack in link-local-on-uplink link-local-on-bridge link-local-route default-route-host \
    prefix-outside prefix-too-wide forwarding-off accept-ra-uplink masquerade-outside; do
    attack_refused ipv6 "$attack" ": denied: "
  done
  grep -q "denied add address fe80::99/64 to uplink0" "$W/wasm-cni.log"
  grep -q "denied add address fe80::1/64 to cni0" "$W/wasm-cni.log"
  grep -q "denied set sysctl net.ipv6.conf.all.forwarding to 0" "$W/wasm-cni.log"
}

@test "IPv6: forwarding off spelled 0x0, router advertisements accepted on host links, are refused and nothing stays" {
  dual_stack_conf
  ip netns exec "$NODE" sysctl -qw net.ipv6.conf.all.forwarding=1
  local attack want
  for attack in forwarding-off-hex accept-ra-bridge forwarding-off-host-link; do
    case $attack in
      forwarding-off-hex) want="ipv6 forwarding: invalid-argument: .*not a plain decimal integer" ;;
      accept-ra-bridge) want="bridge accept_ra: denied: .*router advertisements" ;;
      forwarding-off-host-link) want="host link ipv6 forwarding: denied: .*router advertisements" ;;
    esac
    attack_refused ipv6 "$attack" "$want"
  done
  grep -q "denied set sysctl net.ipv6.conf.cni0.accept_ra to 2" "$W/wasm-cni.log"
  [ "$(ip netns exec "$NODE" cat /proc/sys/net/ipv6/conf/all/forwarding)" = 1 ]
  [ "$(ip netns exec "$NODE" cat /proc/sys/net/ipv6/conf/cni0/accept_ra)" != 2 ]
}

@test "IPv6: a DEL may not disable IPv6 on the shared bridge (every pod's gateway)" {
  dual_stack_conf
  ip -n "$NODE" addr add fd00:200::1/64 dev cni0 nodad
  jq --arg g "$HOSTILE" '.guest = $g | .del_attack = "disable-ipv6-bridge"' "$W/good.json" > "$W/del.json"
  cni DEL evil b eth0 "$W/del.json"
  expect_error 100
  grep -q "set disable_ipv6: denied: .*serve every pod" <<<"$output" || { echo "$output" >&2; false; }
  ip -n "$NODE" -6 addr show dev cni0 | grep -q 'fd00:200::1/64'
  [ "$(ip netns exec "$NODE" cat /proc/sys/net/ipv6/conf/cni0/disable_ipv6)" = 0 ]
}

@test "IPv6: a gateway of the other family is invalid-argument, and nothing stays" {
  dual_stack_conf
  jq '.attack = "gateway-family"' "$W/good.json" > "$W/attack.json"
  cp "$W/attack.json" "$W/good.json"
  run_hostile ipv6
  expect_error 100
  grep -q "pod default route: invalid-argument: .*IPv4, the destination IPv6" <<<"$output"
}

@test "IPv6: a result claiming another attachment's IPv6 address is refused" {
  dual_stack_conf
  # a dual-stack pod holds fd00:200:1::60
  add_pod c
  jq --arg g "$HOSTILE" '.guest = $g | .hostile = "dual-stack"' "$W/good.json" > "$W/ds.json"
  cni ADD holder c eth0 "$W/ds.json"; expect_ok
  [ "$(jq -r '.ips[1].address' <<<"$output")" = "fd00:200:1::60/64" ]
  jq '.victim_ip = "fd00:200:1::60" | .victim_prefix = "64" | .how = "result" | .gateway = "fd00:200:1::1"' \
    "$W/good.json" > "$W/steal.json"
  cp "$W/steal.json" "$W/good.json"
  run_hostile steal-address
  expect_error 100
  grep -q "belongs to another attachment (holder eth0)" <<<"$output"
  # nor as an address, nor as a host route on its own link
  for how in address route; do
    jq --arg h "$how" '.how = $h' "$W/good.json" > "$W/steal.json"
    cp "$W/steal.json" "$W/good.json"
    run_hostile steal-address
    expect_error 100
    grep -q "another attachment" <<<"$output" || { echo "$how: $output" >&2; false; }
  done
}
