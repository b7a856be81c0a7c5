#!/usr/bin/env bats
# The kubelet's path without a cloud: containerd's CRI plugin runs our runner (the first
# conflist in its CNI conf dir) for pod sandboxes that tests/cri-client asks for exactly
# as the kubelet would. Everything runs in a throwaway node namespace; see harness.bash.

load harness

setup_file() {
  # A failed start still tears down what it made; teardown_file runs cri_stop again.
  cri_start wasm || { cri_stop; return 1; }
}

teardown_file() {
  cri_stop
}

# Each test leaves no sandbox behind for the next, even when it fails.
teardown() {
  if [ -n "${CRI_PID:-}" ] && kill -0 "$CRI_PID" 2>/dev/null; then
    cri cleanup >/dev/null 2>&1 || true
  fi
}

diag() { cri_diag; }
expect_clean_node() { cri_expect_clean_node; }

@test "cri: one sandbox gets the runner's address, answers ping, and leaves nothing on removal" {
  local id st ip netns stored
  id=$(cri run-sandbox --name pod-a --namespace cri-test --uid 6a0b3c1e-0000-4000-8000-00000000000a \
    --log-root "$CRI_DIR/pods") || { diag; false; }
  [ -n "$id" ]
  st=$(cri status "$id")
  echo "status: $st"
  [ "$(jq -r .state <<<"$st")" = SANDBOX_READY ]
  ip=$(jq -r .ip <<<"$st")
  netns=$(jq -r .netns <<<"$st")

  # The address containerd reports is the one our runner stored for (sandbox id, eth0)...
  stored=$(cri_attach_ip "$id")
  [ "$ip" = "$stored" ] || { echo "CRI says $ip, runner stored '$stored'"; diag; false; }
  [ -f "$CRI_KV/ip%2F$ip" ]
  # ...inside the node's pod subnet, and really on the pod's eth0.
  cri_in_subnet "$ip"
  [ -n "$netns" ]
  [ -e "$netns" ]
  nsenter --net="$netns" ip -4 -o addr show dev eth0 | grep -q " $ip/24 "
  # The runner saw this sandbox's ADD.
  grep -q "ADD $id" "$CRI_CNI_LOG"

  # The pod answers from the node namespace.
  ip netns exec "$CRI_NODE" ping -c 1 -W 2 "$ip" >/dev/null

  cri stop "$id"
  cri remove "$id"
  [ "$(cri list | jq length)" = 0 ]
  expect_clean_node
  [ ! -e "$netns" ]
}

@test "cri: 30 sandboxes created concurrently get 30 distinct addresses and are all removed" {
  local out n distinct bad
  out=$(cri many --count 30 --prefix conc --namespace cri-test --log-root "$CRI_DIR/pods" --keep) ||
    { echo "$out"; diag; false; }
  n=$(jq '[.sandboxes[] | select(.state == "SANDBOX_READY")] | length' <<<"$out")
  [ "$n" = 30 ] || { echo "ready: $n"; echo "$out" | jq .errors; diag; false; }
  distinct=$(jq -r '.sandboxes[].ip' <<<"$out" | sort -u | grep -c .)
  [ "$distinct" = 30 ] || { echo "distinct addresses: $distinct"; false; }
  # Every one is in the subnet and is what the runner stored for that sandbox.
  bad=$(jq -r '.sandboxes[] | "\(.id) \(.ip)"' <<<"$out" | while read -r id ip; do
    cri_in_subnet "$ip" || echo "$ip outside"
    [ "$(cri_attach_ip "$id")" = "$ip" ] || echo "$id: CRI $ip, stored $(cri_attach_ip "$id")"
  done)
  [ -z "$bad" ] || { echo "$bad"; false; }
  [ "$(cri_kv_keys | grep -c '^ip%2F')" = 30 ]
  [ "$(cri_node_links | grep -vxE 'lo|cni0' | grep -c .)" = 30 ]

  out=$(cri cleanup) || { echo "$out"; diag; false; }
  [ "$(jq '.removed | length' <<<"$out")" = 30 ]
  [ "$(cri list | jq length)" = 0 ]
  expect_clean_node
}

@test "cri: a sandbox whose netns vanished before Stop is still removed and its address released" {
  local id st ip netns
  id=$(cri run-sandbox --name pod-gone --namespace cri-test --uid 6a0b3c1e-0000-4000-8000-00000000000c \
    --log-root "$CRI_DIR/pods")
  st=$(cri status "$id")
  ip=$(jq -r .ip <<<"$st")
  netns=$(jq -r .netns <<<"$st")
  cri_in_subnet "$ip"
  [ -f "$CRI_KV/ip%2F$ip" ]
  [ -n "$netns" ]
  [ -e "$netns" ]
  # The netns disappears from under containerd: its bind mount is dropped and the file
  # removed (as a reboot or a manual clean-up would). containerd then finds it closed and
  # sends DEL with CNI_NETNS empty; the pause process still holds the namespace until Stop.
  umount "$netns"
  rm -f "$netns"
  [ ! -e "$netns" ]

  run cri stop "$id"
  [ "$status" -eq 0 ] || { echo "stop: $output"; diag; false; }
  run cri remove "$id"
  [ "$status" -eq 0 ] || { echo "remove: $output"; diag; false; }
  [ "$(cri list | jq length)" = 0 ]
  [ ! -f "$CRI_KV/ip%2F$ip" ] || { echo "ip%2F$ip still reserved"; diag; false; }
  [ -z "$(cri_attach_ip "$id")" ]
  # With the pod netns gone, its veth peer went with it, and so did the host end.
  expect_clean_node
}

@test "cri: teardown stops containerd and removes its shims, mounts, files and namespace" {
  # Leave a sandbox running so that teardown has something real to remove.
  cri run-sandbox --name pod-left --namespace cri-test --uid 6a0b3c1e-0000-4000-8000-00000000000d \
    --log-root "$CRI_DIR/pods" >/dev/null
  [ -n "$(cri_mounts)" ]
  local pid=$CRI_PID
  cri_stop
  CRI_PID=$pid cri_gone
}
