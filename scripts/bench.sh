#!/usr/bin/env bash
# wasm-cni against the reference plugins (bridge + host-local), side by side.
#
#   scripts/bench.sh [--quick] [-n N] [-c C] [-r ROUNDS] [-o DIR] [--timeout SECS]
#                    [--runner PATH] [--guest PATH] [--native-floor PATH] [--idle-wait SECS]
#                    [--pods-without-ipv6]
#
# Everything happens in network namespaces created here (one node namespace and
# max(N,C) pod namespaces per plugin) and is removed on exit, also on failure or ^C.
# A third "plugin", the native floor (bench/native-floor: the default guest's work as a
# plain native plugin, and the in-process kernel floor), runs beside the two. A
# dual-stack pair (wasm-cni with an IPv6 subnet too, the reference with both ranges)
# runs after them in each round, in namespaces of its own: N sequential pods only.
# The root namespace is never changed. See docs/bench.md.
#
# Defaults (flags win over environment): N=250 (BENCH_N) sequential pods, C=100
# (BENCH_C) concurrent calls, 3 rounds (BENCH_ROUNDS), output in ./bench-results
# (BENCH_OUT), at most 1800 s for the rounds (BENCH_TIMEOUT). --quick: N=30, C=20,
# 2 rounds. The runner and guest are dist/bin/wasm-cni and dist/guests/default.wasm
# (WASM_CNI_RUNNER, WASM_CNI_GUEST), copied to a temp dir first. The native floor is
# dist/test/native-floor (WASM_CNI_NATIVE_FLOOR; scripts/build.sh --test-artifacts
# builds it); when that default is missing, this script builds it itself with
# `cargo build --release --locked -p wasm-cni-native-floor`. --idle-wait: wait up
# to SECS for the 1-minute load average to drop below 0.5 before measuring.
# --pods-without-ipv6: every IPv4 pod namespace (all three plugins') gets
# net.ipv6.conf.default.disable_ipv6=1 before the rounds, so the pods' interfaces run
# no IPv6 and send none of its multicast, which the bridge floods to every pod (a
# measurement of what that costs, docs/bench.md; a node's pods keep IPv6 by default).
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" # die, warn, REPO_ROOT
REPO=$REPO_ROOT
BENCH_PY="$REPO/scripts/bench"
N=${BENCH_N:-250}
C=${BENCH_C:-100}
ROUNDS=${BENCH_ROUNDS:-3}
OUT=${BENCH_OUT:-$PWD/bench-results}
TIMEOUT=${BENCH_TIMEOUT:-1800}
RUNNER=${WASM_CNI_RUNNER:-$REPO/dist/bin/wasm-cni}
GUEST=${WASM_CNI_GUEST:-$REPO/dist/guests/default.wasm}
FLOOR_DEFAULT=$REPO/dist/test/native-floor
FLOOR=${WASM_CNI_NATIVE_FLOOR:-$FLOOR_DEFAULT}
IDLE_WAIT=${BENCH_IDLE_WAIT:-0}
PODS_IPV6=on
CNI_DIR=/usr/lib/cni

usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 wants a positive integer, not '$2'"; }

while [ $# -gt 0 ]; do
  case $1 in
    --quick) N=30 C=20 ROUNDS=2 ;;
    -n) N=${2:?}; shift ;;
    -c) C=${2:?}; shift ;;
    -r|--rounds) ROUNDS=${2:?}; shift ;;
    -o|--out) OUT=${2:?}; shift ;;
    --timeout) TIMEOUT=${2:?}; shift ;;
    --runner) RUNNER=${2:?}; shift ;;
    --guest) GUEST=${2:?}; shift ;;
    --native-floor) FLOOR=${2:?}; shift ;;
    --idle-wait) IDLE_WAIT=${2:?}; shift ;;
    --pods-without-ipv6) PODS_IPV6=off ;;
    -h|--help) usage 0 ;;
    *) printf '%s: error: unknown argument %s\n' "$SCRIPT_NAME" "'$1'" >&2; usage 2 ;;
  esac
  shift
done
posint -n "$N"; posint -c "$C"; posint -r "$ROUNDS"; posint --timeout "$TIMEOUT"
[[ $IDLE_WAIT =~ ^[0-9]+$ ]] || die "--idle-wait wants seconds, not '$IDLE_WAIT'"
[ "$N" -le 250 ] && [ "$C" -le 250 ] || die "N and C must be <= 250 (one /24 pod subnet)"
[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces)"
for t in ip python3; do command -v "$t" >/dev/null || die "$t not found"; done
for p in bridge host-local; do [ -x "$CNI_DIR/$p" ] || die "$CNI_DIR/$p missing (apt install containernetworking-plugins)"; done
[ -x "$RUNNER" ] || die "runner $RUNNER missing: run scripts/build.sh"
[ -f "$GUEST" ] || die "guest $GUEST missing: run scripts/build.sh"
if [ ! -x "$FLOOR" ] && [ "$FLOOR" = "$FLOOR_DEFAULT" ]; then
  command -v cargo >/dev/null || die "$FLOOR missing and no cargo to build it: run scripts/build.sh --test-artifacts"
  echo "bench: building the native floor (bench/native-floor) into $FLOOR" >&2
  (cd "$REPO" && cargo build --release --locked -p wasm-cni-native-floor) || die "building bench/native-floor failed"
  mkdir -p "$(dirname "$FLOOR")"
  install -m 0755 "$REPO/target/release/native-floor" "$FLOOR.tmp"
  mv -f "$FLOOR.tmp" "$FLOOR"
