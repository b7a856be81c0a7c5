# shellcheck shell=bash
# Shared helpers for scripts/{infrastructure,kubernetes,cni-plugin,inter-node-routes}.sh
# (all of it) and scripts/{lab,bench}.sh (die, warn, REPO_ROOT). Sourced, never
# run; callers use `set -euo pipefail`. The scripts in scripts/node/ keep their own
# copies of die and log: they are shipped to a node and run there alone.
#
# Conventions:
# - progress goes to stdout ("==> ..."), errors to stderr ("NAME: error: ...");
# - every cloud/cluster call goes through a helper that stops the script with a
#   message naming the step when the call fails.

# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRIPT_NAME="$(basename "$0")"

log() { printf '==> %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

# usage_exit TEXT: print the usage text to stderr and exit 2.
usage_exit() {
  printf '%s\n' "$1" >&2
  exit 2
}

# need_cmd CMD HINT: fail early if CMD is not on PATH.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH. $2"
}

need_gcloud() {
  need_cmd gcloud "Install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) and run 'gcloud auth login'."
}

need_kubectl() {
  need_cmd kubectl "Install kubectl (https://kubernetes.io/docs/tasks/tools/)."
}

# need_project: sets PROJECT from the environment or from the gcloud config, and
# checks that gcloud has an active account.
need_project() {
  if [[ -z "${PROJECT:-}" ]]; then
    PROJECT="$(gcloud config get-value project 2>/dev/null || true)"
  fi
  if [[ -z "$PROJECT" || "$PROJECT" == "(unset)" ]]; then
    die "no Google Cloud project set. Run 'gcloud config set project PROJECT_ID' (or export PROJECT=PROJECT_ID)."
  fi
  local account
  account="$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null || true)"
  [[ -n "$account" ]] || die "no active gcloud account. Run 'gcloud auth login'."
}

# need_context: the kubeconfig must hold the context that kubernetes.sh creates.
need_context() {
  local contexts
  contexts="$(kubectl config get-contexts -o name 2>/dev/null || true)"
  if ! grep -qxF -- "$KUBE_CONTEXT" <<<"$contexts"; then
    die "kubeconfig has no context '$KUBE_CONTEXT'. Run scripts/kubernetes.sh up first (or set KUBE_CONTEXT)."
  fi
}

# run_step DESCRIPTION CMD...: run CMD; if it fails, stop with a message naming the step.
run_step() {
  local desc=$1 rc=0
  shift
  "$@" || rc=$?
  ((rc == 0)) || die "$desc failed (exit $rc). Fix the cause above and re-run."
}

# tolerant_step PATTERN NOTE DESCRIPTION CMD...: like run_step, but a failure whose
# error output contains PATTERN (e.g. "already exists", "was not found") is only
# reported as NOTE. The command's stdout passes through; its stderr is replayed.
tolerant_step() {
  local pattern=$1 note=$2 desc=$3 err rc=0
  shift 3
  { err="$("$@" 2>&1 1>&3 3>&-)"; } 3>&1 || rc=$?
  if ((rc == 0)); then
    if [[ -n "$err" ]]; then printf '%s\n' "$err" >&2; fi
    return 0
  fi
  if [[ "$err" == *"$pattern"* ]]; then
    log "$note"
    return 0
  fi
  if [[ -n "$err" ]]; then printf '%s\n' "$err" >&2; fi
  die "$desc failed (exit $rc). Fix the cause above and re-run."
}

# gcloud_ssh NODE COMMAND: run COMMAND on NODE (as the default user; use sudo inside).
# COMMAND reads nothing: its stdin is /dev/null.
gcloud_ssh() {
  gcloud compute ssh "$1" --project="$PROJECT" --zone="$ZONE" --quiet --command="$2" </dev/null
}

# gcloud_ssh_stdin NODE COMMAND: like gcloud_ssh, but COMMAND reads this function's
# stdin. The way to hand a secret to a node: never in COMMAND, which is visible in
# the process list here (gcloud, ssh) and on the node.
gcloud_ssh_stdin() {
  gcloud compute ssh "$1" --project="$PROJECT" --zone="$ZONE" --quiet --command="$2"
}

# gcloud_scp SRC... NODE:DEST
gcloud_scp() {
  gcloud compute scp --project="$PROJECT" --zone="$ZONE" --quiet "$@"
}

# is_cidr STRING: a dotted IPv4 CIDR.
is_cidr() {
  local re='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$'
  [[ "$1" =~ $re ]] || return 1
  local i
  for i in 1 2 3 4; do ((BASH_REMATCH[i] <= 255)) || return 1; done
  ((BASH_REMATCH[5] <= 32))
}

need_cidr() {
  is_cidr "$2" || die "$1='$2' is not an IPv4 CIDR (e.g. 10.0.0.0/16)."
}

# wait_pod_cidrs NODE...: POD_CIDRS[i] = the podCIDR of NODE i, read from its Node
# object (context $KUBE_CONTEXT). A node that joined moments ago may have no Node
# object or no podCIDR yet: retry up to PODCIDR_RETRIES times, PODCIDR_RETRY_SLEEP
# seconds apart, then stop with the last answer.
POD_CIDRS=()
wait_pod_cidrs() {
  local retries="${PODCIDR_RETRIES:-30}" pause="${PODCIDR_RETRY_SLEEP:-5}" node cidr err attempt
  [[ "$retries" =~ ^[1-9][0-9]*$ ]] || die "PODCIDR_RETRIES='$retries' must be a positive integer."
  POD_CIDRS=()
  for node in "$@"; do
    for ((attempt = 1; ; attempt++)); do
      err=""
      if cidr="$(kubectl --context="$KUBE_CONTEXT" get node "$node" -o jsonpath='{.spec.podCIDR}' 2>&1)"; then
        cidr="${cidr##*$'\n'}" # the value is the last line (warnings come first)
        if is_cidr "$cidr"; then break; fi
        err="node $node has no podCIDR yet (got '$cidr')"
      else
        err="reading the Node object $node failed: ${cidr##*$'\n'}"
      fi
      if ((attempt >= retries)); then
        die "$err after $retries attempts (context $KUBE_CONTEXT). Is 'scripts/kubernetes.sh up' done, did $node join, and was kubeadm init run with --pod-network-cidr? (PODCIDR_RETRIES/PODCIDR_RETRY_SLEEP set the wait)"
      fi
      log "$err; waiting ${pause}s (attempt $attempt/$retries)"
      sleep "$pause"
    done
    log "$node: podCIDR $cidr"
    POD_CIDRS+=("$cidr")
  done
}
