#!/usr/bin/env bats
# scripts/cni-plugin.sh against stubbed gcloud/kubectl. With STUB_SIM_NODES the
# gcloud stub plays the nodes: scp copies into <T>/nodes/NODE/home, ssh runs the
# command there with `sudo X` = `ROOT=<T>/nodes/NODE/root X`, so the whole path down
# to the conflist written on each node is exercised.

# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
load test_helper

setup_file() {
  # The runner uploaded to the nodes must be an x86-64 Linux ELF: a compiled wrapper
  # around the shell stand-in (no C compiler: fail, scripts/setup.sh installs gcc).
  command -v cc >/dev/null || { echo "cc not found: run scripts/setup.sh (gcc)" >&2; return 1; }
  [[ "$(uname -m)" == x86_64 ]] || { echo "these tests build an x86-64 ELF: run them on x86-64" >&2; return 1; }
  cc -O2 -DFAKE_RUNNER="\"$BATS_TEST_DIRNAME/stubs/fake-wasm-cni\"" \
    -o "$BATS_FILE_TMPDIR/elf-runner" "$BATS_TEST_DIRNAME/fixtures/elf-runner.c"
}

setup() {
  common_setup
  SCRIPT="$REPO/scripts/cni-plugin.sh"
  DIST="$BATS_TEST_TMPDIR/dist"
  mkdir -p "$DIST/bin" "$DIST/guests"
  cp "$BATS_FILE_TMPDIR/elf-runner" "$DIST/bin/wasm-cni" # the "runner" uploaded to the nodes
  printf '\0asm\x0d\x00\x01\x00default' >"$DIST/guests/default.wasm"
  export RUNNER_BIN="$DIST/bin/wasm-cni" DEFAULT_GUEST_WASM="$DIST/guests/default.wasm"
  export WASM_CNI_RUNNER="$STUBS/fake-wasm-cni"
  GOOD="$BATS_TEST_TMPDIR/deny-all.wasm"
  printf '\0asm\x0d\x00\x01\x00deny-all' >"$GOOD"
  printf '\0asm\x0d\x00\x01\x00host-gw' >"$DIST/guests/host-gw.wasm"
  printf '\0asm\x0d\x00\x01\x00vxlan' >"$DIST/guests/vxlan.wasm"
  export HOST_GW_GUEST_WASM="$DIST/guests/host-gw.wasm" VXLAN_GUEST_WASM="$DIST/guests/vxlan.wasm"
}

# sim_nodes: simulated nodes as GCP's Ubuntu VMs are: nft installed, uplink ens4 with
# MTU 1460 (ROOT-relative /proc/net/route and /sys/class/net, read by install-cni.sh)
sim_nodes() {
  export STUB_SIM_NODES="$BATS_TEST_TMPDIR/nodes"
  local node root
  for node in $NODES; do
    root="$STUB_SIM_NODES/$node/root"
    mkdir -p "$root/usr/sbin" "$root/proc/net" "$root/sys/class/net/ens4"
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/nft"
    chmod +x "$root/usr/sbin/nft"
    printf 'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\nens4\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\nens4\t0100000A\t00000000\t0005\t0\t0\t100\tFFFFFFFF\t0\t0\t0\n' \
      >"$root/proc/net/route"
    echo 1460 >"$root/sys/class/net/ens4/mtu"
  done
}

P="--project=test-project"
Z="--zone=europe-west1-b"
NODES="my-k8s-master my-k8s-worker-1 my-k8s-worker-2"

cidr_of() {
  case "$1" in
    my-k8s-master) echo 200.200.0.0/24 ;;
    my-k8s-worker-1) echo 200.200.1.0/24 ;;
    my-k8s-worker-2) echo 200.200.2.0/24 ;;
  esac
}

LOCAL_CHECK="fake-wasm-cni guest check <T>/dist/guests/default.wasm"

expected_prelude() {
  echo "gcloud config get-value project"
  echo "gcloud auth list --filter=status:ACTIVE --format=value(account)"
  echo "kubectl config get-contexts -o name"
  for node in $NODES; do
    echo "kubectl --context=my-k8s get node $node -o jsonpath={.spec.podCIDR}"
  done
}

# expected_on_node NODE "FILES" "INSTALL-CNI ARGS"
expected_on_node() {
  echo "gcloud compute ssh $1 $P $Z --quiet --command=rm -rf wasm-cni-install && mkdir -m 700 wasm-cni-install"
  echo "gcloud compute scp $P $Z --quiet $2<REPO>/scripts/node/install-cni.sh $1:wasm-cni-install/"
  echo "gcloud compute ssh $1 $P $Z --quiet --command=sudo bash wasm-cni-install/install-cni.sh $3; rc=\$?; rm -rf wasm-cni-install; exit \$rc"
}

networks() { echo "--host-network 10.0.0.0/16 --pod-network 200.200.0.0/16 --pod-subnet $(cidr_of "$1")"; }

# the InternalIPv4 of each node in fixtures/nodes.json (the kubectl stub's 'get nodes -o json')
ip_of() {
  case "$1" in
    my-k8s-master) echo 10.0.0.2 ;;
    my-k8s-worker-1) echo 10.0.0.3 ;;
    my-k8s-worker-2) echo 10.0.0.4 ;;
  esac
}

# the peers list written from fixtures/nodes.json: sorted by name; my-k8s-worker-2 is
# dual-stack (its InternalIPs listed IPv6 first, the IPv6 one not in canonical form):
# both addresses, IPv4 first, canonical; its IPv6 podCIDR is left out (POD_NETWORK is IPv4)
PEERS3='[{"name": "my-k8s-master", "nodeIP": "10.0.0.2", "podCIDRs": ["200.200.0.0/24"]}, {"name": "my-k8s-worker-1", "nodeIP": "10.0.0.3", "podCIDRs": ["200.200.1.0/24"]}, {"name": "my-k8s-worker-2", "nodeIP": ["10.0.0.4", "fd00:10::4"], "podCIDRs": ["200.200.2.0/24"]}]'

peer_args() { echo "--peers wasm-cni-install/peers.json --node-ip $(ip_of "$1")"; }

