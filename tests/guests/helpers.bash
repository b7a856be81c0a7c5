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
