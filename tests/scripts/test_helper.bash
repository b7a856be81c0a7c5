# shellcheck shell=bash
# Common setup for tests/scripts/*.bats. No test talks to a cloud or a cluster:
# gcloud and kubectl are stubs (tests/scripts/stubs) placed first on PATH, and the
# real tools, should they be reached anyway, get an empty config and no credentials.

bats_require_minimum_version 1.5.0

REPO="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
STUBS="$BATS_TEST_DIRNAME/stubs"

common_setup() {
  # Settings of the scripts must come from the tests, not from the caller's shell.
  unset PROJECT REGION ZONE NETWORK SUBNET HOST_NETWORK POD_NETWORK MASTER WORKERS \
    MACHINE_TYPE IMAGE_FAMILY IMAGE_PROJECT BOOT_DISK_SIZE EXTERNAL_SOURCE_RANGES \
    FIREWALL_EXTERNAL FIREWALL_INTERNAL SSH_RETRIES SSH_RETRY_SLEEP K8S_MINOR \
    KUBE_CONTEXT KUBE_USER API_PORT RUNNER_BIN DEFAULT_GUEST_WASM WASM_CNI_RUNNER \
    REMOTE_DIR ROUTE_SUFFIX ROOT DRY_RUN \
    STUB_FAIL STUB_FAIL_MSG STUB_FAIL_RC STUB_FAIL_TIMES STUB_PROJECT STUB_EXTERNAL_IP \
    STUB_JOIN_CMD STUB_SIM_NODES STUB_NO_PODCIDR STUB_NO_CONTEXT STUB_VALIDATE_FAIL \
    STUB_CONTAINERD_UNKNOWN STUB_UID STUB_ACCOUNT STUB_PUBLIC_IP STUB_DESCRIBE_NETWORK \
    STUB_DESCRIBE_SUBNET STUB_DESCRIBE_FW_EXTERNAL STUB_DESCRIBE_FW_INTERNAL STUB_DESCRIBE_VM \
    STUB_ODD_VM STUB_SOURCE_IMAGE STUB_IMAGE_FAMILY STUB_NOT_OURS STUB_DESCRIBE_ROUTE \
    STUB_PODCIDR_LATE STUB_CONTAINERD_CONFIG STUB_CLOUD_INIT_RC STUB_NODE_PODSUBNET \
    STUB_NODE_SANS STUB_NODE_NO_KUBE_PROXY STUB_NODE_NOT_READY STUB_KUBEADM_VERSION \
    STUB_OLD_RUNNER PUBLIC_IP_URL NODE_TAG POD_MTU PODCIDR_RETRIES PODCIDR_RETRY_SLEEP \
    CLOUD_INIT_TIMEOUT APT_LOCK_TIMEOUT APT_LOCK_RETRIES APT_RETRY_SLEEP READY_RETRIES \
    READY_RETRY_SLEEP WASM_CNI_REAL_TESTS_OFF REGISTRY_BIN GUEST_REGISTRY_INSECURE GUEST_REGISTRY_CA \
    GUEST_REGISTRY_CONFIG STUB_REGISTRY STUB_REGISTRY_DOWN HOST_GW_GUEST_WASM VXLAN_GUEST_WASM \
    STUB_NODES_JSON
  export STUB_LOG="$BATS_TEST_TMPDIR/calls.log"
  : >"$STUB_LOG"
  export PATH="$STUBS:$PATH"
  export TMPDIR="$BATS_TEST_TMPDIR/tmp"
  mkdir -p "$TMPDIR"
  export HOME="$BATS_TEST_TMPDIR/home"
  mkdir -p "$HOME"
  export KUBECONFIG="$BATS_TEST_TMPDIR/kubeconfig"
  export CLOUDSDK_CONFIG="$BATS_TEST_TMPDIR/gcloud-config"
  export CLOUDSDK_CORE_DISABLE_PROMPTS=1
  [[ "$(command -v gcloud)" == "$STUBS/gcloud" ]] || fail_now "gcloud is not the stub"
  [[ "$(command -v kubectl)" == "$STUBS/kubectl" ]] || fail_now "kubectl is not the stub"
  export SSH_RETRY_SLEEP=0 PODCIDR_RETRY_SLEEP=0 APT_RETRY_SLEEP=0 READY_RETRY_SLEEP=0
  [[ "$(command -v curl)" == "$STUBS/curl" ]] || fail_now "curl is not the stub"
}

fail_now() {
  printf 'test setup: %s\n' "$*" >&2
  return 1
}

# assert_calls: the call log, with $REPO shown as <REPO>, $BATS_TEST_TMPDIR as <T>
# and the scripts' mktemp dirs as <MKTEMP>, equals stdin exactly.
assert_calls() {
  local expected actual
  expected="$(cat)"
  actual="$(normalize <"$STUB_LOG")"
  if [[ "$expected" != "$actual" ]]; then
    printf -- '--- expected calls\n%s\n--- actual calls\n%s\n--- diff\n' "$expected" "$actual" >&2
    diff <(printf '%s\n' "$expected") <(printf '%s\n' "$actual") >&2 || true
    printf -- '--- stderr of the script\n%s\n' "${stderr:-}" >&2
    return 1
  fi
}

assert_no_calls() {
  if [[ -s "$STUB_LOG" ]]; then
    printf -- 'expected no calls, got:\n%s\n' "$(cat "$STUB_LOG")" >&2
    return 1
  fi
}

normalize() {
  sed -e "s#$TMPDIR/[A-Za-z0-9._-]*#<MKTEMP>#g" -e "s#$BATS_TEST_TMPDIR#<T>#g" -e "s#$REPO#<REPO>#g"
}

# assert_contains HAYSTACK NEEDLE
assert_contains() {
  if [[ "$1" != *"$2"* ]]; then
    printf -- 'expected to find:\n  %s\nin:\n%s\n' "$2" "$1" >&2
    return 1
  fi
}

# assert_status EXPECTED: checks $status from `run`, showing the output if it differs.
assert_status() {
  if [[ "${status:-}" != "$1" ]]; then
    printf -- 'exit status %s, expected %s\n--- stdout\n%s\n--- stderr\n%s\n' \
      "${status:-}" "$1" "${output:-}" "${stderr:-}" >&2
    return 1
  fi
}

# path_without NAME...: a PATH holding the basic tools the scripts use plus the
# gcloud/kubectl stubs, minus NAME..., so that "not installed" can be tested even on
# a machine where the real gcloud/kubectl are installed.
path_without() {
  local dir tool skip real
  dir="$(mktemp -d "$BATS_TEST_TMPDIR/path-without.XXXXXX")"
  for tool in bash env dirname basename cat grep sed awk mktemp rm mkdir ls head od tr \
    base64 cp mv chmod readlink sleep id tail tee sort paste od gcloud kubectl curl; do
    for skip in "$@"; do [[ "$tool" == "$skip" ]] && continue 2; done
    if [[ -x "$STUBS/$tool" ]]; then
      real="$STUBS/$tool"
    else
      real="$(PATH=/usr/local/bin:/usr/bin:/bin command -v "$tool")" || continue
    fi
    ln -sf "$real" "$dir/$tool"
  done
  printf '%s\n' "$dir"
}

# The temp dirs of the scripts (mktemp under $TMPDIR) must be gone after a run.
assert_tmp_clean() {
  local left
  left="$(ls -A "$TMPDIR")"
  if [[ -n "$left" ]]; then
    printf -- 'temp files left behind in TMPDIR: %s\n' "$left" >&2
    return 1
  fi
}
