# The students' kit tests: `wasm-cni guest check` and `wasm-cni simulate`. They need no
# root and touch no namespace: simulate runs guests against an in-memory node.

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
RUNNER=${WASM_CNI_RUNNER:-$REPO/dist/bin/wasm-cni}
# used by the .bats files that load this
export GUESTS=$REPO/dist/guests MISFITS=$REPO/dist/test/misfits

kit_setup() {
  [ -x "$RUNNER" ] || { echo "runner $RUNNER missing: run scripts/build.sh" >&2; return 1; }
  W=$BATS_TEST_TMPDIR/w
  mkdir -p "$W"
  cd "$W" || return 1
  write_sim_conf 200.200.1.0/24
}

# write_sim_conf SUBNET: conf.json in the current directory (relative paths only, so
# the output does not depend on where the checkout is)
write_sim_conf() {
  jq -n --arg subnet "$1" '{
      cniVersion: "1.0.0", name: "lab", type: "wasm-cni",
      myHostNetwork: "10.0.0.0/16", myPodNetwork: "200.200.0.0/16", myPodSubnet: $subnet
    }' > conf.json
}

# sim ARGS...: run simulate in the current directory; output in $output, status in $status
sim() {
  run "$RUNNER" simulate "$@"
}

# the session the golden files record: two pods in, a CHECK, one out, one more in, a
# DEL of an attachment that never existed, and a DEL after the netns is gone
session() {  # guest.wasm
  local g=$1
  "$RUNNER" simulate ADD pod-1 -c conf.json -g "$g" -s node.json
  "$RUNNER" simulate ADD pod-2 -c conf.json -g "$g" -s node.json
  "$RUNNER" simulate CHECK pod-1 -c conf.json -g "$g" -s node.json
  "$RUNNER" simulate DEL pod-1 -c conf.json -g "$g" -s node.json --show-node
  "$RUNNER" simulate ADD pod-3 -c conf.json -g "$g" -s node.json
  "$RUNNER" simulate DEL pod-9 -c conf.json -g "$g" -s node.json
  "$RUNNER" simulate DEL pod-2 -c conf.json -g "$g" -s node.json --no-netns --show-node
}

# The comparison session: a guest in another language must print byte-for-byte what
# its Rust counterpart prints. The golden session, then STATUS, a GC that keeps pod-3
# and frees pod-4, CHECKs that find a difference (MAC, address, route), an exhausted
# pool (session pool.json), an MTU, and bad configs (each on a fresh node).
compare_session() {  # guest.wasm
  local g=$1 f
  session "$g"
  "$RUNNER" simulate ADD pod-4 -c conf.json -g "$g" -s node.json
  jq '.cniVersion = "1.1.0" | . + {"cni.dev/valid-attachments": [{containerID: "pod-3", ifname: "eth0"}]}' \
    conf.json > gc.json
  "$RUNNER" simulate STATUS -c gc.json -g "$g" -s node.json
  "$RUNNER" simulate GC -c gc.json -g "$g" -s node.json --show-node
  for f in '.interfaces[1].mac = "02:00:00:00:00:99"' \
           '.ips[0].address |= sub("/"; "9/")' \
           '.routes += [{dst: "10.9.0.0/16", gw: "10.0.0.1"}]' \
           '.interfaces[1].mac |= ascii_upcase'; do
    jq --slurpfile n node.json --arg pod "pod-3/eth0" \
      ". + {prevResult: (\$n[0].results[\$pod] | $f)}" conf.json > check.json
    "$RUNNER" simulate CHECK pod-3 -c check.json -g "$g" -s node.json
  done
  jq '.myPodSubnet = "200.200.1.0/30"' conf.json > small.json
  "$RUNNER" simulate ADD pod-1 -c small.json -g "$g" -s pool.json
  "$RUNNER" simulate ADD pod-2 -c small.json -g "$g" -s pool.json --show-node
  "$RUNNER" simulate DEL pod-1 -c small.json -g "$g" -s pool.json
  "$RUNNER" simulate ADD pod-2 -c small.json -g "$g" -s pool.json
  jq '.mtu = 1400 | .bridge = "br-pods"' conf.json > mtu.json
  "$RUNNER" simulate ADD pod-1 -c mtu.json -g "$g"
  for f in 'del(.myPodSubnet)' '.myPodSubnet = "200.200.1.5/24"' '.myPodSubnet = "10.1.0.0/24"' \
           '.myPodSubnet = "200.200.1.0/31"' '.myHostNetwork = "10.0.0.0/33"' \
           '.myHostNetwork = "ten/16"' '.myHostNetwork = "10.0.0.0"' \
           '.myHostNetwork = "010.0.0.0/16"' '.myHostNetwork = "10.0.0.0/+16"' \
           '.myHostNetwork = "10.0.0.0/-1"' '.myPodSubnet = "200.200.1.0/33"' \
           '.myPodNetwork = "200.201.0.0/16"' '.bridge = "b\"r"' '.mtu = 100' '.mtu = 65536' \
           '.myPodSubnet = null' '.cniVersion = "1.1.0" | .myHostNetwork = "10.0.0.1/16"'; do
    jq "$f" conf.json > bad.json
    echo "# config: $f"
    "$RUNNER" simulate ADD pod-1 -c bad.json -g "$g"
  done
  "$RUNNER" simulate STATUS -c bad.json -g "$g"
  return 0  # the calls' own failures are in the transcript, which the test compares
}
