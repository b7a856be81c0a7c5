#!/usr/bin/env bats
# `wasm-cni simulate`: a guest against an in-memory node, no root. The golden files
# fix the whole transcript of a session; regenerate them after an intended change with
#   UPDATE_GOLDEN=1 bats tests/guests/simulate.bats

load helpers

setup() { kit_setup; }

golden() {  # name guest
  cp "$GUESTS/$2.wasm" "$2.wasm"
  session "$2.wasm" > "$1.out" 2>&1
  if [ -n "${UPDATE_GOLDEN:-}" ]; then
    cp "$1.out" "$BATS_TEST_DIRNAME/golden/$1.txt"
  fi
  diff -u "$BATS_TEST_DIRNAME/golden/$1.txt" "$1.out"
}

@test "simulate: the default guest's session matches the golden transcript" {
  golden default-session default
}

@test "simulate: the routed guest's session matches the golden transcript" {
  golden routed-session routed
}

@test "simulate: the same session twice gives byte-for-byte the same output" {
  cp "$GUESTS/default.wasm" default.wasm
  session default.wasm > first.out 2>&1
  rm node.json
  session default.wasm > second.out 2>&1
  cmp first.out second.out
}

@test "simulate: two pods get distinct addresses and DEL frees one (IPAM in the session)" {
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json
  [ "$status" -eq 0 ]
  [[ $output == *'"address": "200.200.1.2/24"'* ]]
  sim ADD pod-2 -c conf.json -g "$GUESTS/default.wasm" -s node.json
  [[ $output == *'"address": "200.200.1.3/24"'* ]]
  sim DEL pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json --show-node
  [ "$status" -eq 0 ]
  [[ $output == *'store.delete("ip/200.200.1.2") -> ok true'* ]]
  [[ $output != *"ip/200.200.1.2 ="* ]]
  [[ $output == *"ip/200.200.1.3 = pod-2 eth0"* ]]
  # the session file is plain JSON a student can read
  jq -e '.store["attach/pod-2/eth0"] == "200.200.1.3"' node.json
}

@test "simulate: an exhausted pool is the guest's error 101, and the ADD is rolled back" {
  write_sim_conf 200.200.1.0/30
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json
  [ "$status" -eq 0 ]
  sim ADD pod-2 -c conf.json -g "$GUESTS/default.wasm" -s node.json --show-node
  [ "$status" -eq 1 ]
  [[ $output == *'"code": 101'* ]]
  [[ $output != *"pod-2 eth0"* ]]
}

@test "simulate: the model answers like the kernel, and grants still apply" {
  # a guest that deletes the uplink is refused by the same gate as on a real node
  jq '. + {hostile: "delete-uplink", target: "eth0"}' conf.json > h.json
  sim ADD pod-1 -c h.json -g "$REPO/dist/test/hostile.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *'links.delete(host, "eth0") -> error denied:'* ]]
  [[ $output == *"rolled back: 2 change(s) undone"* ]]
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json
  sim CHECK pod-1 -c conf.json -g "$GUESTS/routed.wasm" -s node.json
  # the routed guest's CHECK on a bridge-wired pod fails: no host route to the pod
  [ "$status" -eq 1 ]
  [[ $output == *'"code": 102'* ]]
}

@test "simulate: bad requests get CNI errors, not panics" {
  sim FROB pod-1 -c conf.json -g "$GUESTS/default.wasm"
  [ "$status" -eq 2 ]
  [[ $output == *"CNI_COMMAND"*"unknown command"* ]]
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" --no-netns
  [ "$status" -eq 2 ]
  [[ $output == *"CNI_NETNS"*"required for ADD"* ]]
  echo '{"cniVersion":"1.0.0"' > broken.json
  sim ADD pod-1 -c broken.json -g "$GUESTS/default.wasm"
  [ "$status" -eq 2 ]
  echo 'not json' > node.json
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json
  [ "$status" -eq 2 ]
  [[ $output == *"session file node.json"* ]]
}

