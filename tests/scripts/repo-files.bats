#!/usr/bin/env bats
# Static checks on the cluster scripts and pods.yaml.

load test_helper

SCRIPTS=(scripts/infrastructure.sh scripts/kubernetes.sh scripts/cni-plugin.sh
  scripts/inter-node-routes.sh scripts/node/install-kubernetes.sh scripts/node/install-cni.sh
  scripts/node/kubeadm-node.sh)

@test "cluster scripts are executable and use set -euo pipefail" {
  for f in "${SCRIPTS[@]}"; do
    [ -x "$REPO/$f" ] || { echo "$f is not executable" >&2; return 1; }
    grep -qx 'set -euo pipefail' "$REPO/$f" || { echo "$f lacks set -euo pipefail" >&2; return 1; }
  done
}

@test "shellcheck -S warning is clean for the scripts and the stubs" {
  # no skip: scripts/setup.sh installs shellcheck
  command -v shellcheck >/dev/null || { echo "shellcheck not installed: run scripts/setup.sh" >&2; return 1; }
  cd "$REPO"
  run shellcheck -x -S warning "${SCRIPTS[@]}" scripts/lib/common.sh tests/scripts/stubs/* \
    tests/scripts/*.bash tests/scripts/*.bats
  [ "$status" -eq 0 ] || { echo "$output" >&2; return 1; }
}

@test "pods.yaml: pod-1..pod-4, two per worker as in the course, an image with ping/ip/curl" {
  local f="$REPO/pods.yaml"
  [ -f "$f" ]
  # name -> node, read from each document of the file
  run awk '
    /^---/ { name = ""; node = "" }
    /^  name: / { name = $2 }
    /kubernetes.io\/hostname: / { node = $2; print name, node }
  ' "$f"
  [ "$output" = "$(printf '%s\n' 'pod-1 my-k8s-worker-1' 'pod-2 my-k8s-worker-2' 'pod-3 my-k8s-worker-2' 'pod-4 my-k8s-worker-1')" ]
  [ "$(grep -c '^kind: Pod$' "$f")" -eq 4 ]
  [ "$(grep -c 'image: nicolaka/netshoot:v' "$f")" -eq 4 ]
  [ "$(grep -c 'command: \["sleep", "infinity"\]' "$f")" -eq 4 ]
  # no skip: scripts/setup.sh installs python3-yaml
  python3 -c 'import yaml' || { echo "PyYAML missing: run scripts/setup.sh (python3-yaml)" >&2; return 1; }
  python3 - "$f" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert [d["metadata"]["name"] for d in docs] == ["pod-1", "pod-2", "pod-3", "pod-4"], docs
for d in docs:
    assert d["apiVersion"] == "v1" and d["kind"] == "Pod"
    assert "kubernetes.io/hostname" in d["spec"]["nodeSelector"]
PY
}

@test "no test in tests/scripts skips silently: the only skip is the caller's explicit opt-out" {
  cd "$REPO/tests/scripts"
  # every call of bats' skip (a line "skip ..." or "|| skip ..."), minus the opt-out
  run grep -nE '(^|[[:space:]]|[;&|{])skip( "|$)' ./*.bats
  local line bad=()
  while IFS= read -r line; do
    [[ "$line" == *'skip "WASM_CNI_REAL_TESTS=0: '* ]] && continue
    [[ "$line" =~ ^[^:]+:[0-9]+:[[:space:]]*# ]] && continue # a comment
    [[ "$line" == *"run grep -nE"* ]] && continue            # this test
    bad+=("$line")
  done <<<"$output"
  [ "${#bad[@]}" -eq 0 ] || { printf 'unexpected skip: %s\n' "${bad[@]}" >&2; return 1; }
}

@test "docs/gcp.md states every setting of the cluster scripts and the safe defaults" {
  local f v missing=()
  for f in infrastructure kubernetes cni-plugin inter-node-routes; do
    while read -r v; do
      grep -q "| \`$v\`" "$REPO/docs/gcp.md" || grep -q "| \`[A-Z_]*\` / \`$v\`" "$REPO/docs/gcp.md" || missing+=("$v")
    done < <(grep -oE '^[A-Z_0-9]+="\$\{[A-Z_0-9]+:-' "$REPO/scripts/$f.sh" | cut -d= -f1)
  done
  [ "${#missing[@]}" -eq 0 ] || { echo "not in docs/gcp.md's variables table: ${missing[*]}" >&2; return 1; }
  local doc
  doc="$(cat "$REPO/docs/gcp.md")"
  assert_contains "$doc" "## Safe defaults, and how to open them up"
  assert_contains "$doc" '| `EXTERNAL_SOURCE_RANGES` | your public IPv4 /32, detected'
  assert_contains "$doc" "**The course's pod range \`200.200.0.0/16\` is a teaching choice**"
  assert_contains "$doc" "**\`down\` deletes only what \`up\` created.**"
  assert_contains "$doc" "## Kubernetes version"
}
