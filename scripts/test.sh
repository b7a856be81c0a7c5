#!/usr/bin/env bash
# The whole test suite: set-up, build, lint, unit tests, end-to-end tests in throwaway
# network namespaces. Ends with one line "summary: N passed, M failed, K skipped",
# after the list of what was skipped (bats tests that called skip, cargo's ignored
# tests) and of what failed. Exits 0 only when nothing failed.
#   scripts/test.sh            everything
#   SKIP_SETUP=1 scripts/test.sh   skip apt/rustup (already installed)
#   SKIP_LAB=1 scripts/test.sh     skip the offline lab end-to-end run (podman)
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2
[ "$(id -u)" = 0 ] || { echo "test: run as root (the tests create network namespaces)" >&2; exit 2; }

passed=0 failed=0 skipped=0 failures=() skips=()
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

stage() { printf '\n=== %s\n' "$*"; }
# one check that counts as one test
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed+1)); echo "ok: $name"
  else failed=$((failed+1)); failures+=("$name"); echo "FAILED: $name"; fi
}
# cargo test: count its "test result" lines; its ignored tests are skipped ones
cargo_tests() {
  local name=$1; shift
  "$@" 2>&1 | tee "$log/cargo.out"
  local rc=${PIPESTATUS[0]} p f s t
  p=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log/cargo.out")
  f=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log/cargo.out")
  s=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^ignored/) s += $i } END { print s + 0 }' "$log/cargo.out")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
  # "test a::b ... ignored" or "test a::b ... ignored, REASON"
  while IFS= read -r t; do skips+=("$name: $t"); done < <(sed -nE 's/^test (.*) \.\.\. ignored(, (.*))?$/\1 (ignored\2)/p' "$log/cargo.out" | sed 's/ (ignored, / (ignored: /')
  if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then failed=$((failed+1)); failures+=("$name (did not run)"); fi
  [ "${f:-0}" -eq 0 ] || failures+=("$name")
}
# bats: count TAP lines ("ok N NAME # skip [REASON]" is a skipped test, not a pass)
bats_tests() {
  local name=$1; shift
  bats --formatter tap "$@" 2>&1 | tee "$log/bats.out"
  local rc=${PIPESTATUS[0]} p f s t
  s=$(grep -cE '^ok [0-9]+ .* # skip( |$)' "$log/bats.out")
  p=$(( $(grep -cE '^ok ' "$log/bats.out") - s )); f=$(grep -cE '^not ok ' "$log/bats.out")
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  while IFS= read -r t; do skips+=("$name: $t"); done < <(sed -nE 's/^ok [0-9]+ (.*) # skip( (.*))?$/\1 (skip\2)/p' "$log/bats.out" | sed 's/ (skip / (skip: /')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed+1)); failures+=("$name (did not run)"); fi
  [ "$f" -eq 0 ] || failures+=("$name")
}

if [ -z "${SKIP_SETUP:-}" ]; then
  stage "set-up (apt packages, wasm target)"
  scripts/setup.sh || { echo "summary: 0 passed, 1 failed, 0 skipped"; exit 1; }
fi

stage "build"
if ! scripts/build.sh --test-artifacts; then echo "summary: $passed passed, $((failed+1)) failed, $skipped skipped"; exit 1; fi
check "build cri-client" cargo build --release --locked -p cri-client

stage "lint"
check "cargo fmt --check" cargo fmt --all -- --check
check "clippy (runner)" cargo clippy --release --locked -p wasm-cni --all-targets -- -D warnings
check "clippy (cri-client)" cargo clippy --release --locked -p cri-client --all-targets -- -D warnings
check "clippy (bench native floor)" cargo clippy --release --locked -p wasm-cni-native-floor --all-targets -- -D warnings
check "clippy (hostile test guest, wasm32)" cargo clippy --release --locked -p wasm-cni-hostile-guest --target wasm32-wasip2 -- -D warnings
check "clippy (guests, wasm32)" cargo clippy --release --locked -p wasm-cni-guest -p wasm-cni-routed-guest -p wasm-cni-host-gw-guest -p wasm-cni-vxlan-guest -p wasm-cni-guest-kit --target wasm32-wasip2 -- -D warnings
check "clippy (misfit test guests, wasm32)" cargo clippy --release --locked -p wasm-cni-misfit-guests --features v03 --target wasm32-wasip2 -- -D warnings
# scripts (a shell #!) and sourced files that name their shell (# shellcheck shell=...);
# -x follows what a script sources (scripts/lib/common.sh, scripts/lab/*.sh)
mapfile -t shells < <(git ls-files '*.sh' '*.bash' 'scripts/*' 'tests/**/stubs/*' .ci/run | sort -u | while read -r f; do
  [ -f "$f" ] && head -c 64 "$f" | grep -qE '^(#!.*(ba)?sh|# shellcheck shell=(ba)?sh)' && echo "$f"; done)
check "shellcheck -S warning (${#shells[@]} scripts)" shellcheck -x -S warning "${shells[@]}"

stage "unit tests"
cargo_tests "runner unit tests" cargo test --release --locked -p wasm-cni
cargo_tests "guest unit tests (native)" cargo test --release --locked -p wasm-cni-guest -p wasm-cni-guest-kit -p wasm-cni-routed-guest -p wasm-cni-host-gw-guest -p wasm-cni-vxlan-guest
cargo_tests "cri-client unit tests" cargo test --release --locked -p cri-client

stage "students' kit: guest check, simulate (no root needed)"
bats_tests "guests" tests/guests

stage "runner end to end (throwaway namespaces)"
bats_tests "runner e2e" tests/cni

stage "kubelet path (containerd CRI in a node namespace)"
bats_tests "cri (containerd)" tests/cri

stage "sandbox: hostile guests, fault injection, storm, kill"
bats_tests "sandbox" tests/sandbox

stage "registry: guest push/pull against docker-registry (in a namespace)"
bats_tests "registry" tests/registry

stage "cluster scripts (stub gcloud/kubectl)"
WASM_CNI_REAL_TESTS=1 bats_tests "cluster scripts" tests/scripts

if [ -z "${SKIP_LAB:-}" ] && [ -f tests/lab.bats ]; then
  stage "offline lab end to end (podman in node namespaces)"
  bats_tests "offline lab" tests/lab.bats
fi

echo
if [ "${#skips[@]}" -gt 0 ]; then printf 'skipped: %s\n' "${skips[@]}"; fi
if [ "${#failures[@]}" -gt 0 ]; then printf 'failed: %s\n' "${failures[@]}"; fi
echo "summary: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