GET_NODES="kubectl --context=my-k8s get nodes -o json"
reconcile_call() { echo "gcloud compute ssh $1 $P $Z --quiet --command=sudo /opt/cni/bin/wasm-cni reconcile -c /etc/cni/net.d/10-wasm-cni.conflist"; }

# expected_up [sim]: with "sim", the nodes run install-cni.sh, whose runner check shows
expected_up() {
  echo "$LOCAL_CHECK"
  expected_prelude
  for node in $NODES; do
    expected_on_node "$node" "<T>/dist/bin/wasm-cni <T>/dist/guests/default.wasm " \
      "install --runner wasm-cni-install/wasm-cni --default-guest wasm-cni-install/default.wasm $(networks "$node")"
    if [[ "${1:-}" == sim ]]; then
      echo "fake-wasm-cni guest check --cache-dir <T>/nodes/$node/root/var/cache/wasm-cni wasm-cni-install/default.wasm"
    fi
  done
}

# expected_guest NAME|default [sim] [SOURCE]: the calls of 'guest FILE' (SOURCE, default
# <T>/NAME) or 'guest default'; with "sim", the node-side runner's calls too
expected_guest() {
  expected_prelude
  [[ "$1" == default ]] || echo "$GET_NODES"
  for node in $NODES; do
    if [[ "$1" == default ]]; then
      expected_on_node "$node" "" "guest --default $(networks "$node")"
      # the node's runner precompiles default.wasm before the conflist points at it
      if [[ "${2:-}" == sim ]]; then
        echo "fake-wasm-cni guest check --cache-dir <T>/nodes/$node/root/var/cache/wasm-cni <T>/nodes/$node/root/opt/cni/wasm/default.wasm"
      fi
    else
      expected_on_node "$node" "${3:-<T>/$1} <MKTEMP>/peers.json " \
        "guest --file wasm-cni-install/$1 $(networks "$node") $(peer_args "$node")"
      if [[ "${2:-}" == sim ]]; then
        echo "fake-wasm-cni guest check --cache-dir <T>/nodes/$node/root/var/cache/wasm-cni wasm-cni-install/$1"
      fi
      reconcile_call "$node"
      if [[ "${2:-}" == sim ]]; then
        echo "fake-wasm-cni reconcile -c <T>/nodes/$node/root/etc/cni/net.d/10-wasm-cni.conflist"
      fi
    fi
  done
}

conflist_of() { echo "$BATS_TEST_TMPDIR/nodes/$1/root/etc/cni/net.d/10-wasm-cni.conflist"; }

# pin_of FILE: the guestDigest a conflist must carry for FILE
pin_of() {
  local sum
  sum=$(sha256sum <"$1")
  echo "sha256:${sum%% *}"
}

@test "cni-plugin: usage on no/unknown/incomplete arguments, exit 2" {
  for args in "" "install" "up now" "guest" "guest a.wasm b.wasm" "peers now"; do
    # shellcheck disable=SC2086
    run --separate-stderr "$SCRIPT" $args
    assert_status 2
    assert_contains "$stderr" "usage: cni-plugin.sh up|down|guest FILE.wasm|guest oci://REF|guest host-gw|guest vxlan|guest default|peers"
  done
  assert_no_calls
}

@test "cni-plugin up: reads every podCIDR first, then installs node by node" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up | assert_calls
}

@test "cni-plugin up: each node gets the runner, the default guest and a conflist with its own podCIDR and its uplink's MTU" {
  sim_nodes
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up sim | assert_calls
  for node in $NODES; do
    root="$STUB_SIM_NODES/$node/root"
    cmp "$RUNNER_BIN" "$root/opt/cni/bin/wasm-cni"
    [ -x "$root/opt/cni/bin/wasm-cni" ]
    cmp "$DEFAULT_GUEST_WASM" "$root/opt/cni/wasm/default.wasm"
    run jq -c . "$(conflist_of "$node")"
    [ "$output" = '{"cniVersion":"1.0.0","name":"wasm-cni","plugins":[{"type":"wasm-cni","guest":"/opt/cni/wasm/default.wasm","guestDigest":"'"$(pin_of "$DEFAULT_GUEST_WASM")"'","capabilities":{"ips":true,"mac":true},"myHostNetwork":"10.0.0.0/16","myPodNetwork":"200.200.0.0/16","myPodSubnet":"'"$(cidr_of "$node")"'","mtu":1460}]}' ]
    [ ! -e "$STUB_SIM_NODES/$node/home/wasm-cni-install" ] # staging dir cleaned up
  done
}

@test "cni-plugin up: HOST_NETWORK/POD_NETWORK from the environment reach the conflist" {
  sim_nodes
  HOST_NETWORK=10.9.0.0/16 POD_NETWORK=200.200.0.0/15 run --separate-stderr "$SCRIPT" up
  assert_status 0
  run jq -r '.plugins[0] | "\(.myHostNetwork) \(.myPodNetwork) \(.myPodSubnet)"' "$(conflist_of my-k8s-worker-2)"
  [ "$output" = "10.9.0.0/16 200.200.0.0/15 200.200.2.0/24" ]
}

@test "cni-plugin up: a node that never gets a podCIDR: bounded wait, then stop before any node is touched" {
  STUB_NO_PODCIDR=my-k8s-worker-1 PODCIDR_RETRIES=3 run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$output" "node my-k8s-worker-1 has no podCIDR yet (got ''); waiting 0s (attempt 2/3)"
  assert_contains "$stderr" "node my-k8s-worker-1 has no podCIDR yet (got '') after 3 attempts"
  { echo "$LOCAL_CHECK"; expected_prelude | head -5; expected_prelude | sed -n 5p; expected_prelude | sed -n 5p; } | assert_calls
}

@test "cni-plugin up: a podCIDR that appears late (Node not registered yet, then no podCIDR yet) is waited for" {
  sim_nodes
  STUB_PODCIDR_LATE="my-k8s-worker-2 2" run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_contains "$output" "reading the Node object my-k8s-worker-2 failed: Error from server (NotFound)"
  assert_contains "$output" "node my-k8s-worker-2 has no podCIDR yet (got '')"
  expected_up sim | awk '/get node my-k8s-worker-2 / { print; print; print } { print }' | assert_calls
  run jq -r '.plugins[0].myPodSubnet' "$(conflist_of my-k8s-worker-2)"
  [ "$output" = 200.200.2.0/24 ]
}

