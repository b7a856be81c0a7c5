#!/usr/bin/env bats
# Fault injection: an ADD whose k-th host operation fails, for every k,
# leaves nothing behind: on a fresh node (node setup rolled back too) and on a node
# that already has a pod.

load sandbox-helpers

setup() {
  common_setup
  [ -x "$FAULTY_RUNNER" ] || { echo "missing $FAULTY_RUNNER: run scripts/build.sh --test-artifacts" >&2; return 1; }
  RUNNER=$FAULTY_RUNNER
  add_uplink
  add_pod a; add_pod b
}
teardown() { common_teardown; }

# how many host operations a successful ADD makes from the current state
# (the probe pod must exist: created by the caller, so that teardown knows it)
count_calls() {
  local probe=$1
  cni ADD "$probe" "$probe"; expect_ok
  local n
  n=$(grep "ADD $probe: ok" "$W/wasm-cni.log" | sed -E 's/.* host_calls=([0-9]+).*/\1/')
  cni DEL "$probe" "$probe"; expect_ok
  echo "$n"
}

fail_every_k() {
  local calls=$1 conf=${2:-$W/conf.json} k before after
  before=$(snapshot "$T-b")
  for k in $(seq 1 "$calls"); do
    set +e
    output=$(ip netns exec "$NODE" env -i WASM_CNI_FAIL_AT="$k" CNI_COMMAND=ADD CNI_CONTAINERID=cb \
      CNI_NETNS="/run/netns/$T-b" CNI_IFNAME=eth0 "$RUNNER" < "$conf")
    status=$?
    set -e
    assert_one_json_or_nothing
    [ "$status" -ne 0 ] || { echo "k=$k: ADD succeeded" >&2; return 1; }
    grep -q "injected failure at host call $k" <<<"$output" || { echo "k=$k: $output" >&2; return 1; }
    after=$(snapshot "$T-b")
    if [ "$before" != "$after" ]; then
      echo "k=$k left something:" >&2
      diff <(echo "$before") <(echo "$after") >&2 || true
      return 1
    fi
  done
  # The failures really came after applied effects: most calls had something to undo.
  local undone
  undone=$(grep -cE "ADD cb: failed .* rolled_back=[1-9]" "$W/wasm-cni.log")
  echo "$undone of $calls injected failures had effects to roll back" >&3
  [ "$undone" -ge $((calls / 2)) ]
}

@test "every failing host call of a first ADD (node setup included) leaves the node pristine" {
  # Learn the count on a throwaway node state, then start from pristine again.
  add_pod probe1
  calls=$(count_calls probe1)
  [ "$calls" -gt 15 ]
  # back to a pristine node: remove what node setup made
  ip -n "$NODE" link del cni0
  ip netns exec "$NODE" nft delete table ip wasm_cni_testnet
  ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=0
  rm -rf "$W/state"
  fail_every_k "$calls"
  # and the node still works afterwards
  cni ADD cb b; expect_ok
  ping_from "$T-b" 200.200.1.1
}

@test "every failing host call of an ADD next to a running pod leaves both untouched" {
  cni ADD ca a; expect_ok
  add_pod probe2
  calls=$(count_calls probe2)
  [ "$calls" -gt 5 ]
  fail_every_k "$calls"
  ping_from "$T-a" 200.200.1.1
}

@test "every failing host call of a dual-stack ADD (IPv6 address, route, sysctls, ip6 table) leaves the node pristine" {
  # the hostile guest's dual-stack mode: every kind of IPv6 change, then a result
  [ -f "$HOSTILE" ] || { echo "missing $HOSTILE: run scripts/build.sh --test-artifacts" >&2; return 1; }
  jq --arg g "$HOSTILE" '.guest = $g | .hostile = "dual-stack"
    | .myPodNetwork = ["200.200.0.0/16", "fd00:200::/40"]' "$W/conf.json" > "$W/ds.json"
  cni ADD cb b eth0 "$W/ds.json"; expect_ok
  local calls link
  calls=$(grep "ADD cb: ok" "$W/wasm-cni.log" | sed -E 's/.* host_calls=([0-9]+).*/\1/')
  [ "$calls" -gt 10 ]
  link=$(jq -r '.interfaces[0].name' <<<"$output")
  ip netns exec "$NODE" nft list table ip6 wasm_cni_testnet | grep -q masquerade
  # back to a pristine node: the guest's DEL removes nothing, so remove it here
  ip -n "$NODE" link del "$link"
  ip netns exec "$NODE" nft delete table ip6 wasm_cni_testnet
  ip netns exec "$NODE" sysctl -qw net.ipv6.conf.all.forwarding=0
  rm -rf "$W/state"
  fail_every_k "$calls" "$W/ds.json"
  # and it works afterwards: both addresses in the pod
  cni ADD cb b eth0 "$W/ds.json"; expect_ok
  ip -n "$T-b" -6 addr show eth0 | grep -q "fd00:200:1::60/64"
  ip -n "$T-b" -6 route show default | grep -q "via fd00:200:1::1"
}

