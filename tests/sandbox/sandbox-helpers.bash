# shellcheck shell=bash
# Helpers for the sandbox tests, on top of the runner e2e helpers.
# shellcheck disable=SC2154  # output and status are set by cni (tests/cni/helpers.bash)
load ../cni/helpers

# shellcheck disable=SC2034  # used by the .bats files that load this
HOSTILE=${WASM_CNI_HOSTILE:-$REPO/dist/test/hostile.wasm}
# shellcheck disable=SC2034
FAULTY_RUNNER=${WASM_CNI_FAULTY_RUNNER:-$REPO/dist/test/wasm-cni-faults}

# A node with an uplink like a real one: veth "uplink0" to an upstream namespace,
# 10.0.0.3/16, default route via 10.0.0.1.
add_uplink() {
  local up="$T-up"
  ip netns add "$up"; NAMESPACES+=("$up")
  ip -n "$NODE" link add uplink0 type veth peer name upstream netns "$up"
  ip -n "$NODE" addr add 10.0.0.3/16 dev uplink0
  ip -n "$NODE" link set uplink0 up
  ip -n "$up" addr add 10.0.0.1/16 dev upstream
  ip -n "$up" link set upstream up
  ip -n "$NODE" route add default via 10.0.0.1
}

# Everything a guest could have changed: links, IPv4 and IPv6 addresses, routes,
# firewall, sysctls (IPv4 forwarding, rp_filter, proxy_arp of every link; IPv6
# disable_ipv6, forwarding, accept_ra and accept_dad of every link) of the node and of the given pod
# namespaces, and the network's store.
snapshot() {
  local ns
  set -o pipefail
  for ns in "$NODE" "$@"; do
    echo "### $ns"
    # operstate ("state UP/UNKNOWN") follows carrier and the bridge's own timers: the
    # admin flags in <...> are what a call can change.
    ip -n "$ns" -o link show | sed -E 's/^[0-9]+: //; s/ link-netns(id)? [^ ]+//; s/ state [A-Z]+ / /'
    ip -n "$ns" -4 -o addr show | awk '{print $2, $4}'
    ip -n "$ns" -4 route show table all | grep -v '^local\|^broadcast' || true
    # IPv6: global addresses and routes, which toggling disable_ipv6 deletes.
    # Link-local ones (fe80::/64, multicast, anycast) follow carrier, like operstate.
    ip -n "$ns" -6 -o addr show | awk '$4 !~ /^fe80:/ {print $2, $4}'
    ip -n "$ns" -6 route show table all |
      grep -v '^local\|^multicast\|^anycast\|^fe80::/64 \|^broadcast' || true
    ip netns exec "$ns" nft list ruleset
    # static unicast forwarding-database and neighbour entries (VXLAN policies); learnt
    # ones come and go with traffic, multicast ones with the kernel's group memberships
    bridge -n "$ns" fdb show | grep permanent | grep -v '^33:33:\|^01:00:5e:\|^01:80:c2:' || true
    ip -n "$ns" neigh show nud permanent
    ip netns exec "$ns" sh -c 'cd /proc/sys/net/ipv4 && echo ip_forward=$(cat ip_forward) &&
      for f in conf/*/forwarding conf/*/rp_filter conf/*/proxy_arp; do echo "$f=$(cat -v "$f")"; done'
    ip netns exec "$ns" sh -c 'cd /proc/sys/net/ipv6 2>/dev/null || exit 0
      for f in conf/*/disable_ipv6 conf/*/forwarding conf/*/accept_ra conf/*/accept_dad; do
        echo "ipv6/$f=$(cat "$f")"; done'
  done
  echo "### store"
  # lock, boot_id and records (an append-only log: a rolled-back ADD leaves lines that
  # cancel out) are the runner's own bookkeeping; the gate's unit tests compare what
  # the records mean
  if [ -d "$W/state" ]; then
    find "$W/state" -type f ! -name lock ! -name boot_id ! -name records | sort |
      while read -r f; do echo "$f=$(cat -v "$f")"; done
  fi
}

# A cluster around the node (host-gw, VXLAN): this node is 10.0.0.3 with 200.200.1.0/24,
# the peer 10.0.0.4 has 200.200.2.0/24 (config in $W/good.json).
cluster_conf() {
  jq '.hostNetwork = "10.0.0.0/16" | .peers = [
        {name: "self", nodeIP: "10.0.0.3", podCIDRs: ["200.200.1.0/24"]},
        {name: "peer", nodeIP: "10.0.0.4", podCIDRs: ["200.200.2.0/24"]}]' \
    "$W/good.json" > "$W/cl.json"
  mv "$W/cl.json" "$W/good.json"
}

# reconcile CONF [RUNNER]: `wasm-cni reconcile -c CONF` in the node; output and status.
# shellcheck disable=SC2034  # output and status are read by the .bats files
reconcile() {
  set +e
  output=$(ip netns exec "$NODE" env -i PATH="$PATH" "${2:-$RUNNER}" reconcile -c "$1" 2>&1)
  status=$?
  set -e
}

# Links in the node named with our prefix.
prefixed_links() { node_links | grep '^wc' || true; }

# ---- shared by rollback, deadline, limits, results, pods ----------------------------

# A node with an uplink, two pod namespaces (a, b) and a healthy pod "victim" in a:
# node setup exists, and there is another pod to protect.
hostile_setup() {
  common_setup
  [ -f "$HOSTILE" ] || { echo "missing $HOSTILE: run scripts/build.sh --test-artifacts" >&2; return 1; }
  add_uplink
  add_pod a; add_pod b
  cni ADD victim a; expect_ok
  VICTIM_LINK=$(jq -r '.interfaces[0].name' <<<"$output")
  # shellcheck disable=SC2034  # used by the .bats files
  VICTIM_IP=$(pod_ip "$output") VICTIM_RESULT=$output
  cp "$W/conf.json" "$W/good.json"
}

# Also ends what a call left running in the test's namespaces (a runner's nft child
# after the answer): only processes inside namespaces this test created.
hostile_teardown() {
  local ns pid
  for ns in "${NAMESPACES[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -9 "$pid" 2>/dev/null || true
    done
  done
  common_teardown
}

# hostile_conf MODE [jq filter]: $W/hostile.json, the good config with the hostile guest
# in MODE (deadline 2000 ms unless the filter sets another), then the filter applied.
hostile_conf() {
  local mode=$1 filter=${2:-.}
  jq --arg g "$HOSTILE" --arg m "$mode" \
    '.guest = $g | .hostile = $m | .target = "uplink0" | .victim = "victim" | .timeoutMs = 2000' \
    "$W/good.json" | jq "$filter" > "$W/hostile.json"
}

# hostile_call COMMAND CONTAINER POD: run the call with $W/hostile.json between two
# snapshots (node, pods a and b). Sets $before, $after, $elapsed_ms (and what cni sets).
hostile_call() {
  local t0
  before=$(snapshot "$T-a" "$T-b")
  t0=$(date +%s%N)
  cni "$1" "$2" "$3" eth0 "$W/hostile.json"
  # shellcheck disable=SC2034  # used by the .bats files
  elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  after=$(snapshot "$T-a" "$T-b")
}

# The last hostile_call left the node, the pods and the store exactly as they were.
expect_unchanged() {
  if [ "$before" != "$after" ]; then
    echo "the call changed the node (- before, + after):" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    return 1
  fi
}

# The victim pod still works: its link is there and it pings its gateway.
victim_ok() {
  ip -n "$NODE" link show "$VICTIM_LINK" >/dev/null
  ping_from "$T-a" 200.200.1.1
}

# The last answer's message and details, for grep.
answer_text() { jq -r '(.msg // "") + " " + (.details // "")' <<<"$output"; }

# expect_msg REGEX: the last answer's message matches (grep -E).
expect_msg() {
  grep -Eq -- "$1" <<<"$(answer_text)" || {
    echo "answer does not match /$1/: $output" >&2; return 1; }
}

# Processes running in the node namespace, as "pid comm" lines (none expected after
# a call has answered).
node_procs() {
  local pid
  for pid in $(ip netns pids "$NODE" 2>/dev/null); do
    echo "$pid $(cat "/proc/$pid/comm" 2>/dev/null)"
  done
}