@test "cni-plugin up: an unreachable node stops the script there; later nodes untouched" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 *" STUB_FAIL_RC=255 \
    STUB_FAIL_MSG="ssh: connect to host 34.76.1.2 port 22: Connection timed out" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "Connection timed out"
  assert_contains "$stderr" "cni-plugin.sh: error: installing wasm-cni: preparing wasm-cni-install on my-k8s-worker-1 failed (exit 255)"
  # the master was installed (3 calls), worker-1 was tried once, worker-2 never
  { expected_up | head -10; expected_up | sed -n 11p; } | assert_calls
}

@test "cni-plugin up: a failing copy stops the script, later nodes untouched" {
  STUB_FAIL="gcloud compute scp * my-k8s-worker-1:*" STUB_FAIL_MSG="ERROR: scp: connection refused" \
    run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "ERROR: scp: connection refused"
  assert_contains "$stderr" "cni-plugin.sh: error: installing wasm-cni: copying files to my-k8s-worker-1 failed"
  expected_up | head -12 | assert_calls
}

@test "cni-plugin up: re-run on installed nodes: same calls, same files" {
  sim_nodes
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  before="$(cat "$(conflist_of my-k8s-worker-1)")"
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up sim | assert_calls
  [ "$(cat "$(conflist_of my-k8s-worker-1)")" = "$before" ]
}

@test "cni-plugin up: a node without nft is refused with a clear message, nothing installed there" {
  sim_nodes
  rm "$STUB_SIM_NODES/my-k8s-worker-1/root/usr/sbin/nft"
  run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "the nft binary is missing (looked for /usr/sbin/nft, /sbin/nft, /usr/bin/nft): the runner's firewall (forwarding and masquerade rules) runs it. Install it: 'sudo apt-get install -y nftables'"
  assert_contains "$stderr" "error: installing wasm-cni on my-k8s-worker-1 failed"
  [ ! -e "$STUB_SIM_NODES/my-k8s-worker-1/root/opt/cni/bin/wasm-cni" ]
  [ ! -e "$STUB_SIM_NODES/my-k8s-worker-2/root/opt" ]
}

@test "cni-plugin up: POD_MTU overrides the uplink's MTU" {
  sim_nodes
  POD_MTU=1400 run --separate-stderr "$SCRIPT" up
  assert_status 0
  grep -q -- "--pod-subnet 200.200.0.0/24 --mtu 1400;" "$STUB_LOG"
  run jq -r '.plugins[0].mtu' "$(conflist_of my-k8s-master)"
  [ "$output" = 1400 ]
}

@test "cni-plugin up: a RUNNER_BIN that is not an x86-64 Linux ELF is refused before any node is touched" {
  cp "$STUBS/fake-wasm-cni" "$DIST/bin/wasm-cni" # a shell script
  run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "the runner '$RUNNER_BIN' is not an ELF binary (the nodes need a Linux x86-64 build"
  assert_no_calls
  # an arm64 build: e_machine 0xb7
  cp "$BATS_FILE_TMPDIR/elf-runner" "$DIST/bin/wasm-cni"
  printf '\xb7\x00' | dd of="$DIST/bin/wasm-cni" bs=1 seek=18 conv=notrunc status=none
  run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "is not an x86-64 executable (e_type 0300, e_machine b700"
  # a 32-bit build: EI_CLASS 1
  cp "$BATS_FILE_TMPDIR/elf-runner" "$DIST/bin/wasm-cni"
  printf '\x01' | dd of="$DIST/bin/wasm-cni" bs=1 seek=4 conv=notrunc status=none
  run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "is not a 64-bit little-endian Linux ELF binary"
  # a macOS build (Mach-O)
  printf '\xcf\xfa\xed\xfe\x07\x00\x00\x01' >"$DIST/bin/wasm-cni"
  run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "is not an ELF binary"
  assert_no_calls
}

@test "cni-plugin up: a default guest that is not a component of our world is refused before any node is touched" {
  echo "not wasm" >"$DEFAULT_GUEST_WASM"
  run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "refusing '$DEFAULT_GUEST_WASM': it is not a component of the wasm-cni world (guest check exit 1)"
  assert_calls <<<"$LOCAL_CHECK"
  printf '\0asm\x0d\x00\x01\x00default' >"$DEFAULT_GUEST_WASM"
  : >"$STUB_LOG"
  WASM_CNI_RUNNER="$BATS_TEST_TMPDIR/none" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "runner '$BATS_TEST_TMPDIR/none' not found or not executable"
  assert_no_calls
}

@test "cni-plugin up: a failing node-side install stops the script" {
  sim_nodes
  POD_NETWORK=10.244.0.0/16 run --separate-stderr "$SCRIPT" up # podCIDRs are not inside it
  assert_status 1
  assert_contains "$stderr" "--pod-subnet 200.200.0.0/24 is not inside --pod-network 10.244.0.0/16"
  assert_contains "$stderr" "error: installing wasm-cni on my-k8s-master failed"
  expected_up | head -10 | sed 's#--pod-network 200.200.0.0/16#--pod-network 10.244.0.0/16#' | assert_calls
}

@test "cni-plugin up: fails early when the build output is missing" {
  rm "$DEFAULT_GUEST_WASM"
  run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "the default guest '$DEFAULT_GUEST_WASM' is missing. Build it with scripts/build.sh"
  assert_no_calls
}

@test "cni-plugin up: fails early when the kubeconfig lacks the cluster's context" {
  STUB_NO_CONTEXT=1 run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "kubeconfig has no context 'my-k8s'. Run scripts/kubernetes.sh up first"
  expected_up | head -4 | assert_calls
}

