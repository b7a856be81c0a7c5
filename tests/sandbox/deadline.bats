#!/usr/bin/env bats
# The deadline: every way out of a call ends with its work undone,
# and nothing the call started outlives the answer. A guest that blocks outside wasm
# code (a WASI sleep) still gets code 11 within its deadline + ~1 s; a host call with
# a huge argument (a masquerade with 800000 except entries) is refused quickly,
# without leaving an nft process behind.

load sandbox-helpers

setup() {
  hostile_setup
  # warm the cache so compile time is not in the measured calls
  jq --arg g "$HOSTILE" '.guest = $g | .hostile = "garbage"' "$W/good.json" > "$W/warm.json"
  cni ADD warm b eth0 "$W/warm.json" || true
}
teardown() { hostile_teardown; }

# Nothing runs in the node namespace a moment after the answer.
expect_nothing_running() {
  local left
  sleep 0.5
  left=$(node_procs)
  [ -z "$left" ] || { echo "still running in the node namespace after the answer: $left" >&2; return 1; }
}

@test "a guest blocked in a WASI sleep: code 11 within deadline + 1 s, its work undone, nothing left running" {
  # allowed work first: its veth, 200.200.1.77/24 on the bridge, a store key
  hostile_conf sleep-wasi '.timeoutMs = 1000'
  hostile_call ADD evil b
  # shellcheck disable=SC2154 # set by hostile_call
  echo "answered in $elapsed_ms ms: $output" >&3
  expect_nothing_running
  expect_unchanged
  addrs=$(ip -n "$NODE" -4 -o addr show dev cni0)
  [[ "$addrs" != *200.200.1.77* ]] || { echo "bridge address left: $addrs" >&2; false; }
  [ ! -e "$W/state/testnet/kv/hostile%2Fmarker" ]
  [ -z "$(prefixed_links | grep -vx "$VICTIM_LINK" || true)" ]
  expect_error 11
  [ "$elapsed_ms" -lt 2000 ] || { echo "took $elapsed_ms ms for a 1000 ms deadline" >&2; false; }
  victim_ok
}

@test "a masquerade with 800000 except entries is refused quickly, with no nft left running" {
  hostile_conf masq-huge '.count = 800000 | .timeoutMs = 1000'
  hostile_call ADD evil b
  # shellcheck disable=SC2154 # set by hostile_call
  echo "answered in $elapsed_ms ms: $output" >&3
  expect_nothing_running
  expect_unchanged
  # and nothing changes the node later either
  sleep 1
  [ "$(snapshot "$T-a" "$T-b")" = "$before" ]
  expect_error 100
  expect_msg "masquerade: invalid-argument"
  [ "$elapsed_ms" -lt 2000 ] || { echo "took $elapsed_ms ms for a 1000 ms deadline" >&2; false; }
  victim_ok
}

@test "SIGTERM from the runtime during a call: code 11 naming the signal, its work undone" {
  hostile_conf sleep-wasi '.timeoutMs = 20000'
  before=$(snapshot "$T-a" "$T-b")
  ip netns exec "$NODE" env -i PATH="$PATH" CNI_COMMAND=ADD CNI_CONTAINERID=evil \
    CNI_NETNS="/run/netns/$T-b" CNI_IFNAME=eth0 "$RUNNER" < "$W/hostile.json" > "$W/out" 2>/dev/null &
  local pid=$!
  # the guest has done its work once its store key is there; then it sleeps
  for _ in $(seq 100); do [ -e "$W/state/testnet/kv/hostile%2Fmarker" ] && break; sleep 0.05; done
  [ -e "$W/state/testnet/kv/hostile%2Fmarker" ] || { echo "the guest never did its work" >&2; false; }
  kill -TERM "$pid"
  set +e; wait "$pid"; status=$?; set -e
  output=$(cat "$W/out")
  # shellcheck disable=SC2034 # compared by expect_unchanged
  after=$(snapshot "$T-a" "$T-b")
  expect_error 11
  expect_msg "stopped by signal 15"
  expect_unchanged
  expect_nothing_running
  victim_ok
}

@test "a guest holding the network lock past its deadline: others wait, then fail with code 11 or succeed after its rollback" {
  # the hostile guest enters the critical section, does its work (veth, store key),
  # then spins in wasm until its deadline traps it; its rollback needs the lock too
  hostile_conf hold-lock '.timeoutMs = 1500'
  add_pod c
  # (the round-robin pointer moves with the good pod's ADD)
  before=$(snapshot "$T-a" "$T-b" | grep -v '/kv/last=')
  ip netns exec "$NODE" env -i PATH="$PATH" CNI_COMMAND=ADD CNI_CONTAINERID=evil \
    CNI_NETNS="/run/netns/$T-b" CNI_IFNAME=eth0 "$RUNNER" < "$W/hostile.json" > "$W/evil.out" 2>/dev/null &
  local pid=$!
  for _ in $(seq 100); do [ -e "$W/state/testnet/kv/hostile%2Fmarker" ] && break; sleep 0.05; done
  [ -e "$W/state/testnet/kv/hostile%2Fmarker" ] || { echo "the guest never did its work" >&2; false; }
  # a call that may wait 200 ms gives up with code 11
  jq '.lockTimeoutMs = 200' "$W/good.json" > "$W/short.json"
  cni ADD good c eth0 "$W/short.json"
  expect_error 11
  expect_msg "network lock .* still held"
  # one that may wait longer gets the lock once the hostile call was rolled back
  cni ADD good c
  expect_ok
  good_ip=$(pod_ip "$output")
  set +e; wait "$pid"; status=$?; set -e
  output=$(cat "$W/evil.out")
  expect_error 11
  [ ! -e "$W/state/testnet/kv/hostile%2Fmarker" ]
  [ "$good_ip" != "$VICTIM_IP" ]
  ping_from "$T-c" 200.200.1.1
  cni DEL good c; expect_ok
  # shellcheck disable=SC2034 # compared by expect_unchanged
  after=$(snapshot "$T-a" "$T-b" | grep -v '/kv/last=')
  expect_unchanged
  victim_ok
}