@test "every failing host call of a reconcile (VXLAN link, FDB, neighbour, uplink route) leaves the node pristine" {
  [ -f "$HOSTILE" ] || { echo "missing $HOSTILE: run scripts/build.sh --test-artifacts" >&2; return 1; }
  cp "$W/conf.json" "$W/good.json"
  cluster_conf
  jq --arg g "$HOSTILE" '.guest = $g | .reconcile = "overlay-ok"' "$W/good.json" > "$W/rec.json"
  local before after calls k
  before=$(snapshot)
  reconcile "$W/rec.json"
  [ "$status" -eq 0 ] || { echo "$output" >&2; false; }
  calls=$(grep -i "reconcile" "$W/wasm-cni.log" | tail -1 | sed -E 's/.* host_calls=([0-9]+).*/\1/')
  [ "$calls" -gt 8 ]
  bridge -n "$NODE" fdb show dev wcni.1 | grep -q "dst 10.0.0.4"
  # back to pristine: the link takes its FDB and neighbour entries along
  ip -n "$NODE" link del wcni.1
  ip -n "$NODE" route del 200.200.2.128/25 via 10.0.0.4 dev uplink0
  after=$(snapshot)
  [ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after") >&2; false; }
  for k in $(seq 1 "$calls"); do
    set +e
    output=$(ip netns exec "$NODE" env -i WASM_CNI_FAIL_AT="$k" "$RUNNER" reconcile -c "$W/rec.json" 2>&1)
    status=$?
    set -e
    [ "$status" -ne 0 ] || { echo "k=$k: reconcile succeeded" >&2; return 1; }
    grep -q "injected failure at host call $k" <<<"$output" || { echo "k=$k: $output" >&2; return 1; }
    after=$(snapshot)
    if [ "$before" != "$after" ]; then
      echo "k=$k left something:" >&2
      diff <(echo "$before") <(echo "$after") >&2 || true
      return 1
    fi
  done
}

@test "every failing host call of an ADD making every cluster change leaves the node pristine" {
  [ -f "$HOSTILE" ] || { echo "missing $HOSTILE: run scripts/build.sh --test-artifacts" >&2; return 1; }
  cp "$W/conf.json" "$W/good.json"
  cluster_conf
  jq --arg g "$HOSTILE" '.guest = $g | .hostile = "overlay"' "$W/good.json" > "$W/ov.json"
  # the mode gives up after all its work: a plain run is a full rollback already
  local before after calls
  before=$(snapshot "$T-b")
  cni ADD cb b eth0 "$W/ov.json"
  expect_error 100
  grep -q "did its work and gives up" <<<"$output"
  after=$(snapshot "$T-b")
  [ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after") >&2; false; }
  calls=$(grep "ADD cb: failed" "$W/wasm-cni.log" | tail -1 | sed -E 's/.* host_calls=([0-9]+).*/\1/')
  [ "$calls" -gt 12 ]
  fail_every_k "$calls" "$W/ov.json"
}

@test "a runner panic in the middle of an ADD: an error object, and the work so far undone" {
  cni ADD warm a; expect_ok   # node setup exists: the panicking ADD is a plain pod ADD
  local before after
  before=$(snapshot "$T-b")
  # host call 12 of a plain pod ADD (16 calls) comes after the veth was created
  cni_env "$W/conf.json" WASM_CNI_PANIC_AT=12 CNI_COMMAND=ADD CNI_CONTAINERID=cb \
    CNI_NETNS="/run/netns/$T-b" CNI_IFNAME=eth0
  grep -q "injected panic at host call 12" "$W/stderr"
  assert_one_json_or_nothing
  expect_error 999
  grep -q "panicked" <<<"$output"
  grep -Eq "panicked.*stopped; [1-9][0-9]* change\(s\) undone" "$W/wasm-cni.log"
  after=$(snapshot "$T-b")
  [ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after") >&2; false; }
}