@test "cni-plugin: fails early without gcloud, kubectl or a project" {
  PATH="$(path_without gcloud)" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "'gcloud' not found on PATH"
  PATH="$(path_without kubectl)" run --separate-stderr "$SCRIPT" guest default
  assert_status 1
  assert_contains "$stderr" "'kubectl' not found on PATH"
  assert_no_calls
  STUB_PROJECT="" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "no Google Cloud project set"
  printf '%s\n' "$LOCAL_CHECK" "gcloud config get-value project" | assert_calls
}

@test "cni-plugin down: removes the files on every node and says what it does not undo" {
  sim_nodes
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  touch "$STUB_SIM_NODES/my-k8s-master/root/etc/cni/net.d/20-other.conflist"
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" down
  assert_status 0
  assert_contains "$output" "does not undo the settings the plugin made"
  assert_contains "$output" "bridge cni0, routes, the nftables table ip wasm_cni_"
  {
    echo "gcloud config get-value project"
    echo "gcloud auth list --filter=status:ACTIVE --format=value(account)"
    for node in $NODES; do expected_on_node "$node" "" "uninstall"; done
  } | assert_calls
  for node in $NODES; do
    root="$STUB_SIM_NODES/$node/root"
    [ ! -e "$root/opt/cni/bin/wasm-cni" ]
    [ ! -e "$root/opt/cni/wasm" ]
    [ ! -e "$(conflist_of "$node")" ]
  done
  [ -e "$STUB_SIM_NODES/my-k8s-master/root/etc/cni/net.d/20-other.conflist" ]
}

@test "cni-plugin guest: refuses a text file, printing the validator's reason, with no cloud call" {
  echo "hello" >"$BATS_TEST_TMPDIR/notes.wasm"
  run --separate-stderr "$SCRIPT" guest "$BATS_TEST_TMPDIR/notes.wasm"
  assert_status 1
  assert_contains "$stderr" "refusing '$BATS_TEST_TMPDIR/notes.wasm': it is not a component of the wasm-cni world"
  assert_contains "$stderr" "is not a WebAssembly component (bad magic)"
  assert_calls <<<"fake-wasm-cni guest check <T>/notes.wasm"
}

@test "cni-plugin guest: refuses what the validator refuses (stub validator exits 1)" {
  STUB_VALIDATE_FAIL=1 run --separate-stderr "$SCRIPT" guest "$GOOD"
  assert_status 1
  assert_contains "$stderr" "guest check exit 1): error: $GOOD imports wasi:sockets/tcp, which the runner does not provide"
  assert_calls <<<"fake-wasm-cni guest check <T>/deny-all.wasm"
}

@test "cni-plugin guest: refuses a missing file, a bad name, default.wasm, a missing validator" {
  run --separate-stderr "$SCRIPT" guest "$BATS_TEST_TMPDIR/nope.wasm"
  assert_status 1
  assert_contains "$stderr" "refusing '$BATS_TEST_TMPDIR/nope.wasm': no such file"
  cp "$GOOD" "$BATS_TEST_TMPDIR/policy.txt"
  run --separate-stderr "$SCRIPT" guest "$BATS_TEST_TMPDIR/policy.txt"
  assert_status 1
  assert_contains "$stderr" "file name must match"
  cp "$GOOD" "$BATS_TEST_TMPDIR/default.wasm"
  run --separate-stderr "$SCRIPT" guest "$BATS_TEST_TMPDIR/default.wasm"
  assert_status 1
  assert_contains "$stderr" "default.wasm would replace the default guest"
  WASM_CNI_RUNNER="$BATS_TEST_TMPDIR/no-runner" run --separate-stderr "$SCRIPT" guest "$GOOD"
  assert_status 1
  assert_contains "$stderr" "runner '$BATS_TEST_TMPDIR/no-runner' not found or not executable"
  assert_no_calls
}

@test "cni-plugin guest FILE: validates, uploads and points every node's conflist at it" {
  sim_nodes
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" guest "$GOOD"
  assert_status 0
  assert_contains "$output" "ok: $GOOD implements wasm-cni:plugin/cni-policy@0.2.0"
  # the node-side install-cni.sh validates again with the node's runner, then the
  # node reconciles
  { echo "fake-wasm-cni guest check <T>/deny-all.wasm"; expected_guest deny-all.wasm sim; } | assert_calls
  for node in $NODES; do
    root="$STUB_SIM_NODES/$node/root"
    cmp "$GOOD" "$root/opt/cni/wasm/deny-all.wasm"
    run jq -r '.plugins[0] | "\(.guest) \(.guestDigest) \(.myPodSubnet)"' "$(conflist_of "$node")"
    [ "$output" = "/opt/cni/wasm/deny-all.wasm $(pin_of "$root/opt/cni/wasm/deny-all.wasm") $(cidr_of "$node")" ]
    # a guest of the user's gets the peers list too: it may have a node-level part
    run jq -c '.plugins[0] | [.nodeIP, .peers]' "$(conflist_of "$node")"
    [ "$output" = "[\"$(ip_of "$node")\",$(jq -c . <<<"$PEERS3")]" ]
  done
  assert_tmp_clean
}

@test "cni-plugin guest default: points every node back at default.wasm" {
  sim_nodes
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  run --separate-stderr "$SCRIPT" guest "$GOOD"
  assert_status 0
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" guest default
  assert_status 0
  expected_guest default sim | assert_calls
  for node in $NODES; do
    run jq -r '.plugins[0] | "\(.guest) \(.guestDigest)"' "$(conflist_of "$node")"
    [ "$output" = "/opt/cni/wasm/default.wasm $(pin_of "$DEFAULT_GUEST_WASM")" ]
  done
}

# stub_registry: the directory the fake runner's 'guest pull' reads (REF = path in it),
# and a registry client for `up` to install next to the runner
stub_registry() {
  export REGISTRY_BIN="$DIST/bin/wasm-cni-registry"
  cp "$BATS_FILE_TMPDIR/elf-runner" "$REGISTRY_BIN"
  export STUB_REGISTRY="$BATS_TEST_TMPDIR/registry"
  mkdir -p "$STUB_REGISTRY/registry.example:5000/guests"
  printf '\0asm\x0d\x00\x01\x00routed v1' >"$STUB_REGISTRY/registry.example:5000/guests/routed:v1"
  V1_PIN="$(pin_of "$STUB_REGISTRY/registry.example:5000/guests/routed:v1")"
  V1_NAME="routed-${V1_PIN:7:12}.wasm"
}

