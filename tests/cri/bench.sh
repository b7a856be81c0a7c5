#!/usr/bin/env bash
# Measure the kubelet's view of the CNI plugin: RunPodSandbox and StopPodSandbox +
# RemovePodSandbox times through containerd 1.6's CRI, for wasm-cni (default guest) and for
# the reference bridge plugin with host-local (same subnet, cni0, isGateway, ipMasq).
# Two containerds run side by side, each in its own throwaway node namespace; pods are run
# one at a time, alternating between them, after WARMUP untimed pods each. Prints medians.
#
# usage: tests/cri/bench.sh [N]        (N pods per plugin, default 30; WARMUP default 2)
# Needs root, dist/ (scripts/build.sh) and target/release/cri-client. Cleans up on exit.
set -euo pipefail
N=${1:-30}
WARMUP=${WARMUP:-2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/cri/harness.bash
. "$here/harness.bash"
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 2; }

VARS=(CRI_DIR CRI_NODE CRI_SOCK CRI_STATE CRI_KV CRI_CNI_LOG CRI_PID CRI_HAD_RUN_CONTAINERD)
declare -A SAVED=()
save_as() { local v; for v in "${VARS[@]}"; do SAVED[$1.$v]=${!v-}; done; }
load_from() { local v; for v in "${VARS[@]}"; do printf -v "$v" '%s' "${SAVED[$1.$v]-}"; done; }
stop_all() {
  local p
  for p in wasm bridge; do
    [ -n "${SAVED[$p.CRI_DIR]-}" ] || continue
    load_from "$p"; cri_stop
  done
  # Only what this script made: /run/containerd if neither start found it.
  if [ "${SAVED[wasm.CRI_HAD_RUN_CONTAINERD]-1}" = 0 ]; then rmdir /run/containerd/s /run/containerd 2>/dev/null || true; fi
}
out=$(mktemp -d)
trap 'stop_all; rm -rf "$out"' EXIT
trap 'exit 130' INT TERM

for p in wasm bridge; do
  CRI_DIR=""
  if ! cri_start "$p"; then save_as "$p"; echo "bench: containerd with $p did not start" >&2; exit 1; fi
  save_as "$p"
done

# one PLUGIN NAME: one pod through its containerd; appends "run_ms stop_remove_ms".
one() {
  local r
  load_from "$1"
  r=$(cri many --count 1 --concurrency 1 --prefix "$2" --namespace bench --log-root "$CRI_DIR/pods") || {
    echo "bench: $1 pod $2 failed: $r" >&2; return 1; }
  jq -r '"\(.run_ms[0]) \(.stop_remove_ms[0])"' <<<"$r" >> "$out/$1"
}

for ((i = 0; i < WARMUP; i++)); do one wasm "warm-$i"; one bridge "warm-$i"; done
: > "$out/wasm"; : > "$out/bridge"
load_from wasm; : > "$CRI_CNI_LOG"   # the runner's own times: timed pods only
for ((i = 0; i < N; i++)); do one wasm "pod-$i"; one bridge "pod-$i"; done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-26s %4s %24s %32s\n' plugin pods "RunPodSandbox ms (median)" "Stop+RemovePodSandbox ms (median)"
for p in wasm bridge; do
  name="bridge + host-local"; [ "$p" = wasm ] && name="wasm-cni (default guest)"
  printf '%-26s %4s %24s %32s\n' "$name" "$(grep -c . "$out/$p")" \
    "$(cut -d' ' -f1 "$out/$p" | median)" "$(cut -d' ' -f2 "$out/$p" | median)"
done
# The runner's own "ok <ms>" per call (from its logFile), for the same pods.
load_from wasm
for c in ADD DEL; do
  printf 'wasm-cni runner %s: %s calls, median %s ms (its own log)\n' "$c" \
    "$(grep -cE "\] $c [0-9a-f]+: ok " "$CRI_CNI_LOG" || true)" \
    "$(sed -nE "s/.*\] $c [0-9a-f]+: ok ([0-9.]+)ms.*/\1/p" "$CRI_CNI_LOG" | median)"
done
