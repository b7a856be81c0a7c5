#!/usr/bin/env bats
# The runner as a CNI plugin, end to end in throwaway namespaces.

load helpers

setup() { common_setup; }
teardown() { common_teardown; }

@test "VERSION lists the five spec versions, answering in the requested one" {
  for v in 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0; do
    write_conf "$v"
    cni VERSION "" ""
    expect_ok
    [ "$(jq -r .cniVersion <<<"$output")" = "$v" ]
    [ "$(jq -c .supportedVersions <<<"$output")" = '["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]' ]
  done
}

@test "ADD: pod gets an address and default route, pings the gateway; pods and node reach each other" {
  add_pod a; add_pod b
  cni ADD ca a
  expect_ok
  ipa=$(pod_ip "$output")
  cni ADD cb b
  expect_ok
  ipb=$(pod_ip "$output")
  [ "$ipa" = 200.200.1.2 ]
  [ "$ipb" = 200.200.1.3 ]
  ip -n "$T-a" -4 -o addr show eth0 | grep -q "inet 200.200.1.2/24"
  [ "$(ip -n "$T-a" route show default)" = "default via 200.200.1.1 dev eth0 proto static " ] ||
    ip -n "$T-a" route show default | grep -q "default via 200.200.1.1 dev eth0"
  ping_from "$T-a" 200.200.1.1
  ping_from "$T-a" "$ipb"
  ping_from "$T-b" "$ipa"
  ping_from "$NODE" "$ipa"
  # node setup: bridge with the gateway, forwarding on, our firewall table
  ip -n "$NODE" -4 -o addr show cni0 | grep -q "inet 200.200.1.1/24"
  [ "$(ip netns exec "$NODE" cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
  ip netns exec "$NODE" nft list table ip wasm_cni_testnet | grep -q "masquerade"
}

@test "results have the right shape for every spec version" {
  i=0
  for v in 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0; do
    i=$((i+1))
    add_pod "v$i"
    write_conf "$v"
    cni ADD "cv$i" "v$i"
    expect_ok
    jq -e --arg v "$v" --arg ns "/run/netns/$T-v$i" '
      .cniVersion == $v
      and (.interfaces | length == 2)
      and (.interfaces[0] | has("sandbox") | not)
      and (.interfaces[1].name == "eth0" and .interfaces[1].sandbox == $ns)
      and (.interfaces | all(.mac | test("^([0-9a-f]{2}:){5}[0-9a-f]{2}$")))
      and (.ips | length == 1)
      and (.ips[0].address | test("^200\\.200\\.1\\.[0-9]+/24$"))
      and .ips[0].gateway == "200.200.1.1"
      and .ips[0].interface == 1
      and (if ($v | startswith("0.")) then .ips[0].version == "4" else (.ips[0] | has("version") | not) end)
      and .routes == [{"dst":"0.0.0.0/0","gw":"200.200.1.1"}]
      and (.dns | type == "object")' <<<"$output"
  done
}

@test "DEL removes the host veth and frees the address; twice; after the netns is gone; with CNI_NETNS empty" {
  add_pod a; add_pod b; add_pod c
  cni ADD ca a; expect_ok
  host_if=$(jq -r '.interfaces[0].name' <<<"$output")
  ip -n "$NODE" link show "$host_if" >/dev/null
  cni DEL ca a; expect_ok
  [ -z "$output" ]
  ! ip -n "$NODE" link show "$host_if" 2>/dev/null || false
  ! store_keys | grep -q 'ip%2F200.200.1.2' || false
  cni DEL ca a; expect_ok
  # the pod namespace disappears before DEL
  cni ADD cb b; expect_ok
  ip netns del "$T-b"
  cni DEL cb b; expect_ok
  # containerd's second DEL comes with CNI_NETNS empty
  cni ADD cc c; expect_ok
  cni DEL cc ""; expect_ok
  cni DEL cc ""; expect_ok
  [ "$(node_links)" = cni0 ]
  [ -z "$(store_keys | grep -E '^(ip|attach)')" ]
}

@test "ADD of the same container after DEL works, with a fresh address" {
  add_pod a
  cni ADD ca a; expect_ok
  first=$(pod_ip "$output")
  cni DEL ca a; expect_ok
  cni ADD ca a; expect_ok
  second=$(pod_ip "$output")
  [ "$first" != "$second" ]   # round-robin: no immediate reuse
  ping_from "$T-a" 200.200.1.1
}

@test "CHECK passes after ADD and fails after the pod's address is removed" {
  add_pod a
  write_conf 1.1.0
  cni ADD ca a; expect_ok
  prev=$output
  jq --argjson p "$prev" '. + {prevResult: $p}' "$W/conf.json" > "$W/check.json"
  cni CHECK ca a eth0 "$W/check.json"
  expect_ok
  [ -z "$output" ]
  ip -n "$T-a" addr del 200.200.1.2/24 dev eth0
  cni CHECK ca a eth0 "$W/check.json"
  expect_error 102
  grep -q "200.200.1.2/24 is missing" <<<"$output"
}

@test "CHECK is refused for a 0.3.1 network (not in that spec)" {
  add_pod a
  write_conf 0.3.1
  cni CHECK ca a
  expect_error 1
}

@test "GC frees reservations of attachments not listed and keeps listed ones" {
  add_pod a; add_pod b; add_pod c
  write_conf 1.1.0
  cni ADD ca a; expect_ok
  cni ADD cb b; expect_ok
  hb=$(jq -r '.interfaces[0].name' <<<"$output")
  cni ADD cc c; expect_ok
  jq '. + {"cni.dev/valid-attachments": [{"containerID":"ca","ifname":"eth0"},{"containerID":"cc","ifname":"eth0"}]}' \
    "$W/conf.json" > "$W/gc.json"
  cni GC "" "" "" "$W/gc.json"
  expect_ok
  keys=$(store_keys)
  grep -q 'attach%2Fca%2Feth0' <<<"$keys"
  grep -q 'attach%2Fcc%2Feth0' <<<"$keys"
  ! grep -q 'attach%2Fcb' <<<"$keys" || false
  ! grep -q 'ip%2F200.200.1.3' <<<"$keys" || false
  ! ip -n "$NODE" link show "$hb" 2>/dev/null || false
  ping_from "$T-a" 200.200.1.1
  # the older key name works too
  jq '. + {"cni.dev/attachments": [{"containerID":"ca","ifname":"eth0"}]}' "$W/conf.json" > "$W/gc2.json"
  cni GC "" "" "" "$W/gc2.json"; expect_ok
  ! store_keys | grep -q 'attach%2Fcc' || false
}

@test "STATUS: ready with a usable store; code 50 with the reason when the guest is missing" {
  write_conf 1.1.0
  cni STATUS "" ""
  expect_ok
  [ -z "$output" ]
  write_conf 1.1.0 '.guest = "/nonexistent/guest.wasm"'
  cni STATUS "" ""
  expect_error 50
  grep -q "not found" <<<"$output"
}

@test "STATUS: code 51 when pods hold addresses and their bridge is gone; ready again once no pod is left" {
  write_conf 1.1.0
  add_pod a
  cni ADD ca a; expect_ok
  ip -n "$NODE" link del cni0
  cni STATUS "" ""
  expect_error 51
  grep -q "cni0" <<<"$output"
  cni DEL ca a; expect_ok
  # no pod is left to be affected, and the next ADD makes the bridge again: ready
  cni STATUS "" ""
  expect_ok
}

@test "20 concurrent ADDs get 20 distinct addresses without errors" {
  for i in $(seq 1 20); do add_pod "p$i"; done
  for i in $(seq 1 20); do
    ip netns exec "$NODE" env -i CNI_COMMAND=ADD CNI_CONTAINERID="c$i" CNI_NETNS="/run/netns/$T-p$i" \
      CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni "$RUNNER" < "$W/conf.json" > "$W/out$i" 2>/dev/null &
  done
  wait
  for i in $(seq 1 20); do
    jq -e '.ips[0].address' "$W/out$i" >/dev/null || { cat "$W/out$i"; false; }
  done
  n=$(cat "$W"/out* | jq -r '.ips[0].address' | sort -u | wc -l)
  [ "$n" = 20 ]
  [ "$(store_keys | grep -c '^ip%2F')" = 20 ]
  ping_from "$T-p1" "$(jq -r '.ips[0].address | split("/")[0]' "$W/out20")"
}

@test "a corrupt cache entry is rebuilt, not trusted" {
  add_pod a; add_pod b
  cni ADD ca a; expect_ok
  entry=$(ls "$W"/cache/*.cwasm)
  printf 'garbage' > "$entry.tmp"
  mv "$entry.tmp" "$entry"
  cni ADD cb b; expect_ok
  grep -q "cache=Some(Rebuilt)" "$W/wasm-cni.log"
  cni DEL cb b; expect_ok
  grep -q "cache=Some(Hit)" "$W/wasm-cni.log"
}

@test "the call log has one line per call with command, container, outcome and time" {
  add_pod a
  cni ADD ca a; expect_ok
  cni DEL ca a; expect_ok
  grep -E "INFO .*ADD ca: ok [0-9.]+ms" "$W/wasm-cni.log"
  grep -E "INFO .*DEL ca: ok [0-9.]+ms" "$W/wasm-cni.log"
  [ -z "$stderr_out" ]
}