@test "cni-plugin up: the registry client (REGISTRY_BIN) goes next to the runner on every node" {
  sim_nodes
  export REGISTRY_BIN="$DIST/bin/wasm-cni-registry"
  cp "$BATS_FILE_TMPDIR/elf-runner" "$REGISTRY_BIN"
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  grep -qF "gcloud compute scp $P $Z --quiet $DIST/bin/wasm-cni $DIST/guests/default.wasm $REGISTRY_BIN $REPO/scripts/node/install-cni.sh my-k8s-worker-1:wasm-cni-install/" "$STUB_LOG"
  grep -qF "install-cni.sh install --runner wasm-cni-install/wasm-cni --default-guest wasm-cni-install/default.wasm --registry-tool wasm-cni-install/wasm-cni-registry --host-network" "$STUB_LOG"
  for node in $NODES; do
    cmp "$REGISTRY_BIN" "$STUB_SIM_NODES/$node/root/opt/cni/bin/wasm-cni-registry"
  done
  # not an x86-64 ELF: refused before any node is touched
  echo '#!/bin/sh' >"$REGISTRY_BIN"
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "the runner '$REGISTRY_BIN' is not an ELF binary"
  assert_no_calls
}

@test "cni-plugin guest oci://REF: every node pulls it itself, the first node's digest pinned for the others" {
  sim_nodes
  stub_registry
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" guest oci://registry.example:5000/guests/routed:v1
  assert_status 0
  assert_contains "$output" "every node now uses registry.example:5000/guests/routed:v1 ($V1_PIN, pinned in its conflist)"
  {
    expected_prelude
    echo "$GET_NODES"
    first=1
    for node in $NODES; do
      pin=""
      ((first)) || pin=" --guest-digest $V1_PIN"
      expected_on_node "$node" "<MKTEMP>/peers.json " \
        "guest --ref registry.example:5000/guests/routed:v1$pin $(networks "$node") $(peer_args "$node")"
      echo "fake-wasm-cni guest pull registry.example:5000/guests/routed:v1 -o <MKTEMP>/guest.wasm"
      echo "fake-wasm-cni guest check --cache-dir <T>/nodes/$node/root/var/cache/wasm-cni <MKTEMP>/guest.wasm"
      reconcile_call "$node"
      echo "fake-wasm-cni reconcile -c <T>/nodes/$node/root/etc/cni/net.d/10-wasm-cni.conflist"
      first=0
    done
  } | assert_calls
  for node in $NODES; do
    root="$STUB_SIM_NODES/$node/root"
    cmp "$STUB_REGISTRY/registry.example:5000/guests/routed:v1" "$root/opt/cni/wasm/$V1_NAME"
    run jq -r '.plugins[0] | "\(.guest) \(.guestDigest) \(.myPodSubnet)"' "$(conflist_of "$node")"
    [ "$output" = "/opt/cni/wasm/$V1_NAME $(pin_of "$root/opt/cni/wasm/$V1_NAME") $(cidr_of "$node")" ]
    [ "$(pin_of "$root/opt/cni/wasm/$V1_NAME")" = "$V1_PIN" ]
  done
  assert_tmp_clean
  # and back: the default guest, pinned
  run --separate-stderr "$SCRIPT" guest default
  assert_status 0
  for node in $NODES; do
    [ "$(jq -r '.plugins[0] | "\(.guest) \(.guestDigest)"' "$(conflist_of "$node")")" = "/opt/cni/wasm/default.wasm $(pin_of "$DEFAULT_GUEST_WASM")" ]
  done
}

@test "cni-plugin guest oci://REF: the registry options reach every node's pull; the credentials do not stay" {
  sim_nodes
  stub_registry
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  echo pem >"$BATS_TEST_TMPDIR/ca.pem"
  echo '{"auths":{}}' >"$BATS_TEST_TMPDIR/config.json"
  : >"$STUB_LOG"
  GUEST_REGISTRY_INSECURE=1 GUEST_REGISTRY_CA="$BATS_TEST_TMPDIR/ca.pem" GUEST_REGISTRY_CONFIG="$BATS_TEST_TMPDIR/config.json" \
    run --separate-stderr "$SCRIPT" guest oci://registry.example:5000/guests/routed:v1
  assert_status 0
  for node in $NODES; do
    grep -qF "gcloud compute scp $P $Z --quiet $BATS_TEST_TMPDIR/ca.pem $BATS_TEST_TMPDIR/config.json $TMPDIR/" "$STUB_LOG"
    grep -qF "/peers.json $REPO/scripts/node/install-cni.sh $node:wasm-cni-install/" "$STUB_LOG"
    [ ! -e "$STUB_SIM_NODES/$node/home/wasm-cni-install" ]
    [ "$(jq -r '.plugins[0].guestDigest' "$(conflist_of "$node")")" = "$V1_PIN" ]
  done
  [ "$(grep -cF "guest pull registry.example:5000/guests/routed:v1 -o " "$STUB_LOG")" -eq 3 ]
  [ "$(grep -cF "/guest.wasm --insecure --ca-file wasm-cni-install/ca.pem --registry-config wasm-cni-install/config.json" "$STUB_LOG")" -eq 3 ]
  # a missing file or an odd value is refused before any call
  : >"$STUB_LOG"
  GUEST_REGISTRY_CA="$BATS_TEST_TMPDIR/none.pem" run --separate-stderr "$SCRIPT" guest oci://registry.example:5000/guests/routed:v1
  assert_status 1
  assert_contains "$stderr" "GUEST_REGISTRY_CA='$BATS_TEST_TMPDIR/none.pem': no such file"
  GUEST_REGISTRY_INSECURE=yes run --separate-stderr "$SCRIPT" guest oci://registry.example:5000/guests/routed:v1
  assert_status 1
  assert_contains "$stderr" "GUEST_REGISTRY_INSECURE='yes' must be 1 or empty"
  assert_no_calls
}