fi
[ -x "$FLOOR" ] || die "native floor $FLOOR missing: run scripts/build.sh --test-artifacts"

PFX="wcb$$"          # every namespace made here starts with "$PFX-"
TMP=""
RUN=""
ORCH=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$ORCH" ] && kill -0 "$ORCH" 2>/dev/null; then
    # The orchestrator leads its own process group: the drivers and plugin calls.
    kill -TERM -- "-$ORCH" 2>/dev/null || kill -TERM "$ORCH" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$ORCH" 2>/dev/null || true
    wait "$ORCH" 2>/dev/null || true
  fi
  local names
  names=$(ip netns list 2>/dev/null | awk -v p="$PFX-" 'index($1, p) == 1 {print $1}')
  if [ -n "$names" ]; then
    printf 'netns del %s\n' $names | ip -force -batch - 2>/dev/null || true
    for ns in $(ip netns list 2>/dev/null | awk -v p="$PFX-" 'index($1, p) == 1 {print $1}'); do
      ip netns del "$ns" 2>/dev/null || true
    done
  fi
  [ -n "$TMP" ] && rm -rf -- "$TMP"
  [ -n "$RUN" ] && rm -rf -- "$RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load1() { cut -d' ' -f1 /proc/loadavg; }
busy() { awk -v l="$(load1)" 'BEGIN {exit !(l >= 0.5)}'; }
waited=0
while busy && [ "$waited" -lt "$IDLE_WAIT" ]; do
  [ "$waited" = 0 ] && echo "bench: load average $(load1), waiting up to ${IDLE_WAIT}s for < 0.5" >&2
  sleep 5; waited=$((waited + 5))
done
if busy; then warn "load average $(load1): other work on the machine disturbs the numbers"; fi

TMP=$(mktemp -d /tmp/wasm-cni-bench.XXXXXX)
# wasm-cni's state (its default stateDir is /run/wasm-cni: per boot, on the node's
# tmpfs) and the native floor's, which does the same store work, go on a tmpfs; this
# VM's /run is on its ext4 root, so a private directory on /dev/shm stands in for it.
# host-local's dataDir stays on disk, as its default (/var/lib/cni/networks) is.
RUN=$(mktemp -d /dev/shm/wasm-cni-bench.XXXXXX)
mkdir -p "$TMP/bin" "$TMP/guest" "$OUT"
OUT=$(cd "$OUT" && pwd)
cp "$RUNNER" "$TMP/bin/wasm-cni"
cp "$GUEST" "$TMP/guest/default.wasm"
# The runner memoizes a guest's digest only once its file is 2 s old (runner/src/wasm/
# engine.rs): the rounds below measure that steady state (the cold and install rows show
# the fresh path), so they start at least 2.1 s after this copy.
guest_copied_ns=$(date +%s%N)
cp "$FLOOR" "$TMP/bin/native-floor"

cat >"$TMP/wasm.json" <<EOF
{"cniVersion": "1.0.0", "name": "bench", "type": "wasm-cni",
 "guest": "$TMP/guest/default.wasm",
 "cacheDir": "$TMP/cache", "stateDir": "$RUN/state", "logFile": "$TMP/wasm-cni.log",
 "myHostNetwork": "10.0.0.0/16", "myPodNetwork": "200.200.0.0/16",
 "myPodSubnet": "200.200.1.0/24", "timing": true}
EOF
cat >"$TMP/ref.json" <<EOF
{"cniVersion": "1.0.0", "name": "benchref", "type": "bridge",
 "bridge": "cni0", "isGateway": true, "ipMasq": true,
 "ipam": {"type": "host-local", "subnet": "200.200.1.0/24", "dataDir": "$TMP/host-local"}}
EOF
# dual-stack: the same networks plus an IPv6 one, masqueraded in both families as the
# reference's ipMasq does; caches, state and logs of their own
cat >"$TMP/wasm6.json" <<EOF
{"cniVersion": "1.0.0", "name": "bench6", "type": "wasm-cni",
 "guest": "$TMP/guest/default.wasm",
 "cacheDir": "$TMP/cache6", "stateDir": "$RUN/state6", "logFile": "$TMP/wasm-cni6.log",
 "myHostNetwork": ["10.0.0.0/16", "fd00:10:240::/64"],
 "myPodNetwork": ["200.200.0.0/16", "fd00:200:200::/56"],
 "myPodSubnet": ["200.200.1.0/24", "fd00:200:200:1::/64"], "ipMasq6": true}
