#!/usr/bin/env bats
# The inter-node guests (guest/host-gw, guest/vxlan) on one node, through
# `wasm-cni reconcile -c`: what a full sync creates, that a second sync changes
# nothing, and that a peer leaving the list removes exactly its routes, FDB and
# neighbour entries. The cross-node datapath is tested in the lab (tests/lab.bats).

load ../sandbox/sandbox-helpers

HOSTGW=${WASM_CNI_HOSTGW_GUEST:-$REPO/dist/guests/host-gw.wasm}
VXLAN=${WASM_CNI_VXLAN_GUEST:-$REPO/dist/guests/vxlan.wasm}

setup() {
  common_setup
  local g
  for g in "$HOSTGW" "$VXLAN"; do
    [ -f "$g" ] || { echo "missing $g: run scripts/build.sh" >&2; return 1; }
  done
  add_uplink
  ip -n "$NODE" addr add fd00:10::3/64 dev uplink0 nodad
}
teardown() { common_teardown; }

# cluster_of GUEST PEERS-JSON: $W/cl.json, this node 10.0.0.3 / fd00:10::3 with
# 200.200.1.0/24 and fd00:200:200:1::/64, plus the peers given
cluster_of() {
  jq --arg g "$1" --argjson p "$2" '.guest = $g
    | .myPodNetwork = ["200.200.0.0/16", "fd00:200:200::/48"]
    | .myPodSubnet = ["200.200.1.0/24", "fd00:200:200:1::/64"]
    | .myHostNetwork = ["10.0.0.0/16", "fd00:10::/64"]
    | .peers = ([{name: "self", nodeIP: ["10.0.0.3", "fd00:10::3"],
                  podCIDRs: ["200.200.1.0/24", "fd00:200:200:1::/64"]}] + $p)' \
    "$W/conf.json" > "$W/cl.json"
}

peer() {  # N: the peer node 10.0.0.N with 200.200.N.0/24 and fd00:200:200:N::/64
  printf '{"name": "node-%s", "nodeIP": ["10.0.0.%s", "fd00:10::%s"], "podCIDRs": ["200.200.%s.0/24", "fd00:200:200:%s::/64"]}' \
    "$1" "$1" "$1" "$1" "$1"
}

# What the inter-node policies own on the node: routes into the pod networks through
# the uplink or the VXLAN link, the VXLAN link's static FDB and neighbour entries.
overlay_state() {
  ip -n "$NODE" -4 route show dev uplink0 | grep '^200\.200\.' || true
  ip -n "$NODE" -6 route show dev uplink0 | grep '^fd00:200:200:' || true
  if ip -n "$NODE" link show wcni.1 >/dev/null 2>&1; then
    ip -n "$NODE" -d link show wcni.1 | grep -o 'vxlan id [0-9]* local [^ ]* .*dstport [0-9]*' |
      sed -E 's/ (srcport|ttl|ageing)[^d]*dstport/ dstport/'
    ip -n "$NODE" -o link show wcni.1 | grep -o 'mtu [0-9]*'
    ip -n "$NODE" -4 route show dev wcni.1
    ip -n "$NODE" -6 route show dev wcni.1 | grep -v '^fe80::/64\|^multicast' || true
    bridge -n "$NODE" fdb show dev wcni.1 | grep permanent | grep dst || true
    ip -n "$NODE" neigh show dev wcni.1 nud permanent
  fi
}

sync() {
  reconcile "$W/cl.json"
  [ "$status" -eq 0 ] || { echo "reconcile failed: $output" >&2; return 1; }
}

@test "host-gw: reconcile routes every peer's pod CIDRs via its node IP, both families; a second run changes nothing" {
  cluster_of "$HOSTGW" "[$(peer 4), $(peer 5)]"
  sync
  local s; s=$(overlay_state)
  echo "$s"
  grep -q "^200.200.4.0/24 via 10.0.0.4" <<<"$s"
  grep -q "^200.200.5.0/24 via 10.0.0.5" <<<"$s"
  grep -q "^fd00:200:200:4::/64 via fd00:10::4" <<<"$s"
  grep -q "^fd00:200:200:5::/64 via fd00:10::5" <<<"$s"
  # this node's own CIDR is never routed away
  [ -z "$(grep '^200.200.1.0/24' <<<"$s")" ]
  sync
  [ "$(overlay_state)" = "$s" ]
}