@test "cni-plugin guest oci://REF: a failed pull stops the rollout there; the node keeps its guest and conflist" {
  sim_nodes
  stub_registry
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  before="$(cat "$(conflist_of my-k8s-master)")"
  run --separate-stderr "$SCRIPT" guest oci://registry.example:5000/guests/routed:v7
  assert_status 1
  assert_contains "$stderr" "routed:v7: manifest unknown"
  assert_contains "$stderr" "pulling registry.example:5000/guests/routed:v7 failed (wasm-cni guest pull exit 1, reason above); the node keeps its current guest and conflist."
  assert_contains "$stderr" "error: pulling registry.example:5000/guests/routed:v7 (nodes already switched: none) on my-k8s-master failed"
  [ "$(cat "$(conflist_of my-k8s-master)")" = "$before" ]
  [ "$(ls "$STUB_SIM_NODES/my-k8s-master/root/opt/cni/wasm")" = default.wasm ]
  STUB_REGISTRY_DOWN=1 run --separate-stderr "$SCRIPT" guest oci://registry.example:5000/guests/routed:v1
  assert_status 1
  assert_contains "$stderr" "Connection refused"
  [ "$(cat "$(conflist_of my-k8s-master)")" = "$before" ]
  # a bad reference: no call at all
  : >"$STUB_LOG"
  for bad in oci://registry.example:5000 "oci://r.example/x;reboot" oci://https://r.example/x:v1; do
    run --separate-stderr "$SCRIPT" guest "$bad"
    assert_status 1
    assert_contains "$stderr" "refusing '$bad': not a registry reference"
  done
  assert_no_calls
  assert_tmp_clean
}

@test "cni-plugin guest: a node failing mid-rollout stops and names the nodes already switched" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-2 *install-cni.sh guest*" run --separate-stderr "$SCRIPT" guest "$GOOD"
  assert_status 1
  assert_contains "$stderr" "switching to deny-all.wasm (nodes already switched: my-k8s-master my-k8s-worker-1) on my-k8s-worker-2 failed"
}

@test "cni-plugin with the real runner: dist/bin/wasm-cni passes the ELF check, checks dist/guests/default.wasm, runs on the nodes" {
  # No silent skip: without the build output this test fails (scripts/build.sh
  # --test-artifacts makes it); WASM_CNI_REAL_TESTS=0 skips it on purpose, saying so.
  local runner="$REPO/dist/bin/wasm-cni" guest="$REPO/dist/guests/default.wasm"
  local misfit="$REPO/dist/test/misfits/no-del.wasm"
  if [[ "${WASM_CNI_REAL_TESTS:-}" == 0 ]]; then
    skip "WASM_CNI_REAL_TESTS=0: the real runner is not tested"
  fi
  local f
  for f in "$runner" "$guest" "$misfit"; do
    [[ -f "$f" ]] || {
      echo "$f is missing: run scripts/build.sh --test-artifacts first (or set WASM_CNI_REAL_TESTS=0 to skip this test on purpose)" >&2
      return 1
    }
  done
  run --separate-stderr "$runner" guest check "$guest"
  assert_status 0
  assert_contains "$output" "ok: "
  # Through the script, on simulated nodes that run the real runner too.
  sim_nodes
  export RUNNER_BIN="$runner" DEFAULT_GUEST_WASM="$guest" WASM_CNI_RUNNER="$runner"
  cp "$guest" "$BATS_TEST_TMPDIR/policy-copy.wasm"
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  run --separate-stderr "$SCRIPT" guest "$BATS_TEST_TMPDIR/policy-copy.wasm"
  assert_status 0
  run jq -r '.plugins[0].guest' "$(conflist_of my-k8s-worker-1)"
  [ "$output" = "/opt/cni/wasm/policy-copy.wasm" ]
  # and the real runner refuses a text file
  echo "not wasm" >"$BATS_TEST_TMPDIR/text.wasm"
  run --separate-stderr "$SCRIPT" guest "$BATS_TEST_TMPDIR/text.wasm"
  assert_status 1
  assert_contains "$stderr" "refusing '$BATS_TEST_TMPDIR/text.wasm'"
  # and a component that misses an export, with the check's reason
  cp "$misfit" "$BATS_TEST_TMPDIR/no-del.wasm"
  run --separate-stderr "$SCRIPT" guest "$BATS_TEST_TMPDIR/no-del.wasm"
  assert_status 1
  assert_contains "$stderr" "exports add, check, gc, status but not del"
}

# --- peers: host-gw, vxlan, 'peers' -----------------------------------------------

# assert_peers_written NODE...: each NODE (in this order) got exactly $PEERS as its
# peers.json (the gcloud stub records what scp copies under that name)
assert_peers_written() {
  local expected="" node
  for node in "$@"; do expected+="$node: $PEERS"$'\n'; done
  if [[ "$(cat "$STUB_LOG.peers" 2>/dev/null)"$'\n' != "$expected" ]]; then
    printf -- '--- expected peers\n%s--- written\n%s\n' "$expected" "$(cat "$STUB_LOG.peers" 2>/dev/null)" >&2
    return 1
  fi
}

@test "cni-plugin guest host-gw: the peers list from 'kubectl get nodes -o json' (3 nodes, one dual-stack) to every node, then reconcile on each" {
  PEERS=$PEERS3
  run --separate-stderr "$SCRIPT" guest host-gw
  assert_status 0
  { echo "fake-wasm-cni guest check <T>/dist/guests/host-gw.wasm"; expected_guest host-gw.wasm "" "<T>/dist/guests/host-gw.wasm"; } | assert_calls
  assert_peers_written $NODES
  assert_contains "$output" "node my-k8s-worker-2: podCIDR fd00:200:200:2::/64 left out of the peers list (POD_NETWORK 200.200.0.0/16 has no IPv6 network)"
  assert_contains "$output" "every node now uses host-gw.wasm for new CNI calls"
  # the list is sorted by name, whatever the order of kubectl's answer
  nodes_json '.items |= reverse'
  : >"$STUB_LOG" && rm "$STUB_LOG.peers"
  run --separate-stderr "$SCRIPT" guest host-gw
  assert_status 0
  assert_peers_written $NODES
  assert_tmp_clean
}