EOF
cat >"$TMP/ref6.json" <<EOF
{"cniVersion": "1.0.0", "name": "benchref6", "type": "bridge",
 "bridge": "cni0", "isGateway": true, "ipMasq": true,
 "ipam": {"type": "host-local", "dataDir": "$TMP/host-local6",
          "ranges": [[{"subnet": "200.200.1.0/24"}], [{"subnet": "fd00:200:200:1::/64"}]]}}
EOF
cat >"$TMP/floor.json" <<EOF
{"cniVersion": "1.0.0", "name": "benchfloor", "type": "native-floor", "bridge": "cni0",
 "myPodSubnet": "200.200.1.0/24", "stateDir": "$RUN/floor-state"}
EOF

PODS=$(( N > C ? N : C ))
echo "bench: N=$N C=$C rounds=$ROUNDS; creating 5 node + $((3 * PODS + 2 * N)) pod namespaces ($PFX-*)" >&2
{
  for p in w r f; do   # wasm-cni, reference, native floor
    echo "netns add $PFX-${p}n"
    for ((i = 0; i < PODS; i++)); do echo "netns add $PFX-$p$i"; done
  done
  for p in d e; do     # dual-stack: wasm-cni, reference (sequential pods only)
    echo "netns add $PFX-${p}n"
    for ((i = 0; i < N; i++)); do echo "netns add $PFX-$p$i"; done
  done
} >"$TMP/netns.batch"
ip -batch "$TMP/netns.batch"
for p in w r f d e; do ip -n "$PFX-${p}n" link set lo up; done
if [ "$PODS_IPV6" = off ]; then
  # `default`: the pods' eth0, made later, are born without IPv6 (the dual-stack
  # pods, d and e, keep it)
  for p in w r f; do
    for ((i = 0; i < PODS; i++)); do
      echo "netns exec $PFX-$p$i sysctl -qw net.ipv6.conf.default.disable_ipv6=1"
    done
  done >"$TMP/noipv6.batch"
  ip -batch "$TMP/noipv6.batch"
fi

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
settle_ms=$(( (guest_copied_ns + 2100000000 - $(date +%s%N)) / 1000000 ))
if (( settle_ms > 0 )); then sleep "$(awk -v ms="$settle_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"; fi
runner_version=$("$TMP/bin/wasm-cni" --version 2>/dev/null || echo unknown)
ref_version=$(dpkg-query -W -f '${Package} ${Version}' containernetworking-plugins 2>/dev/null || echo unknown)
python3 - "$TMP/meta.json" <<EOF
import json, sys
json.dump({"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
           "machine": "$(nproc) cores, $cpu, $mem RAM, Linux $(uname -r)",
           "cores": $(nproc), "load_start": "$(cut -d' ' -f1-3 /proc/loadavg)",
           "pods_ipv6": "$PODS_IPV6",
           "runner_version": "$runner_version", "reference_version": "$ref_version"},
          open(sys.argv[1], "w"))
EOF

# The orchestrator makes itself a process-group leader (see cleanup) and is waited
# for in the background, so INT/TERM reach the trap at once.
python3 -c 'import os, sys, runpy; os.setpgid(0, 0); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")' \
  "$BENCH_PY/bench.py" --tmp "$TMP" --out "$OUT" -n "$N" -c "$C" --rounds "$ROUNDS" \
  --deadline "$TIMEOUT" --meta "$TMP/meta.json" \
  --wasm-node "$PFX-wn" --wasm-pods "$PFX-w" --wasm-exe "$TMP/bin/wasm-cni" --wasm-conf "$TMP/wasm.json" \
  --wasm-cache "$TMP/cache" --wasm-log "$TMP/wasm-cni.log" \
  --ref-node "$PFX-rn" --ref-pods "$PFX-r" --ref-exe "$CNI_DIR/bridge" --ref-conf "$TMP/ref.json" \
  --floor-node "$PFX-fn" --floor-pods "$PFX-f" --floor-exe "$TMP/bin/native-floor" --floor-conf "$TMP/floor.json" \
  --wasm6-node "$PFX-dn" --wasm6-pods "$PFX-d" --wasm6-exe "$TMP/bin/wasm-cni" --wasm6-conf "$TMP/wasm6.json" \
  --ref6-node "$PFX-en" --ref6-pods "$PFX-e" --ref6-exe "$CNI_DIR/bridge" --ref6-conf "$TMP/ref6.json" &
ORCH=$!
rc=0
wait "$ORCH" || rc=$?
ORCH=""
exit "$rc"
