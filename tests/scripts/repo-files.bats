#!/usr/bin/env bats
# Static checks on the cluster scripts and pods.yaml.

load test_helper

SCRIPTS=(scripts/infrastructure.sh scripts/kubernetes.sh scripts/cni-plugin.sh
  scripts/inter-node-routes.sh scripts/node/install-kubernetes.sh scripts/node/install-cni.sh)

@test "cluster scripts are executable and use set -euo pipefail" {
  for f in "${SCRIPTS[@]}"; do
    [ -x "$REPO/$f" ] || { echo "$f is not executable" >&2; return 1; }
    grep -qx 'set -euo pipefail' "$REPO/$f" || { echo "$f lacks set -euo pipefail" >&2; return 1; }
  done
}

@test "shellcheck -S warning is clean for the scripts and the stubs" {
  command -v shellcheck >/dev/null || skip "shellcheck not installed"
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
  if python3 -c 'import yaml' 2>/dev/null; then
    python3 - "$f" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert [d["metadata"]["name"] for d in docs] == ["pod-1", "pod-2", "pod-3", "pod-4"], docs
for d in docs:
    assert d["apiVersion"] == "v1" and d["kind"] == "Pod"
    assert "kubernetes.io/hostname" in d["spec"]["nodeSelector"]
PY
  fi
}