@test "cni-plugin guest vxlan: every node's conflist names /opt/cni/wasm/vxlan.wasm, pinned, with the peers and its own nodeIP; each node reconciled it" {
  sim_nodes
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" guest vxlan
  assert_status 0
  { echo "fake-wasm-cni guest check <T>/dist/guests/vxlan.wasm"; expected_guest vxlan.wasm sim "<T>/dist/guests/vxlan.wasm"; } | assert_calls
  for node in $NODES; do
    root="$STUB_SIM_NODES/$node/root"
    cmp "$VXLAN_GUEST_WASM" "$root/opt/cni/wasm/vxlan.wasm"
    run jq -c '.plugins[0] | [.guest, .guestDigest, .myPodSubnet, .nodeIP, .peers]' "$(conflist_of "$node")"
    [ "$output" = "[\"/opt/cni/wasm/vxlan.wasm\",\"$(pin_of "$VXLAN_GUEST_WASM")\",\"$(cidr_of "$node")\",\"$(ip_of "$node")\",$(jq -c . <<<"$PEERS3")]" ]
  done
  assert_tmp_clean
}

@test "cni-plugin guest host-gw|vxlan: a build that names its file otherwise is staged under the built-in's name" {
  cp "$HOST_GW_GUEST_WASM" "$BATS_TEST_TMPDIR/hostgw-test-build.wasm"
  HOST_GW_GUEST_WASM="$BATS_TEST_TMPDIR/hostgw-test-build.wasm" run --separate-stderr "$SCRIPT" guest host-gw
  assert_status 0
  [ "$(grep -c "gcloud compute scp $P $Z --quiet $TMPDIR/cni-plugin\.[A-Za-z0-9]*/host-gw.wasm $TMPDIR/cni-plugin\.[A-Za-z0-9]*/peers.json " "$STUB_LOG")" -eq 3 ]
  [ "$(grep -c "install-cni.sh guest --file wasm-cni-install/host-gw.wasm " "$STUB_LOG")" -eq 3 ]
  assert_tmp_clean
}

@test "cni-plugin guest: an unknown guest name, a missing built-in or a file named like a built-in is refused, no call made" {
  for bad in hostgw vxlan-v2 flannel; do
    run --separate-stderr "$SCRIPT" guest "$bad"
    assert_status 1
    assert_contains "$stderr" "refusing '$bad': not a guest name (host-gw, vxlan, default), a .wasm file or an oci:// reference."
  done
  rm "$VXLAN_GUEST_WASM"
  run --separate-stderr "$SCRIPT" guest vxlan
  assert_status 1
  assert_contains "$stderr" "the vxlan guest '$VXLAN_GUEST_WASM' is missing. Build it with scripts/build.sh"
  cp "$GOOD" "$BATS_TEST_TMPDIR/host-gw.wasm"
  run --separate-stderr "$SCRIPT" guest "$BATS_TEST_TMPDIR/host-gw.wasm"
  assert_status 1
  assert_contains "$stderr" "host-gw.wasm is a built-in guest's name ('guest host-gw'); rename it."
  assert_no_calls
}

@test "cni-plugin guest host-gw / peers: kubectl failing to list the nodes stops before any node is touched" {
  for cmd in "guest host-gw" peers; do
    : >"$STUB_LOG"
    # shellcheck disable=SC2086
    STUB_FAIL="$GET_NODES" STUB_FAIL_MSG='error: You must be logged in to the server (Unauthorized)' \
      run --separate-stderr "$SCRIPT" $cmd
    assert_status 1
    assert_contains "$stderr" "reading the cluster's nodes failed (kubectl get nodes, context my-k8s, exit 1): error: You must be logged in to the server (Unauthorized); no node was changed."
    [ "$(grep -c "^gcloud compute" "$STUB_LOG")" -eq 0 ]
    [ "$(tail -1 "$STUB_LOG")" = "$GET_NODES" ]
  done
  assert_tmp_clean
}

# nodes_json JQ-FILTER: fixtures/nodes.json changed by JQ-FILTER, as the kubectl stub's answer
nodes_json() {
  export STUB_NODES_JSON="$BATS_TEST_TMPDIR/nodes.json"
  jq "$1" "$REPO/tests/scripts/fixtures/nodes.json" >"$STUB_NODES_JSON"
}

@test "cni-plugin guest host-gw: a node list the runner would refuse is refused here, naming the node; no node touched" {
  local -A cases=(
    ['.items[1].spec |= {}']="node my-k8s-worker-1 has no podCIDR in POD_NETWORK 200.200.0.0/16 yet (spec.podCIDRs: none)"
    ['.items[1].spec.podCIDRs = ["200.200.0.128/25"]']="node my-k8s-worker-1's podCIDR 200.200.0.128/25 overlaps node my-k8s-master's 200.200.0.0/24"
    ['.items[1].spec.podCIDRs = ["10.244.1.0/24"]']="node my-k8s-worker-1: podCIDR 10.244.1.0/24 is not inside POD_NETWORK 200.200.0.0/16"
    ['.items[1].spec.podCIDRs = ["200.200.1.1/24"]']="node my-k8s-worker-1: podCIDR '200.200.1.1/24' is not a CIDR (a network: no host bits set)"
    ['.items[1].spec.podCIDRs = ["200.200.1.0/24", "200.200.3.0/24"]']="node my-k8s-worker-1 has two IPv4 podCIDRs (200.200.1.0/24, 200.200.3.0/24): a peer has one per family"
    ['.items[1].status.addresses[0].address = "192.168.1.3"']="node my-k8s-worker-1: InternalIP 192.168.1.3 is outside HOST_NETWORK 10.0.0.0/16 (the runner allows routes and VXLAN remotes only inside the host network)"
    ['.items[1].status.addresses[0].address = "10.0.0.2"']="nodes my-k8s-master and my-k8s-worker-1 have the same InternalIP 10.0.0.2"
    ['.items[1].status.addresses += [{"type": "InternalIP", "address": "10.0.0.33"}]']="node my-k8s-worker-1 has two IPv4 InternalIPs (10.0.0.3, 10.0.0.33): a peer has one per family"
    ['.items[1].status.addresses = [{"type": "InternalIP", "address": "fd00:10::3"}]']="node my-k8s-worker-1 has no InternalIP address in HOST_NETWORK 10.0.0.0/16 (status.addresses)"
    ['.items[1].status.addresses[0].address = "10.0.0.300"']="node my-k8s-worker-1: InternalIP '10.0.0.300' is not an IP address"
    ['.items[1].metadata = ["x"]']="kubectl's answer has an unexpected shape (AttributeError: 'list' object has no attribute 'get')"
    ['.items = []']="kubectl's answer lists no nodes"
    ['del(.items[2])']="my-k8s-worker-2 (MASTER/WORKERS) is not a node of the cluster (kubectl get nodes): if it left, drop it from WORKERS; no node was changed."
  )
  local filter
  for filter in "${!cases[@]}"; do
    nodes_json "$filter"
    : >"$STUB_LOG"
    run --separate-stderr "$SCRIPT" guest host-gw
    assert_status 1
    assert_contains "$stderr" "${cases[$filter]}"
    [[ "${cases[$filter]}" == *"no node was changed."* ]] || assert_contains "$stderr" "${cases[$filter]}; no node was changed."
    [ "$(tail -1 "$STUB_LOG")" = "$GET_NODES" ] # nothing after the read
  done
  assert_tmp_clean
}

