#!/usr/bin/env bats
# `wasm-cni reconcile -c FILE` before it touches the node: which entry of a list it
# takes, what it checks, and that a guest without node-level work has nothing to do
# (no root needed: it stops before the network's lock). The node-level guests' runs
# are in tests/cni/reconcile.bats.

load helpers

setup() {
  kit_setup
  # a conflist as the scripts write it: our entry among others, paths in the test dir
  jq -n --arg w "$W" --arg g "$GUESTS/default.wasm" '{
      cniVersion: "1.0.0", name: "lab",
      plugins: [
        {type: "wasm-cni", guest: $g, cacheDir: "\($w)/cache", stateDir: "\($w)/state",
         logFile: "\($w)/wasm-cni.log", myHostNetwork: "10.0.0.0/16",
         myPodNetwork: "200.200.0.0/16", myPodSubnet: "200.200.1.0/24",
         peers: [{name: "w1", nodeIP: "10.0.0.2", podCIDRs: ["200.200.1.0/24"]},
                 {name: "w2", nodeIP: "10.0.0.3", podCIDRs: ["200.200.2.0/24"]}]},
        {type: "portmap", capabilities: {portMappings: true}}
      ]}' > list.conflist
}

@test "reconcile: a guest without the node-policy export has nothing to reconcile (exit 0), and the call is logged" {
  run "$RUNNER" reconcile -c list.conflist
  [ "$status" -eq 0 ] || { echo "$output"; false; }
  [ "$output" = "guest $GUESTS/default.wasm has no node-policy export: nothing to reconcile" ]
  grep -q "RECONCILE.*ok .*nothing to reconcile" wasm-cni.log || { cat wasm-cni.log; false; }
  # nothing of the network's state was created: it never took the lock
  [ ! -e state/lab ]
  # a 0.1.0 guest cannot have it: the same answer
  jq --arg g "$REPO/tests/guests/fixtures/default-0.1.0.wasm" '.plugins[0].guest = $g' \
    list.conflist > old.conflist
  run "$RUNNER" reconcile -c old.conflist
  [ "$status" -eq 0 ]
  [[ $output == *"default-0.1.0.wasm has no node-policy export: nothing to reconcile" ]]
  # the wasm-cni entry of a .conf file alone works the same
  jq '.plugins[0] + {cniVersion, name}' list.conflist > one.conf
  run "$RUNNER" reconcile -c one.conf
  [ "$status" -eq 0 ]
  [[ $output == *"nothing to reconcile" ]]
}

@test "reconcile: a list without a wasm-cni entry, or a bad peers list, is refused naming what is wrong" {
  jq '.plugins = [.plugins[1]]' list.conflist > none.conflist
  run "$RUNNER" reconcile -c none.conflist
  [ "$status" -eq 1 ]
  [[ $output == *'the list has no plugin of type "wasm-cni" (types: portmap)'* ]]
  jq '.plugins[0].peers[1].podCIDRs = ["200.200.1.128/25"]' list.conflist > overlap.conflist
  run "$RUNNER" reconcile -c overlap.conflist
  [ "$status" -eq 1 ]
  [[ $output == *'peers[1] ("w2"): podCIDR 200.200.1.128/25 overlaps 200.200.1.0/24 of peers[0] ("w1")'* ]]
  jq '.plugins[0].peers[0].podCIDRs = ["10.9.0.0/24"]' list.conflist > outside.conflist
  run "$RUNNER" reconcile -c outside.conflist
  [ "$status" -eq 1 ]
  [[ $output == *'peers[0] ("w1"): podCIDR 10.9.0.0/24 is not inside the IPv4 pod network (200.200.0.0/16)'* ]]
  run "$RUNNER" reconcile -c missing.conflist
  [ "$status" -eq 1 ]
  [[ $output == *missing.conflist* ]]
}

@test "simulate RECONCILE: a guest without the export has nothing to reconcile; guest check says so" {
  sim RECONCILE -c list.conflist
  [ "$status" -eq 0 ] || { echo "$output"; false; }
  [[ $output == *"has no node-policy export: nothing to reconcile"* ]]
  run "$RUNNER" guest check "$GUESTS/default.wasm"
  [[ $output == *"no wasm-cni:plugin/node-policy export"* ]]
}