@test "simulate: requested ips/mac are read and checked as the plugin does" {
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" --args "IP=200.200.1.x"
  [ "$status" -eq 2 ]
  [[ $output == *"CNI_ARGS: IP: \"200.200.1.x\" is not an IPv4 or IPv6 address or CIDR"* ]]
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" --args "MAC=01:00:5e:00:00:01"
  [ "$status" -eq 2 ]
  [[ $output == *"CNI_ARGS: MAC: \"01:00:5e:00:00:01\" is a multicast MAC address"* ]]
  jq '. + {runtimeConfig: {ips: ["fd00::1", "fd00::2"]}}' conf.json > rc.json
  sim ADD pod-1 -c rc.json -g "$GUESTS/default.wasm"
  [ "$status" -eq 2 ]
  [[ $output == *"runtimeConfig.ips asks for fd00::1 and fd00::2: at most one address per family"* ]]
  jq '. + {runtimeConfig: {ips: ["200.200.1.9"]}}' conf.json > rc.json
  sim ADD pod-1 -c rc.json -g "$GUESTS/default.wasm" --args "IP=200.200.1.10"
  [ "$status" -eq 2 ]
  [[ $output == *"CNI_ARGS: IP with runtimeConfig.ips asks for 200.200.1.9 and 200.200.1.10"* ]]
  # valid ones pass (the default guest, on 0.2.0, honours them)
  sim ADD pod-1 -c rc.json -g "$GUESTS/default.wasm" --args "IP=200.200.1.9;MAC=0a:58:c8:c8:01:09"
  [ "$status" -eq 0 ]
}

# guest_file NAME: a shipped guest's .wasm, or a frozen contract-0.1.0 build's
# (`default-0.1.0`, `routed-0.1.0`: tests/guests/fixtures)
guest_file() {
  case $1 in
    *-0.1.0) echo "$REPO/tests/guests/fixtures/$1.wasm" ;;
    *) echo "$GUESTS/$1.wasm" ;;
  esac
}

# The JavaScript, C and Python guests implement contract 0.1.0, so they are compared
# with the Rust guests as built on 0.1.0 (the frozen fixtures); the next test shows the
# Rust guests on 0.2.0 still make those calls for an IPv4 network.
@test "simulate: the JavaScript guest makes exactly the Rust default guest's host calls (both on contract 0.1.0)" {
  # the contract, not the language, is the interface: same calls, same answers, same
  # results, over a whole session
  local g
  for g in default-0.1.0 js-bridge; do
    mkdir "$g"
    cp conf.json "$g/"
    cp "$(guest_file "$g")" "$g/guest.wasm"
    (cd "$g" && session guest.wasm > ../"$g.out" 2>&1)
  done
  diff -u default-0.1.0.out js-bridge.out
  [ "$(grep -c '^# ' default-0.1.0.out)" -eq 7 ]
}

# v01_calls FILE: a transcript with what contract 0.2.0 adds to an IPv4 session taken
# out: create-veth's container-mac argument (none), IPAM's look at its IPv6 keys
# (attach6/), the lock's critical section, and the call numbers and counts those shift
v01_calls() {
  grep -Ev '^ *[0-9]+  (store\.(get|list)\("attach6/|lock\.)' "$1" |
    sed -E -e 's/^ *[0-9]+  /N  /' -e 's/^host calls: [0-9]+$/host calls: N/' \
      -e 's/(links\.create-veth\("[^"]*", "[^"]*", [^,]*), none\) -> /\1) -> /'
}

@test "simulate: on an IPv4 network the Rust guests built on 0.2.0 make the calls of their 0.1.0 builds" {
  local g v
  for g in default routed; do
    for v in "$g" "$g-0.1.0"; do
      mkdir "$v"
      cp conf.json "$v/"
      cp "$(guest_file "$v")" "$v/guest.wasm"
      (cd "$v" || exit 1; set +e; compare_session guest.wasm > ../"$v.out" 2>&1)
    done
    # what 0.2.0 adds is there (so the filter below is not vacuous)
    grep -q 'links.create-veth("wc5eac89b8897f", "eth0", none, none) -> ok' "$g.out"
    grep -q 'store.get("attach6/pod-1/eth0") -> ok None' "$g.out"
    # the critical section of the kit's bridge policy (routed holds the lock throughout)
    [ "$g" != default ] || grep -q 'lock.acquire() -> ok' "$g.out"
    diff -u <(v01_calls "$g-0.1.0.out") <(v01_calls "$g.out")
  done
}

