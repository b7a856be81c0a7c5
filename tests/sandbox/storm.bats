#!/usr/bin/env bats
# Storm: STORM_N concurrent ADDs then STORM_N concurrent DELs, STORM_ROUNDS
# rounds: zero errors, zero duplicate addresses, zero leftovers.
# CI runs a smaller storm; the full one is STORM_N=100 STORM_ROUNDS=5.

load sandbox-helpers

setup() {
  common_setup
  add_uplink
  STORM_N=${STORM_N:-30}
  STORM_ROUNDS=${STORM_ROUNDS:-2}
  for i in $(seq 1 "$STORM_N"); do add_pod "s$i"; done
}
teardown() { common_teardown; }

burst() {
  local cmd=$1 round=$2 i
  for i in $(seq 1 "$STORM_N"); do
    ip netns exec "$NODE" env -i CNI_COMMAND="$cmd" CNI_CONTAINERID="r${round}c$i" \
      CNI_NETNS="/run/netns/$T-s$i" CNI_IFNAME=eth0 "$RUNNER" < "$W/conf.json" \
      > "$W/$cmd.$i" 2>/dev/null &
  done
  wait
}

@test "storm of concurrent ADDs and DELs" {
  for r in $(seq 1 "$STORM_ROUNDS"); do
    burst ADD "$r"
    for i in $(seq 1 "$STORM_N"); do
      jq -e '.ips[0].address' "$W/ADD.$i" >/dev/null || { echo "round $r ADD $i: $(cat "$W/ADD.$i")" >&2; false; }
    done
    dups=$(cat "$W"/ADD.* | jq -r '.ips[0].address' | sort | uniq -d)
    [ -z "$dups" ] || { echo "duplicates: $dups" >&2; false; }
    [ "$(prefixed_links | wc -l)" = "$STORM_N" ]
    burst DEL "$r"
    for i in $(seq 1 "$STORM_N"); do
      [ ! -s "$W/DEL.$i" ] || { echo "round $r DEL $i: $(cat "$W/DEL.$i")" >&2; false; }
    done
    [ -z "$(prefixed_links)" ]
    [ -z "$(store_keys | grep -E '^(ip|attach)')" ]
  done
  ! grep -q ERROR "$W/wasm-cni.log" || false
}
