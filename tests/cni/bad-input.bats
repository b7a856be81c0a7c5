#!/usr/bin/env bats
# Bad input: every case is a CNI error object with the right code, a non-zero exit,
# and nothing half-configured in the node.

load helpers

setup() {
  common_setup
  add_pod a
  POD=/run/netns/$T-a
}
teardown() { common_teardown; }

# Nothing was set up: no links but lo in the node, no firewall table, no reservations.
assert_untouched() {
  [ -z "$(node_links)" ] || { echo "node links: $(node_links)" >&2; return 1; }
  ! ip netns exec "$NODE" nft list table ip wasm_cni_testnet >/dev/null 2>&1 || false
  [ -z "$(store_keys | grep -E '^(ip|attach)')" ]
  [ "$(ip -n "$T-a" -o link show | wc -l)" = 1 ]
}

@test "missing CNI_COMMAND is code 4" {
  cni_env "$W/conf.json" CNI_CONTAINERID=c CNI_NETNS="$POD" CNI_IFNAME=eth0
  expect_error 4
  assert_untouched
}

@test "unknown CNI_COMMAND is code 4" {
  cni_env "$W/conf.json" CNI_COMMAND=FROB CNI_CONTAINERID=c CNI_NETNS="$POD" CNI_IFNAME=eth0
  expect_error 4
}

@test "missing CNI_CONTAINERID, CNI_IFNAME or CNI_NETNS for ADD is code 4" {
  cni_env "$W/conf.json" CNI_COMMAND=ADD CNI_NETNS="$POD" CNI_IFNAME=eth0
  expect_error 4
  cni_env "$W/conf.json" CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_NETNS="$POD"
  expect_error 4
  cni_env "$W/conf.json" CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_IFNAME=eth0
  expect_error 4
  cni_env "$W/conf.json" CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_IFNAME=eth0 CNI_NETNS=/run/netns/does-not-exist
  expect_error 4
  assert_untouched
}

@test "malformed JSON is code 6" {
  printf '{"cniVersion": "1.0.0", "name": ' > "$W/bad.json"
  cni ADD c a eth0 "$W/bad.json"
  expect_error 6
  assert_untouched
}

@test "unknown cniVersion is code 1" {
  write_conf 9.9.9
  cni ADD c a
  expect_error 1
  grep -q "9.9.9" <<<"$output"
  assert_untouched
}

@test "a missing guest file is code 7 naming the file" {
  write_conf 1.0.0 '.guest = "/nonexistent/policy.wasm"'
  cni ADD c a
  expect_error 7
  grep -q "/nonexistent/policy.wasm" <<<"$output"
  assert_untouched
}

@test "a corrupt guest file is code 7" {
  head -c 4000 "$GUEST" > "$W/truncated.wasm"
  write_conf 1.0.0 ".guest = \"$W/truncated.wasm\""
  cni ADD c a
  expect_error 7
  printf 'not wasm at all' > "$W/text.wasm"
  write_conf 1.0.0 ".guest = \"$W/text.wasm\""
  cni ADD c a
  expect_error 7
  grep -q "not a WebAssembly file" <<<"$output"
  assert_untouched
}

@test "a pod subnet that is not a subnet is code 7" {
  SUBNET=200.200.1.7/24
  write_conf 1.0.0
  cni ADD c a
  expect_error 7
  grep -q "not a subnet" <<<"$output"
  assert_untouched
}

@test "a pod subnet outside the pod network is code 7" {
  SUBNET=10.5.0.0/24
  write_conf 1.0.0
  cni ADD c a
  expect_error 7
  assert_untouched
}

@test "a config that is not an object, or lacks name, is code 6 / 7" {
  echo '[1,2]' > "$W/arr.json"
  cni ADD c a eth0 "$W/arr.json"
  expect_error 6
  write_conf 1.0.0 'del(.name)'
  cni ADD c a
  expect_error 7
  assert_untouched
}

@test "an exhausted pool is a policy error (101) and leaves no half-configured pod" {
  # shellcheck disable=SC2034 # read by write_conf (helpers.bash)
  SUBNET=200.200.1.0/30   # one pod address: .2
  write_conf 1.0.0
  add_pod b
  cni ADD c1 a; expect_ok
  cni ADD c2 b
  expect_error 101
  grep -q "no free address" <<<"$output"
  [ "$(ip -n "$T-b" -o link show | wc -l)" = 1 ]
  [ "$(node_links | grep -c '^wc')" = 1 ]
}

# add_with_args ARGS: ADD of container c in pod a with CNI_ARGS=ARGS.
add_with_args() {
  cni_env "$W/conf.json" CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_NETNS="$POD" CNI_IFNAME=eth0 \
    CNI_ARGS="$1"
}

@test "a bad requested address or MAC in runtimeConfig is code 7 naming it, and nothing is touched" {
  local bad
  for bad in '{ips: ["200.200.1.300"]}' '{ips: ["fd00::1/129"]}' '{ips: "200.200.1.9"}' \
             '{ips: ["200.200.1.9", "200.200.1.10"]}' '{mac: "01:00:5e:00:00:01"}' \
             '{mac: "00:00:00:00:00:00"}' '{mac: "0a:58:c8"}'; do
    write_conf 1.0.0 ". + {runtimeConfig: $bad}"
    cni ADD c a
    expect_error 7 || { echo "runtimeConfig $bad" >&2; false; }
    jq -e '.msg | test("runtimeConfig\\.(ips|mac)")' <<<"$output" >/dev/null
    assert_untouched
  done
  write_conf 1.0.0 '. + {runtimeConfig: {ips: ["200.200.1.300"]}}'
  cni ADD c a
  grep -q '200.200.1.300' <<<"$output"
  write_conf 1.0.0 '. + {runtimeConfig: {mac: "01:00:5e:00:00:01"}}'
  cni ADD c a
  grep -q '01:00:5e:00:00:01' <<<"$output"
}

@test "a bad IP= or MAC= in CNI_ARGS is code 4 naming it, and nothing is touched" {
  local args
  for args in "IP=200.200.1.x" "IgnoreUnknown=1;IP=" "IP=200.200.1.9,200.200.1.10" \
              "MAC=ff:ff:ff:ff:ff:ff" "MAC=0a:58:c8:c8:01"; do
    add_with_args "$args"
    expect_error 4 || { echo "CNI_ARGS $args" >&2; false; }
    jq -e '.msg | startswith("CNI_ARGS")' <<<"$output" >/dev/null
    assert_untouched
  done
  add_with_args "IP=200.200.1.x"
  grep -q '200.200.1.x' <<<"$output"
  add_with_args "MAC=ff:ff:ff:ff:ff:ff"
  grep -q 'ff:ff:ff:ff:ff:ff' <<<"$output"
}

@test "CNI_ARGS contradicting runtimeConfig (two IPv4 addresses, two MACs) is code 4; the same one twice is fine" {
  write_conf 1.0.0 '. + {runtimeConfig: {ips: ["200.200.1.9/24"], mac: "0a:58:c8:c8:01:09"}}'
  add_with_args "IP=200.200.1.10"
  expect_error 4
  grep -q '200.200.1.10' <<<"$output"
  assert_untouched
  add_with_args "MAC=0a:58:c8:c8:01:0a"
  expect_error 4
  grep -q '0a:58:c8:c8:01:0a' <<<"$output"
  assert_untouched
  # the same address and MAC from both sources merge into one request
  add_with_args "IP=200.200.1.9;MAC=0A:58:C8:C8:01:09"
  expect_ok
}