# compare GUEST RUST_GUEST: both guests' comparison sessions (helpers.bash), byte for byte
compare() {
  local g
  for g in "$2" "$1"; do
    mkdir "$g"
    cp conf.json "$g/"
    cp "$(guest_file "$g")" "$g/guest.wasm"
    # errexit off: the session's calls that fail on purpose are part of its transcript
    (cd "$g" || exit 1; set +e; compare_session guest.wasm > ../"$g.out" 2>&1)
  done
  diff -u "$2.out" "$1.out"
  # the whole session ran, with the outcomes it is there for (the same in both)
  [ "$(grep -c '^# [A-Z]* container' "$1.out")" -eq 37 ]
  [ "$(grep -c '^# config: ' "$1.out")" -eq 17 ]
  [ "$(grep -c '"code": 101' "$1.out")" -eq 1 ]
  [ "$(grep -c '"code": 102' "$1.out")" -eq 3 ]
  # a bad config is code 7, but STATUS answers "not ready" (50), as the plugin does
  [ "$(grep -c '"code": 7,' "$1.out")" -eq 15 ]
  [ "$(grep -c '"code": 50,' "$1.out")" -eq 1 ]
  grep -q 'log.write(info, "gc: released pod-4/eth0 (Some(200.200.1.5))")' "$1.out"
}

@test "simulate: the C guest makes exactly the Rust default guest's host calls (both on contract 0.1.0; ADD CHECK DEL GC STATUS, full pool, bad configs)" {
  compare c-bridge default-0.1.0
  grep -q 'mtu=Some(1400)' c-bridge.out
}

@test "simulate: the Python guest makes exactly the Rust routed guest's host calls (both on contract 0.1.0; ADD CHECK DEL GC STATUS, full pool, bad configs)" {
  compare py-routed routed-0.1.0
}

# status_of GUEST SESSION: STATUS with the session's node; output in $output, status in $status
status_of() {
  sim STATUS -c status.json -g "$GUESTS/$1.wasm" -s "$2"
}

@test "simulate: STATUS is 51 when pods hold addresses and what they depend on is broken; ready without pods" {
  jq '.cniVersion = "1.1.0"' conf.json > status.json
  local g
  # the bridge policies: the bridge gone or down
  for g in default c-bridge js-bridge; do
    rm -f node.json
    sim ADD pod-1 -c conf.json -g "$GUESTS/$g.wasm" -s node.json
    [ "$status" -eq 0 ]
    status_of "$g" node.json
    [ "$status" -eq 0 ] || { echo "$g: $output"; false; }
    jq 'del(.namespaces.host.links.cni0)' node.json > gone.json
    jq '.namespaces.host.links.cni0.up = false' node.json > down.json
    status_of "$g" gone.json
    [ "$status" -eq 1 ]
    [[ $output == *'"code": 51'* ]]
    [[ $output == *"bridge cni0 is missing: the 1 pod address(es) in use may have limited connectivity"* ]]
    status_of "$g" down.json
    [ "$status" -eq 1 ]
    [[ $output == *'"code": 51'* && $output == *"bridge cni0 is down: "* ]]
    # the pod gone, nothing depends on the bridge: ready (the next ADD sets the node up)
    sim DEL pod-1 -c conf.json -g "$GUESTS/$g.wasm" -s gone.json
    [ "$status" -eq 0 ]
    status_of "$g" gone.json
    [ "$status" -eq 0 ] || { echo "$g: $output"; false; }
  done
  # the routed policies: every packet of a pod is forwarded by the node
  for g in routed py-routed; do
    rm -f node.json
    sim ADD pod-1 -c conf.json -g "$GUESTS/$g.wasm" -s node.json
    [ "$status" -eq 0 ]
    jq '.namespaces.host.sysctls["net.ipv4.ip_forward"] = "0"' node.json > off.json
    status_of "$g" off.json
    [ "$status" -eq 1 ]
    [[ $output == *'"code": 51'* ]]
    [[ $output == *"net.ipv4.ip_forward is off: the 1 pod address(es) in use may have limited connectivity"* ]]
  done
}