@test "host-gw: a peer leaving the list loses exactly its routes" {
  cluster_of "$HOSTGW" "[$(peer 4), $(peer 5)]"
  sync
  local before after removed
  before=$(overlay_state)
  cluster_of "$HOSTGW" "[$(peer 4)]"
  sync
  after=$(overlay_state)
  removed=$(diff <(echo "$before") <(echo "$after") | grep '^<' || true)
  # only lines removed, every one of them node 5's, both families
  [ -z "$(diff <(echo "$before") <(echo "$after") | grep '^>')" ]
  [ "$(grep -c . <<<"$removed")" -eq 2 ]
  [ -z "$(grep -v '200\.200\.5\.\|fd00:200:200:5::' <<<"$removed")" ]
  # and a peer joining gets its routes
  cluster_of "$HOSTGW" "[$(peer 4), $(peer 6)]"
  sync
  overlay_state | grep -q "^200.200.6.0/24 via 10.0.0.6"
}

@test "vxlan: reconcile makes one VXLAN link (MTU uplink - 50, learning off) with FDB, neighbour and routes per peer" {
  cluster_of "$VXLAN" "[$(peer 4), $(peer 5)]"
  sync
  local s; s=$(overlay_state)
  echo "$s"
  grep -q "vxlan id 1 local 10.0.0.3 .*dstport 8472" <<<"$s"
  grep -qx "mtu 1450" <<<"$s"
  ip -n "$NODE" -d link show wcni.1 | grep -q nolearning
  grep -q "0e:cc:0a:00:00:04 dst 10.0.0.4" <<<"$s"
  grep -q "0e:cc:0a:00:00:05 dst 10.0.0.5" <<<"$s"
  grep -q "^200.200.4.0 lladdr 0e:cc:0a:00:00:04 PERMANENT" <<<"$s"
  grep -q "^fd00:200:200:4:: lladdr 0e:cc:0a:00:00:04 PERMANENT" <<<"$s"
  grep -q "^200.200.4.0/24 via 200.200.4.0" <<<"$s"
  grep -q "^fd00:200:200:5::/64 via fd00:200:200:5::" <<<"$s"
  [ "$(ip -n "$NODE" -o link show type vxlan | grep -c .)" -eq 1 ]
  sync
  [ "$(overlay_state)" = "$s" ]
}

@test "vxlan: a peer leaving the list loses exactly its routes, FDB and neighbour entries" {
  cluster_of "$VXLAN" "[$(peer 4), $(peer 5)]"
  sync
  local before after removed
  before=$(overlay_state)
  cluster_of "$VXLAN" "[$(peer 4)]"
  sync
  after=$(overlay_state)
  diff <(echo "$before") <(echo "$after") || true
  [ -z "$(diff <(echo "$before") <(echo "$after") | grep '^>')" ]
  removed=$(diff <(echo "$before") <(echo "$after") | grep '^<' || true)
  grep -q "0e:cc:0a:00:00:05 dst 10.0.0.5" <<<"$removed"
  grep -q "200.200.5.0 lladdr" <<<"$removed"
  grep -q "fd00:200:200:5:: lladdr" <<<"$removed"
  grep -q "200.200.5.0/24 via 200.200.5.0" <<<"$removed"
  grep -q "fd00:200:200:5::/64 via" <<<"$removed"
  [ -z "$(grep -v '200\.200\.5\.\|fd00:200:200:5::\|0e:cc:0a:00:00:05\|10\.0\.0\.5' <<<"$removed")" ]
}

@test "vxlan: a pod's ADD sets the overlay up lazily and gives the pod the VXLAN MTU" {
  cluster_of "$VXLAN" "[$(peer 4)]"
  add_pod a
  cni ADD ca a eth0 "$W/cl.json"; expect_ok
  ip -n "$NODE" link show wcni.1 >/dev/null
  ip -n "$T-a" -o link show eth0 | grep -q "mtu 1450"
  overlay_state | grep -q "0e:cc:0a:00:00:04 dst 10.0.0.4"
  cni DEL ca a eth0 "$W/cl.json"; expect_ok
}

@test "reconcile: a guest without node-policy has nothing to reconcile; a bad peers list is a clear error" {
  reconcile "$W/conf.json"
  [ "$status" -eq 0 ] || { echo "$output" >&2; false; }
  grep -qi "nothing to reconcile" <<<"$output"
  jq --arg g "$VXLAN" '.guest = $g | .peers = [{nodeIP: "10.0.0.4", podCIDRs: ["9.9.9.0/24"]}]' \
    "$W/conf.json" > "$W/bad.json"
  local before; before=$(snapshot)
  reconcile "$W/bad.json"
  [ "$status" -ne 0 ]
  grep -q "9.9.9.0/24" <<<"$output"
  [ "$(snapshot)" = "$before" ]
}
