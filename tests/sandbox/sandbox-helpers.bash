# Helpers for the sandbox tests (issue 4), on top of the runner e2e helpers.
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

# Everything a guest could have changed: links, IPv4 addresses, routes, firewall,
# sysctls of the node and of the given pod namespaces, and the network's store.
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
    ip netns exec "$ns" nft list ruleset
    ip netns exec "$ns" sh -c 'cd /proc/sys/net/ipv4 && echo ip_forward=$(cat ip_forward) &&
      for f in conf/*/forwarding conf/*/rp_filter conf/*/proxy_arp; do echo "$f=$(cat "$f")"; done'
  done
  echo "### store"
  if [ -d "$W/state" ]; then
    find "$W/state" -type f ! -name lock | sort | while read -r f; do echo "$f=$(cat "$f")"; done
  fi
}

# Links in the node named with our prefix.
prefixed_links() { node_links | grep '^wc' || true; }
