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

# burst COMMAND ROUND [ODD_CONF]: every pod's call at once; odd pods use ODD_CONF
# (default: the same config as the others).
burst() {
  local cmd=$1 round=$2 odd=${3:-$W/conf.json} i conf
  for i in $(seq 1 "$STORM_N"); do
    conf=$W/conf.json
    [ $((i % 2)) -eq 0 ] || conf=$odd
    ip netns exec "$NODE" env -i CNI_COMMAND="$cmd" CNI_CONTAINERID="r${round}c$i" \
      CNI_NETNS="/run/netns/$T-s$i" CNI_IFNAME=eth0 "$RUNNER" < "$conf" \
      > "$W/$cmd.$i" 2>/dev/null &
  done
  wait
}

# storm ROUNDS [ODD_CONF]: the rounds of ADDs and DELs, checked.
storm() {
  local rounds=$1 odd=${2:-$W/conf.json} r i dups
  for r in $(seq 1 "$rounds"); do
    burst ADD "$r" "$odd"
    for i in $(seq 1 "$STORM_N"); do
      jq -e '.ips[0].address' "$W/ADD.$i" >/dev/null || { echo "round $r ADD $i: $(cat "$W/ADD.$i")" >&2; false; }
    done
    dups=$(cat "$W"/ADD.* | jq -r '.ips[0].address' | sort | uniq -d)
    [ -z "$dups" ] || { echo "duplicates: $dups" >&2; false; }
    [ "$(prefixed_links | wc -l)" = "$STORM_N" ]
    burst DEL "$r" "$odd"
    for i in $(seq 1 "$STORM_N"); do
      [ ! -s "$W/DEL.$i" ] || { echo "round $r DEL $i: $(cat "$W/DEL.$i")" >&2; false; }
    done
    [ -z "$(prefixed_links)" ]
    [ -z "$(store_keys | grep -E '^(ip|attach)')" ]
  done
  ! grep -q ERROR "$W/wasm-cni.log" || false
}

@test "storm of concurrent ADDs and DELs" {
  storm "$STORM_ROUNDS"
}

@test "a whole-call guest (the 0.1.0 fixture) and the explicit-lock default guest share a network in a storm" {
  local fixture=$REPO/tests/guests/fixtures/default-0.1.0.wasm
  [[ $("$RUNNER" guest check "$fixture") == *"cni-policy@0.1.0"* ]]
  # the default guest holds the lock only in its critical sections, the fixture for
  # its whole call: both kinds of call interleave on one store
  [[ $("$RUNNER" guest check "$(jq -r .guest "$W/conf.json")") == *"import wasm-cni:plugin/lock@"* ]]
  jq --arg g "$fixture" '.guest = $g' "$W/conf.json" > "$W/fixture.json"
  storm 1 "$W/fixture.json"
}
