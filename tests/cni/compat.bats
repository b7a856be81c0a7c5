#!/usr/bin/env bats
# Contract compatibility: the frozen default guest as built on wasm-cni:plugin@0.1.0
# (tests/guests/fixtures/default-0.1.0.wasm) runs on this runner through the 0.1.0
# adapter, every command, as it did before 0.2.0.

load helpers

setup() {
  GUEST=$REPO/tests/guests/fixtures/default-0.1.0.wasm
  common_setup
  write_conf 1.1.0
}
teardown() { common_teardown; }

@test "guest check: the fixture implements 0.1.0 and is served by the 0.1.0 adapter" {
  run "$RUNNER" guest check "$GUEST"
  [ "$status" -eq 0 ]
  [[ ${lines[0]} == "ok: $GUEST implements wasm-cni:plugin/cni-policy@0.1.0" ]]
  [[ $output == *"served by the 0.1.0 adapter: addresses.list and routes.list answer IPv4 only"* ]]
}

@test "0.1.0 guest: ADD gives the pod its IPv4 address and a valid result in every spec version" {
  i=0
  for v in 0.3.1 0.4.0 1.0.0 1.1.0; do
    i=$((i+1))
    add_pod "p$i"
    write_conf "$v"
    cni ADD "c$i" "p$i"
    expect_ok
    jq -e --arg v "$v" --arg ns "/run/netns/$T-p$i" --arg ip "200.200.1.$((i+1))/24" '
      .cniVersion == $v
      and (.interfaces | length == 2)
      and .interfaces[1].name == "eth0" and .interfaces[1].sandbox == $ns
      and .ips == [(if ($v | startswith("0.")) then {version: "4"} else {} end)
                   + {address: $ip, gateway: "200.200.1.1", interface: 1}]
      and .routes == [{"dst":"0.0.0.0/0","gw":"200.200.1.1"}]' <<<"$output"
    ip -n "$T-p$i" -4 -o addr show eth0 | grep -q "inet 200.200.1.$((i+1))/24"
    ping_from "$T-p$i" 200.200.1.1
  done
}

@test "0.1.0 guest: CHECK passes (an IPv6 address on the pod's link is not shown to it), STATUS is ready, DEL cleans up" {
  add_pod a
  cni ADD ca a; expect_ok
  host_if=$(jq -r '.interfaces[0].name' <<<"$output")
  jq --argjson p "$output" '. + {prevResult: $p}' "$W/conf.json" > "$W/check.json"
  cni CHECK ca a eth0 "$W/check.json"
  expect_ok
  [ -z "$output" ]
  # an address of the other family, which a 0.1.0 guest never asked to see: its
  # list answers stay IPv4, so its CHECK still finds exactly what it set up
  ip -n "$T-a" addr add fd00:200:1::9/64 dev eth0 nodad
  cni CHECK ca a eth0 "$W/check.json"
  expect_ok
  cni STATUS "" ""
  expect_ok
  [ -z "$output" ]
  cni DEL ca a eth0 "$W/check.json"
  expect_ok
  [ -z "$output" ]
  ! ip -n "$NODE" link show "$host_if" 2>/dev/null || false
  ! store_keys | grep -q 'ip%2F200.200.1.2' || false
  # CHECK after DEL: the guest finds its attachment gone
  cni CHECK ca a eth0 "$W/check.json"
  [ "$status" -ne 0 ]
}

@test "0.1.0 guest: GC frees what is not listed, keeps what is" {
  add_pod a; add_pod b
  cni ADD ca a; expect_ok
  cni ADD cb b; expect_ok
  hb=$(jq -r '.interfaces[0].name' <<<"$output")
  jq '. + {"cni.dev/valid-attachments": [{"containerID":"ca","ifname":"eth0"}]}' \
    "$W/conf.json" > "$W/gc.json"
  cni GC "" "" "" "$W/gc.json"
  expect_ok
  keys=$(store_keys)
  grep -q 'attach%2Fca%2Feth0' <<<"$keys"
  ! grep -q 'attach%2Fcb' <<<"$keys" || false
  ! ip -n "$NODE" link show "$hb" 2>/dev/null || false
  ping_from "$T-a" 200.200.1.1
}

@test "0.1.0 guest: a valid requested IP/MAC is accepted, and the 0.1.0 guest allocates as before" {
  add_pod a
  write_conf 1.1.0 '. + {runtimeConfig: {ips: ["200.200.1.77/24"], mac: "0a:58:c8:c8:01:4d"}}'
  set +e
  output=$(ip netns exec "$NODE" env -i PATH="$PATH" CNI_COMMAND=ADD CNI_CONTAINERID=ca \
    CNI_NETNS="/run/netns/$T-a" CNI_IFNAME=eth0 CNI_ARGS="IgnoreUnknown=1;IP=fd00::77" \
    "$RUNNER" < "$W/conf.json" 2>"$W/stderr")
  status=$?
  set -e
  expect_ok
  # the 0.1.0 default guest knows nothing of requests: it allocates as before
  [ "$(pod_ip "$output")" = 200.200.1.2 ]
  ! ip -n "$T-a" link show eth0 | grep -q 0a:58:c8:c8:01:4d || false
}
