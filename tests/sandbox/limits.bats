#!/usr/bin/env bats
# Per-call caps and bounded outputs. The config object
# "limits" sets them (defaults: links 8, addresses 32, routes 256, firewallRules 32,
# storeWrites 64, storeBytes 1 MiB, storeKeys 4096, storeTotalBytes 16 MiB,
# logBytes 64 KiB, logFileBytes 16 MiB). Past a per-call cap a host call is denied
# ("per-call limit"); past the network's store quota too ("store quota"); a log flood
# is cut with one "log truncated" line; a log file past its size is rotated.

load sandbox-helpers

setup() { hostile_setup; }
teardown() { hostile_teardown; }

@test "the per-call maximum of routes (256) is rolled back completely" {
  hostile_conf many-routes '.count = 256'
  hostile_call ADD evil b
  # shellcheck disable=SC2154 # set by hostile_call
  echo "256 routes added and undone in $elapsed_ms ms" >&3
  expect_error 100
  expect_msg "hostile mode many-routes did its work"
  expect_unchanged
  grep -E "ADD evil: failed .* rolled_back=[0-9]+" "$W/wasm-cni.log"
  victim_ok
}

@test "one route past the default cap (256) is denied with 'per-call limit'" {
  hostile_conf many-routes '.count = 257'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "route #257: denied: .*per-call limit"
  expect_unchanged
  grep -q "rolled_back=" "$W/wasm-cni.log"
  victim_ok
}

@test "caps set in the config: routes, addresses, firewall rules" {
  hostile_conf many-routes '.count = 11 | .limits = {"routes": 10}'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "route #11: denied: .*per-call limit"
  expect_unchanged
  # exactly at the cap is fine
  hostile_conf many-routes '.count = 10 | .limits = {"routes": 10}'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "hostile mode many-routes did its work"
  expect_unchanged
  hostile_conf many-addresses '.count = 5 | .limits = {"addresses": 4}'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "address #5: denied: .*per-call limit"
  expect_unchanged
  # forward chains, one per call; a cap of 4 entries stops them at the latest at the 5th
  hostile_conf many-firewall '.count = 10 | .limits = {"firewallRules": 4}'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "firewall rule #[2-5]: denied: .*per-call limit"
  expect_unchanged
  victim_ok
}

@test "store writes past limits.storeBytes and limits.storeWrites are denied per call" {
  # 64 KiB values: the 17th passes 1 MiB (the 16th, if key bytes count too)
  hostile_conf store-flood '.count = 17 | .size = 65536'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "put #1[67]: denied: .*per-call limit"
  expect_unchanged
  # small values: the 65th write of a call
  hostile_conf store-flood '.count = 65 | .size = 10'
  hostile_call ADD evil b
  expect_error 100
  expect_msg "put #65: denied: .*per-call limit"
  expect_unchanged
  victim_ok
}

# kv_bytes: the bytes of all values in the network's store
kv_bytes() { cat "$W"/state/testnet/kv/* | wc -c; }

@test "the network's store quota in keys holds across successful ADDs" {
  add_pod s1; add_pod s2; add_pod s3
  k0=$(store_keys | wc -l)
  # keys: room for two ADDs of 6 keys (and a little for the runner's own), not three
  hostile_conf store-flood ".count = 6 | .size = 10 | .succeed = \"1\" | .limits = {\"storeKeys\": $((k0 + 15))}"
  for i in 1 2; do
    jq --arg ip "200.200.1.6$i/24" '.ip = $ip' "$W/hostile.json" > "$W/h$i.json"
    cni ADD "s$i" "s$i" eth0 "$W/h$i.json"
    expect_ok
  done
  jq '.ip = "200.200.1.63/24"' "$W/hostile.json" > "$W/hostile3.json"
  mv "$W/hostile3.json" "$W/hostile.json"
  # shellcheck disable=SC2034 # compared by expect_unchanged
  before=$(snapshot "$T-a" "$T-s3")
  cni ADD s3 s3 eth0 "$W/hostile.json"
  # shellcheck disable=SC2034 # compared by expect_unchanged
  after=$(snapshot "$T-a" "$T-s3")
  expect_error 100
  expect_msg "denied: .*store quota"
  expect_unchanged
  victim_ok
}

@test "the network's store quota in bytes holds across successful ADDs" {
  add_pod s1; add_pod s2; add_pod s3
  b0=$(kv_bytes)
  # bytes: room for two ADDs of 4 x 64 KiB (512 KiB) and some margin, not three
  hostile_conf store-flood ".count = 4 | .size = 65536 | .succeed = \"1\" | .limits = {\"storeTotalBytes\": $((b0 + 600000))}"
  for i in 1 2; do
    jq --arg ip "200.200.1.6$i/24" '.ip = $ip' "$W/hostile.json" > "$W/h$i.json"
    cni ADD "s$i" "s$i" eth0 "$W/h$i.json"
    expect_ok
  done
  jq '.ip = "200.200.1.63/24"' "$W/hostile.json" > "$W/hostile3.json"
  mv "$W/hostile3.json" "$W/hostile.json"
  # shellcheck disable=SC2034 # compared by expect_unchanged
  before=$(snapshot "$T-a" "$T-s3")
  cni ADD s3 s3 eth0 "$W/hostile.json"
  # shellcheck disable=SC2034 # compared by expect_unchanged
  after=$(snapshot "$T-a" "$T-s3")
  expect_error 100
  expect_msg "denied: .*store quota"
  expect_unchanged
  [ "$(kv_bytes)" -le $((b0 + 600000)) ]
  victim_ok
}

@test "a log flood is cut at limits.logBytes, with one 'log truncated' line" {
  log="$W/wasm-cni.log"
  for budget in default 10000; do
    size0=$(stat -c %s "$log")
    if [ "$budget" = default ]; then
      hostile_conf log-flood '.count = 20000 | .size = 1024'
      budget=65536
    else
      hostile_conf log-flood ".count = 20000 | .size = 1024 | .limits = {\"logBytes\": $budget}"
    fi
    hostile_call ADD evil b
    expect_error 100
    grown=$(( $(stat -c %s "$log") - size0 ))
    echo "logBytes $budget: the log grew by $grown bytes" >&3
    # the budget, plus the runner's own few lines
    [ "$grown" -le $((budget + 16384)) ] || { echo "log grew by $grown bytes" >&2; false; }
    [ "$(tail -c "$grown" "$log" | grep -c 'log truncated')" = 1 ]
    expect_unchanged
  done
  victim_ok
}

@test "a log file past limits.logFileBytes is rotated to <logFile>.1 by the next call" {
  log="$W/wasm-cni.log"
  # an existing log of 200000 bytes
  while [ "$(stat -c %s "$log")" -lt 200000 ]; do
    printf '%s old line\n' "$(head -c 1000 /dev/zero | tr '\0' 'o')" >> "$log"
  done
  first=$(head -1 "$log")
  old_size=$(stat -c %s "$log")
  jq '.limits = {"logFileBytes": 100000}' "$W/good.json" > "$W/rotate.json"
  cni ADD p b eth0 "$W/rotate.json"
  expect_ok
  [ -f "$log.1" ]
  [ "$(head -1 "$log.1")" = "$first" ]
  [ "$(stat -c %s "$log.1")" -ge "$old_size" ]
  [ "$(stat -c %s "$log")" -lt 100000 ]
  # this call's line is in the new file or at the end of the old one
  grep -q "ADD p: ok" "$log" || tail -5 "$log.1" | grep -q "ADD p: ok"
  ping_from "$T-b" 200.200.1.1
  victim_ok
}
