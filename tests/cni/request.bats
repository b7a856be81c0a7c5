#!/usr/bin/env bats
# The runner's 0.2.0 path, end to end: a 0.2.0 guest (tests/guests/probe, which does
# literally what the request asks) gets the requested address and MAC from
# runtimeConfig and CNI_ARGS, and create-veth's container-mac reaches the kernel.

load helpers

setup() {
  GUEST=${WASM_CNI_PROBE:-$REPO/dist/test/probe.wasm}
  common_setup
  add_pod a
}
teardown() { common_teardown; }

# cni_args COMMAND ARGS [CONF]: like `cni COMMAND ca a`, with CNI_ARGS=ARGS
cni_args() {
  cni_env "${3:-$W/conf.json}" CNI_COMMAND="$1" CNI_CONTAINERID=ca CNI_NETNS="/run/netns/$T-a" \
    CNI_IFNAME=eth0 CNI_ARGS="$2"
}

@test "guest check: the probe implements 0.2.0, no adapter" {
  run "$RUNNER" guest check "$GUEST"
  [ "$status" -eq 0 ]
  [[ ${lines[0]} == "ok: $GUEST implements wasm-cni:plugin/cni-policy@0.2.0" ]]
  [[ $output == *"import wasm-cni:plugin/links@0.2.0: create-veth"* ]]
  [[ $output != *adapter* ]]
  # precompiled into a cache, then loaded from it, as a 0.1.0 guest is
  run "$RUNNER" guest check --cache-dir "$W/gcache" "$GUEST"
  [ "$status" -eq 0 ]
  [[ ${lines[1]} == *" ms into $W/gcache" ]]
  run "$RUNNER" guest check --cache-dir "$W/gcache" "$GUEST"
  [ "$status" -eq 0 ]
  [[ ${lines[0]} == *"@0.2.0" && ${lines[1]} == *"already compiled in $W/gcache (loaded in "* ]]
}

@test "a 0.2.0 guest gets runtimeConfig's ips and mac; the container end has that MAC from the kernel" {
  write_conf 1.1.0 '. + {runtimeConfig: {ips: ["200.200.1.9/24"], mac: "0A:58:C8:C8:01:09"}}'
  cni ADD ca a
  expect_ok
  jq -e '.ips == [{address: "200.200.1.9/24", interface: 1}]
         and .interfaces[1].mac == "0a:58:c8:c8:01:09"' <<<"$output"
  ip -n "$T-a" link show eth0 | grep -q "link/ether 0a:58:c8:c8:01:09"
  ip -n "$T-a" -4 -o addr show eth0 | grep -q "inet 200.200.1.9/24"
  # the request as the guest got it: canonical text, in the call log
  grep -q 'request ips=\["200.200.1.9/24"\] mac=Some("0a:58:c8:c8:01:09")' "$W/wasm-cni.log"
  jq --argjson p "$output" '. + {prevResult: $p}' "$W/conf.json" > "$W/check.json"
  cni CHECK ca a eth0 "$W/check.json"
  expect_ok
  cni DEL ca a eth0 "$W/check.json"
  expect_ok
  [ -z "$(node_links)" ]
}

@test "a 0.2.0 guest gets CNI_ARGS IP= and MAC=, merged with runtimeConfig's same address" {
  write_conf 1.1.0 '. + {runtimeConfig: {ips: ["200.200.1.10"]}}'
  cni_args ADD "IgnoreUnknown=1;IP=200.200.1.10;MAC=0a:58:c8:c8:01:0a"
  expect_ok
  jq -e '.ips[0].address == "200.200.1.10/24" and .interfaces[1].mac == "0a:58:c8:c8:01:0a"' <<<"$output"
  ip -n "$T-a" link show eth0 | grep -q "link/ether 0a:58:c8:c8:01:0a"
  grep -q 'request ips=\["200.200.1.10"\] mac=Some("0a:58:c8:c8:01:0a")' "$W/wasm-cni.log"
  # DEL carries the request too
  cni_args DEL "IgnoreUnknown=1;IP=200.200.1.10;MAC=0a:58:c8:c8:01:0a"
  expect_ok
  [ -z "$(node_links)" ]
  [ "$(grep -c 'request ips=\["200.200.1.10"\]' "$W/wasm-cni.log")" = 2 ]
}

@test "simulate: the transcript shows create-veth with the container-mac the 0.2.0 guest passed" {
  cd "$W"
  jq '. + {runtimeConfig: {mac: "0a:58:c8:c8:01:0b"}}' conf.json > sim.json
  run "$RUNNER" simulate ADD pod-1 -c sim.json -g "$GUEST"
  [ "$status" -eq 0 ]
  [[ $output == *'links.create-veth("wc'*'", "eth0", none, "0a:58:c8:c8:01:0b") -> ok VethPair'*'container: LinkInfo { name: "eth0", '*'mac: "0a:58:c8:c8:01:0b"'* ]]
}