@test "simulate runs as an unprivileged user" {
  command -v setpriv >/dev/null || skip "setpriv missing"
  local home; home=$(mktemp -d /tmp/wasm-cni-sim-XXXXXX)
  # everything copied in: the checkout may sit where nobody cannot read (/root)
  cp conf.json "$GUESTS/routed.wasm" "$RUNNER" "$home/"
  chown -R 65534:65534 "$home"
  run env -i HOME="$home" setpriv --reuid=65534 --regid=65534 --clear-groups \
    sh -c "cd '$home' && ./wasm-cni simulate ADD pod-1 -c conf.json -g routed.wasm -s node.json"
  rm -rf "$home"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *'"address": "200.200.1.2/32"'* ]]
}

# write_dual_conf [IPV4_SUBNET]: conf.json, dual-stack (lists), or IPv6-only without one
write_dual_conf() {
  jq -n --arg v4 "${1:-}" '{
      cniVersion: "1.0.0", name: "lab", type: "wasm-cni",
      myHostNetwork: ["10.0.0.0/16", "fd00:10::/64"],
      myPodNetwork: (if $v4 == "" then "fd00:200::/32" else ["200.200.0.0/16", "fd00:200::/32"] end),
      myPodSubnet: (if $v4 == "" then ["fd00:200:1::/64"] else [$v4, "fd00:200:1::/64"] end)
    }' > conf.json
}

@test "simulate: a dual-stack ADD of the default guest gives the pod an address of each family; CHECK and DEL cover both" {
  write_dual_conf 200.200.1.0/24
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json
  echo "$output"
  [ "$status" -eq 0 ]
  # the bridge gets both gateways, DAD off first (this call made it)
  [[ $output == *'sysctl.set(host, "net.ipv6.conf.cni0.accept_dad", "0") -> ok'* ]]
  [[ $output == *'addresses.add(host, "cni0", "200.200.1.1/24") -> ok'* ]]
  [[ $output == *'addresses.add(host, "cni0", "fd00:200:1::1/64") -> ok'* ]]
  [[ $output == *'sysctl.set(host, "net.ipv6.conf.all.forwarding", "1") -> ok'* ]]
  [[ $output == *'firewall.allow-forward("fd00:200::/32") -> ok'* ]]
  # no ipMasq6: IPv6 is routed, only IPv4 is masqueraded
  [ "$(grep -c 'firewall.masquerade(' <<< "$output")" -eq 1 ]
  [[ $output == *'sysctl.set(container, "net.ipv6.conf.eth0.accept_dad", "0") -> ok'* ]]
  [[ $output == *'routes.add(container, {destination: "::/0", gateway: "fd00:200:1::1", link: "eth0"}) -> ok'* ]]
  jq -e '.results["pod-1/eth0"] | [.ips[].address] == ["200.200.1.2/24", "fd00:200:1::2/64"]' node.json
  jq -e '.results["pod-1/eth0"] | [.ips[].gateway] == ["200.200.1.1", "fd00:200:1::1"]' node.json
  jq -e '.results["pod-1/eth0"] | [.routes[].dst] == ["0.0.0.0/0", "::/0"]' node.json
  jq -e '.results["pod-1/eth0"] | [.ips[].interface] == [1, 1]' node.json
  sim CHECK pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json
  echo "$output"
  [ "$status" -eq 0 ]
  # the pod's IPv6 default route gone: CHECK says so
  jq '.namespaces["pod:pod-1"].routes |= map(select(.destination != "::/0"))' node.json > broken.json
  run cmp -s node.json broken.json
  [ "$status" -ne 0 ]
  sim CHECK pod-1 -c conf.json -g "$GUESTS/default.wasm" -s broken.json
  [ "$status" -eq 1 ]
  [[ $output == *'"code": 102'* && $output == *'route to ::/0 is missing in the container'* ]]
  sim DEL pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json --show-node
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output == *'store.delete("ip/200.200.1.2") -> ok true'* ]]
  [[ $output == *'store.delete("ip/fd00:200:1::2") -> ok true'* ]]
  [[ $output == *'log.write(info, "pod pod-1 released 200.200.1.2, fd00:200:1::2")'* ]]
}