@test "cni-plugin peers: after a node leaves, the remaining nodes get the shorter list (guest and pin kept) and reconcile" {
  sim_nodes
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  run --separate-stderr "$SCRIPT" guest host-gw
  assert_status 0
  pin="$(jq -r '.plugins[0].guestDigest' "$(conflist_of my-k8s-master)")"
  # my-k8s-worker-2 is drained and deleted (kubectl delete node), and dropped from WORKERS
  nodes_json 'del(.items[2])'
  export WORKERS=my-k8s-worker-1
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" peers
  assert_status 0
  assert_contains "$output" "every node has the new peers list and has reconciled"
  PEERS='[{"name": "my-k8s-master", "nodeIP": "10.0.0.2", "podCIDRs": ["200.200.0.0/24"]}, {"name": "my-k8s-worker-1", "nodeIP": "10.0.0.3", "podCIDRs": ["200.200.1.0/24"]}]'
  {
    expected_prelude | grep -v "get node my-k8s-worker-2 "
    echo "$GET_NODES"
    for node in my-k8s-master my-k8s-worker-1; do
      expected_on_node "$node" "<MKTEMP>/peers.json " "peers $(peer_args "$node")"
      echo "fake-wasm-cni reconcile -c <T>/nodes/$node/root/etc/cni/net.d/10-wasm-cni.conflist"
    done
  } | assert_calls
  for node in my-k8s-master my-k8s-worker-1; do
    run jq -c '.plugins[0] | [.guest, .guestDigest, .myPodSubnet, .nodeIP, .peers]' "$(conflist_of "$node")"
    [ "$output" = "[\"/opt/cni/wasm/host-gw.wasm\",\"$pin\",\"$(cidr_of "$node")\",\"$(ip_of "$node")\",$(jq -c . <<<"$PEERS")]" ]
  done
  assert_tmp_clean
}

@test "cni-plugin peers: the exact calls and list, a node not in WORKERS is a peer (with a warning), a failed reconcile names the nodes done" {
  nodes_json '.items += [{"metadata": {"name": "my-k8s-worker-3"}, "spec": {"podCIDRs": ["200.200.3.0/24"]}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}}]'
  run --separate-stderr "$SCRIPT" peers
  assert_status 0
  assert_contains "$stderr" "node my-k8s-worker-3 is in the peers list but not in MASTER/WORKERS: this script does not write its conflist (add it to WORKERS)."
  PEERS="${PEERS3%]}, {\"name\": \"my-k8s-worker-3\", \"nodeIP\": \"10.0.0.5\", \"podCIDRs\": [\"200.200.3.0/24\"]}]"
  {
    expected_prelude
    echo "$GET_NODES"
    for node in $NODES; do expected_on_node "$node" "<MKTEMP>/peers.json " "peers $(peer_args "$node")"; done
  } | assert_calls
  assert_peers_written $NODES
  # the node-side step (install-cni.sh peers: rewrite, then reconcile) fails on worker-1
  : >"$STUB_LOG"
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 *install-cni.sh peers *" \
    STUB_FAIL_MSG="install-cni.sh: error: wasm-cni reconcile -c /etc/cni/net.d/10-wasm-cni.conflist failed (exit 1): ..." \
    run --separate-stderr "$SCRIPT" peers
  assert_status 1
  assert_contains "$stderr" "error: writing the peers list and reconciling (nodes already done: my-k8s-master) on my-k8s-worker-1 failed (exit 1)"
  [ "$(grep "^gcloud" "$STUB_LOG" | grep -c my-k8s-worker-2)" -eq 0 ]
  assert_tmp_clean
}

@test "cni-plugin guest host-gw: a failing reconcile stops the rollout, naming the node and the nodes done" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 * reconcile -c *" STUB_FAIL_MSG="wasm-cni: error: reconcile: ..." \
    run --separate-stderr "$SCRIPT" guest host-gw
  assert_status 1
  assert_contains "$stderr" "error: wasm-cni reconcile on my-k8s-worker-1 (its conflist is already rewritten; nodes done before it: my-k8s-master) failed (exit 1)"
  [ "$(tail -1 "$STUB_LOG")" = "$(reconcile_call my-k8s-worker-1)" ]
  assert_tmp_clean
}

@test "cni-plugin peers: python3 is needed for the peers list, said so before any call to a node" {
  PATH="$(path_without python3)" run --separate-stderr "$SCRIPT" peers
  assert_status 1
  assert_contains "$stderr" "'python3' not found on PATH. The peers list is built with python3"
  [ "$(grep -c "^gcloud compute" "$STUB_LOG")" -eq 0 ]
}
