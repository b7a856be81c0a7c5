#!/usr/bin/env bats
# containerd's CRI plugin with a dual-stack wasm-cni network (myPodSubnet 200.200.1.0/24
# and fd00:200:200:1::/64): a pod sandbox gets one address of each family and
# PodSandboxStatus reports both (network.ip and additional_ips), as the kubelet reads
# them for status.podIPs. A containerd of its own, like cri.bats's; see harness.bash.

load harness

setup_file() {
  cri_start wasm-dual || { cri_stop; return 1; }
}

teardown_file() {
  cri_stop
}

teardown() {
  if [ -n "${CRI_PID:-}" ] && kill -0 "$CRI_PID" 2>/dev/null; then
    cri cleanup >/dev/null 2>&1 || true
  fi
}

@test "cri dual-stack: the sandbox status reports an IPv4 and an IPv6 address, both on eth0, both answer; removal leaves nothing" {
  local id st ip ip6 netns
  jq -e '.plugins[0].myPodSubnet == ["200.200.1.0/24", "fd00:200:200:1::/64"]' "$CRI_DIR/cni/net.d/10-$CRI_NETWORK.conflist"
  id=$(cri run-sandbox --name pod-ds --namespace cri-test --uid 6a0b3c1e-0000-4000-8000-0000000000d5 \
    --log-root "$CRI_DIR/pods") || { cri_diag; false; }
  st=$(cri status "$id")
  echo "status: $st"
  [ "$(jq -r .state <<<"$st")" = SANDBOX_READY ]
  # network.ip is the IPv4 one (containerd puts IPv4 first), additional_ips the IPv6 one
  [ "$(jq '.ips | length' <<<"$st")" = 2 ]
  ip=$(jq -r '.ips[0]' <<<"$st")
  ip6=$(jq -r '.ips[1]' <<<"$st")
  [ "$(jq -r .ip <<<"$st")" = "$ip" ]
  cri_in_subnet "$ip" || { echo "$ip is not in 200.200.1.0/24"; false; }
  cri_in_subnet6 "$ip6" || { echo "$ip6 is not in $CRI_SUBNET6"; false; }
  netns=$(jq -r .netns <<<"$st")
  [ -e "$netns" ]
  # really on the pod's eth0, usable at once (no DAD "tentative" left), with both defaults
  nsenter --net="$netns" ip -o addr show dev eth0 scope global | tee "$BATS_TEST_TMPDIR/addrs"
  grep -q " inet $ip/24 " "$BATS_TEST_TMPDIR/addrs"
  grep -q " inet6 $ip6/64 " "$BATS_TEST_TMPDIR/addrs"
  [ -z "$(grep tentative "$BATS_TEST_TMPDIR/addrs")" ]
  nsenter --net="$netns" ip -6 route show default | grep -q "via fd00:200:200:1::1 "
  # both reserved in the runner's store, and both answer from the node
  [ -f "$CRI_KV/ip%2F$ip" ] || { ls "$CRI_KV"; false; }
  [ -f "$CRI_KV/ip%2F${ip6//:/%3A}" ] || { ls "$CRI_KV"; false; }  # (store file names escape ':')
  ip netns exec "$CRI_NODE" ping -c 1 -W 2 "$ip" >/dev/null
  ip netns exec "$CRI_NODE" ping -6 -c 1 -W 2 "$ip6" >/dev/null

  cri stop "$id"
  cri remove "$id"
  [ "$(cri list | jq length)" = 0 ]
  cri_expect_clean_node
}

@test "cri dual-stack: 10 sandboxes created concurrently get 10 distinct addresses in each family" {
  local out n
  out=$(cri many --count 10 --prefix ds --namespace cri-test --log-root "$CRI_DIR/pods" --keep) ||
    { echo "$out"; cri_diag; false; }
  n=$(jq '[.sandboxes[] | select(.state == "SANDBOX_READY")] | length' <<<"$out")
  [ "$n" = 10 ] || { echo "ready: $n"; echo "$out" | jq .errors; cri_diag; false; }
  for id in $(jq -r '.sandboxes[].id' <<<"$out"); do cri status "$id"; done >"$BATS_TEST_TMPDIR/st"
  [ "$(jq -r '.ips[0]' "$BATS_TEST_TMPDIR/st" | sort -u | while read -r a; do cri_in_subnet "$a" && echo "$a"; done | grep -c .)" = 10 ]
  [ "$(jq -r '.ips[1]' "$BATS_TEST_TMPDIR/st" | sort -u | while read -r a; do cri_in_subnet6 "$a" && echo "$a"; done | grep -c .)" = 10 ]
  out=$(cri cleanup) || { echo "$out"; cri_diag; false; }
  [ "$(jq '.removed | length' <<<"$out")" = 10 ]
  cri_expect_clean_node
}