@test "simulate: a single-stack IPv6 ADD of the default guest, with ipMasq6" {
  write_dual_conf
  jq '.ipMasq6 = true' conf.json > v6.json
  sim ADD pod-1 -c v6.json -g "$GUESTS/default.wasm" -s node.json
  echo "$output"
  [ "$status" -eq 0 ]
  [[ $output != *"ipv4"* && $output != *"0.0.0.0/0"* ]]
  [[ $output == *'firewall.masquerade("fd00:200:1::/64", ["fd00:200::/32", "fd00:10::/64"]) -> ok'* ]]
  jq -e '.results["pod-1/eth0"] | [.ips[].address] == ["fd00:200:1::2/64"] and [.routes[].dst] == ["::/0"]' node.json
  sim ADD pod-2 -c v6.json -g "$GUESTS/default.wasm" -s node.json
  [ "$status" -eq 0 ]
  jq -e '.results["pod-2/eth0"].ips[0].address == "fd00:200:1::3/64"' node.json
}

@test "simulate: requested addresses and MAC are honoured, or refused with code 103 saying why" {
  write_dual_conf 200.200.1.0/24
  # CNI_ARGS, as host-local takes them
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json \
    --args "IP=200.200.1.50,fd00:200:1::50;MAC=02:00:00:00:aa:01"
  echo "$output"
  [ "$status" -eq 0 ]
  jq -e '.results["pod-1/eth0"] | [.ips[].address] == ["200.200.1.50/24", "fd00:200:1::50/64"]' node.json
  jq -e '.results["pod-1/eth0"].interfaces[1].mac == "02:00:00:00:aa:01"' node.json
  # runtimeConfig.ips (podman --ip): outside the subnet
  jq '.runtimeConfig = {ips: ["200.200.9.9/24"]}' conf.json > want.json
  sim ADD pod-2 -c want.json -g "$GUESTS/default.wasm" -s node.json
  echo "$output"
  [ "$status" -eq 1 ]
  [[ $output == *'"code": 103'* && $output == *'requested address 200.200.9.9 is not in 200.200.1.0/24'* ]]
  # taken by pod-1
  jq '.runtimeConfig = {ips: ["fd00:200:1::50"]}' conf.json > want.json
  sim ADD pod-2 -c want.json -g "$GUESTS/default.wasm" -s node.json
  [ "$status" -eq 1 ]
  [[ $output == *'"code": 103'* && $output == *'requested address fd00:200:1::50 is taken by pod-1/eth0'* ]]
  # the gateway
  sim ADD pod-2 -c conf.json -g "$GUESTS/default.wasm" -s node.json --args "IP=200.200.1.1"
  [ "$status" -eq 1 ]
  [[ $output == *'requested address 200.200.1.1 is the gateway of 200.200.1.0/24'* ]]
  # refused ADDs left nothing: pod-2 holds no address, and gets the next free ones
  jq -e '[.store | to_entries[] | select(.value == "pod-2 eth0")] == []' node.json
  sim ADD pod-2 -c conf.json -g "$GUESTS/default.wasm" -s node.json
  [ "$status" -eq 0 ]
  jq -e '.results["pod-2/eth0"] | [.ips[].address] == ["200.200.1.2/24", "fd00:200:1::2/64"]' node.json
  # an IPv6 address asked of an IPv4-only node
  rm node.json
  write_sim_conf 200.200.1.0/24
  sim ADD pod-1 -c conf.json -g "$GUESTS/default.wasm" -s node.json --args "IP=fd00:200:1::9"
  [ "$status" -eq 1 ]
  [[ $output == *'requested address fd00:200:1::9 is IPv6 but this node has no IPv6 pod subnet (myPodSubnet 200.200.1.0/24)'* ]]
}
