#!/usr/bin/env bats
# Crash safety: SIGKILL the runner at random points of KILL_N ADDs; the next
# DEL (or GC) for each container leaves no reservation and no host link, and the store
# stays readable. CI runs a small KILL_N; the full test is KILL_N=50.

load sandbox-helpers

setup() {
  common_setup
  add_uplink
  KILL_N=${KILL_N:-12}
  write_conf 1.1.0
}
teardown() { common_teardown; }

# Every file in the store holds a complete value of its key's shape, as the default
# guest writes them: last and attach/<cid>/<ifname> an address in the pod subnet,
# ip/<address> its holder "<cid> <ifname>", node/setup the settings' fingerprint. A
# value cut short by a kill mid-write would be empty or fail its pattern.
check_store_values() {
  local f key value n=0 bad=()
  local addr='200\.200\.1\.(25[0-4]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[2-9])'
  for f in "$W"/state/testnet/kv/*; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    key=$(basename "$f")
    key=${key//%2F//}
    value=$(cat "$f") || { bad+=("$key: unreadable"); continue; }
    [ "$(wc -c <"$f")" -eq "${#value}" ] || { bad+=("$key: ${#value} characters of $(wc -c <"$f") bytes"); continue; }
    case $key in
      last | attach/*) [[ $value =~ ^${addr}$ ]] ;;
      ip/*) [[ $value =~ ^[A-Za-z0-9-]+\ eth0$ && ${key#ip/} =~ ^${addr}$ ]] ;;
      node/setup) [[ $value =~ ^v1\ bridge=cni0\ gw=200\.200\.1\.1/24\ pods=200\.200\.0\.0/16\ hosts=10\.0\.0\.0/16\ mtu=None$ ]] ;;
      *) false ;;
    esac || bad+=("$key='$value'")
  done
  # the warm-up ADD wrote both for good: they outlive every DEL
  [ -f "$W/state/testnet/kv/last" ] || bad+=("no 'last' key")
  [ -f "$W/state/testnet/kv/node%2Fsetup" ] || bad+=("no 'node/setup' key")
  [ "${#bad[@]}" -eq 0 ] || { printf 'store value: %s\n' "${bad[@]}" >&2; return 1; }
  echo "store: $n values, all whole" >&3
}

@test "SIGKILL at random points of ADD, then DEL or GC: no leaks" {
  # a node in service: set up, cache warm; the kills then land in pod set-up
  add_pod warm
  cni ADD warm warm; expect_ok
  cni DEL warm warm; expect_ok
  # how long a whole warm ADD takes here: the kill delays are drawn from that span, so
  # they land inside calls however fast or loaded the machine is
  add_pod timed
  t0=$(date +%s%N)
  ip netns exec "$NODE" env -i CNI_COMMAND=ADD CNI_CONTAINERID=timed CNI_NETNS="/run/netns/$T-timed" \
    CNI_IFNAME=eth0 "$RUNNER" < "$W/conf.json" > /dev/null
  span_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  ((span_ms >= 2)) || span_ms=2
  cni DEL timed timed; expect_ok
  killed=0 partial=0
  for i in $(seq 1 "$KILL_N"); do
    add_pod "k$i"
    ip netns exec "$NODE" env -i CNI_COMMAND=ADD CNI_CONTAINERID="k$i" CNI_NETNS="/run/netns/$T-k$i" \
      CNI_IFNAME=eth0 "$RUNNER" < "$W/conf.json" > /dev/null 2>&1 &
    pid=$!
    # a random point of the call
    sleep "$(printf '0.%03d' $((RANDOM % span_ms)))"
    if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
    wait "$pid" 2>/dev/null || true
    # a killed call that left work behind (a link or a reservation) is what DEL/GC must mend
    if ! grep -q "ADD k$i: ok" "$W/wasm-cni.log" 2>/dev/null &&
       { [ -n "$(prefixed_links)" ] || grep -rqs "^k$i eth0\$" "$W/state/testnet/kv" ||
         store_keys | grep -q "attach%2Fk$i%2F"; }; then
      partial=$((partial + 1))
    fi
    if [ $((i % 3)) -ne 0 ]; then
      cni DEL "k$i" "k$i"; expect_ok
    fi
  done
  # the rest is left to GC, with no valid attachments
  jq '. + {"cni.dev/valid-attachments": []}' "$W/conf.json" > "$W/gc.json"
  cni GC "" "" "" "$W/gc.json"; expect_ok
  finished=0 inside=0 before=0
  for i in $(seq 1 "$KILL_N"); do
    if grep -q "ADD k$i: ok" "$W/wasm-cni.log"; then finished=$((finished + 1))
    elif grep -q "ADD k$i:" "$W/wasm-cni.log"; then inside=$((inside + 1))
    else before=$((before + 1)); fi
  done
  echo "SIGKILL sent to $killed of $KILL_N ADDs: $finished had finished, $inside died inside the runner (after it logged), $before before it logged anything; $partial left partial state (links/reservations) for DEL/GC to mend" >&3
  [ "$((inside + before))" -gt 0 ]
  [ -z "$(prefixed_links)" ] || { echo "leaked links: $(prefixed_links)" >&2; false; }
  [ -z "$(store_keys | grep -E '^(ip|attach)')" ] || { echo "leaked keys: $(store_keys)" >&2; false; }
  # every value is whole (the store renames a complete file into place: a kill leaves
  # the old or the new value, never a torn one) and the store still works
  check_store_values
  add_pod after
  cni ADD after after; expect_ok
  ping_from "$T-after" 200.200.1.1
}
