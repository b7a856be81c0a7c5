# shellcheck shell=bash
# Shared set-up for the runner's end-to-end tests. Each test gets its own node
# namespace and pod namespaces (names unique to the test), a private state/cache/log
# directory, and a teardown that removes them all, also when the test fails.
# The runner is exec'd inside the node namespace exactly as a runtime would: CNI_*
# env, config on stdin, stdout read back.

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
RUNNER=${WASM_CNI_RUNNER:-$REPO/dist/bin/wasm-cni}
GUEST=${WASM_CNI_GUEST:-$REPO/dist/guests/default.wasm}

common_setup() {
  [ -x "$RUNNER" ] || { echo "runner $RUNNER missing: run scripts/build.sh" >&2; return 1; }
  [ -f "$GUEST" ] || { echo "guest $GUEST missing: run scripts/build.sh" >&2; return 1; }
  T="wc${BATS_SUITE_TEST_NUMBER}x$$"   # short, unique per test
  NODE="$T-node"
  NAMESPACES=("$NODE")
  ip netns add "$NODE"
  ip -n "$NODE" link set lo up
  W="$BATS_TEST_TMPDIR/w"
  mkdir -p "$W"
  SUBNET=${SUBNET:-200.200.1.0/24}
  write_conf "1.0.0"
}

common_teardown() {
  local ns
  for ns in "${NAMESPACES[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
  done
}

# write_conf VERSION [extra jq filter]: the network config in $W/conf.json
write_conf() {
  local filter=${2:-.}
  jq -n --arg v "$1" --arg guest "$GUEST" --arg w "$W" --arg subnet "$SUBNET" '{
      cniVersion: $v, name: "testnet", type: "wasm-cni", guest: $guest,
      cacheDir: ($w + "/cache"), stateDir: ($w + "/state"), logFile: ($w + "/wasm-cni.log"),
      myHostNetwork: "10.0.0.0/16", myPodNetwork: "200.200.0.0/16", myPodSubnet: $subnet
    }' | jq "$filter" > "$W/conf.json"
}

# add_pod NAME: a pod namespace (removed in teardown)
add_pod() {
  ip netns add "$T-$1"
  NAMESPACES+=("$T-$1")
}

# cni COMMAND CONTAINER POD [IFNAME] [CONF]: run the runner in the node namespace.
# Sets $status, $output (stdout only) and $stderr_out. Fails the test if stdout is
# anything but nothing or exactly one JSON document.
cni() {
  local cmd=$1 cid=$2 pod=$3 ifname=${4:-eth0} conf=${5:-$W/conf.json}
  local netns=""
  [ -n "$pod" ] && netns="/run/netns/$T-$pod"
  set +e
  output=$(ip netns exec "$NODE" env -i PATH="$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" \
    CNI_NETNS="$netns" CNI_IFNAME="$ifname" CNI_PATH=/usr/lib/cni "$RUNNER" < "$conf" 2>"$W/stderr")
  status=$?
  set -e
  stderr_out=$(cat "$W/stderr")
  assert_one_json_or_nothing
}

# Like cni, with the environment given literally (for bad-input tests).
cni_env() {
  local conf=$1; shift
  set +e
  output=$(ip netns exec "$NODE" env -i PATH="$PATH" "$@" "$RUNNER" < "$conf" 2>"$W/stderr")
  status=$?
  set -e
  assert_one_json_or_nothing
}

assert_one_json_or_nothing() {
  if [ -z "$output" ]; then return 0; fi
  local n
  n=$(printf '%s' "$output" | jq -s 'length' 2>/dev/null) || {
    echo "stdout is not JSON: $output" >&2; return 1; }
  [ "$n" = 1 ] || { echo "stdout has $n JSON documents: $output" >&2; return 1; }
}

# expect_error CODE: the last call failed with a CNI error object of that code.
expect_error() {
  [ "$status" -ne 0 ] || { echo "expected failure, got exit 0: $output" >&2; return 1; }
  local code
  code=$(jq -r '.code' <<<"$output")
  [ "$code" = "$1" ] || { echo "expected code $1, got $code: $output" >&2; return 1; }
  jq -e '.msg | type == "string" and length > 0' <<<"$output" >/dev/null
}

expect_ok() {
  [ "$status" -eq 0 ] || { echo "exit $status: $output / $stderr_out" >&2; return 1; }
}

pod_ip() { jq -r '.ips[0].address | split("/")[0]' <<<"$1"; }

# Links in the node namespace other than lo.
node_links() { ip -n "$NODE" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -vx lo || true; }

store_keys() { ls "$W/state/testnet/kv" 2>/dev/null || true; }

ping_from() { ip netns exec "$1" ping -c 1 -W 2 "$2" >/dev/null; }
