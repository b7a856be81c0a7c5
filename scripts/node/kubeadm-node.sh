#!/usr/bin/env bash
# kubeadm-node.sh: the kubeadm steps on one node (run as root on the node;
# scripts/kubernetes.sh copies it to every node with install-kubernetes.sh).
#
#   kubeadm-node.sh init --pod-network-cidr CIDR --apiserver-san IP
#       kubeadm init, unless this node already has a control plane. A kept control
#       plane is verified (the API server answers; kubeadm's last phase ran; pod
#       network CIDR; IP in the API server certificate): if it is a half-finished or
#       different init, stop and say what differs.
#   kubeadm-node.sh join
#       reads the line of 'kubeadm token create --print-join-command' on stdin and
#       joins with it through a 0600 config file: the token never appears in a
#       process's arguments. Skipped if the node already joined.
#
# For tests: ROOT=/tmp/x prefixes the files read and written (/etc/kubernetes/...);
# READY_RETRIES / READY_RETRY_SLEEP (10 / 3 s) bound the wait for the API server.
set -euo pipefail

ROOT="${ROOT:-}"
READY_RETRIES="${READY_RETRIES:-10}"
READY_RETRY_SLEEP="${READY_RETRY_SLEEP:-3}"
K8S_DIR="$ROOT/etc/kubernetes"

SCRIPT_NAME="$(basename "$0")"
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}
log() { printf '==> %s\n' "$*"; }
usage() {
  printf 'usage: %s init --pod-network-cidr CIDR --apiserver-san IP\n       %s join   (join command on stdin)\n' \
    "$SCRIPT_NAME" "$SCRIPT_NAME" >&2
  exit 2
}

init() {
  local cidr="" san=""
  while (($# > 0)); do
    case "$1" in
      --pod-network-cidr) [[ $# -ge 2 ]] || usage; cidr=$2; shift 2 ;;
      --apiserver-san) [[ $# -ge 2 ]] || usage; san=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n "$cidr" && -n "$san" ]] || usage
  if [[ ! -f "$K8S_DIR/admin.conf" ]]; then
    log "kubeadm init (pod network $cidr, API server certificate for $san)"
    local version
    version="$(kubeadm version -o short)" || die "'kubeadm version' failed"
    kubeadm init --pod-network-cidr="$cidr" --apiserver-cert-extra-sans="$san" \
      --kubernetes-version="$version" || die "kubeadm init failed (exit $?). See above; 'sudo kubeadm reset --force' undoes a partial init."
    return 0
  fi
  log "this node already has /etc/kubernetes/admin.conf: checking the control plane that is there"
  local k=(kubectl --kubeconfig="$K8S_DIR/admin.conf" --request-timeout=10s) problems=() attempt ready=0
  for ((attempt = 1; attempt <= READY_RETRIES; attempt++)); do
    if "${k[@]}" get --raw=/readyz >/dev/null 2>&1; then
      ready=1
      break
    fi
    ((attempt == READY_RETRIES)) || sleep "$READY_RETRY_SLEEP"
  done
  if ((ready == 0)); then
    problems+=("its API server does not answer /readyz (after $READY_RETRIES attempts)")
  else
    local config subnet
    config="$("${k[@]}" -n kube-system get configmap kubeadm-config -o 'jsonpath={.data.ClusterConfiguration}' 2>/dev/null)" ||
      problems+=("it has no kubeadm-config ConfigMap (kubeadm init stopped before its upload-config phase)")
    subnet="$(awk '$1 == "podSubnet:" { print $2 }' <<<"$config")"
    if [[ -n "$config" && "$subnet" != "$cidr" ]]; then
      problems+=("its pod network is '$subnet' (want $cidr)")
    fi
    "${k[@]}" -n kube-system get daemonset kube-proxy -o name >/dev/null 2>&1 ||
      problems+=("it has no kube-proxy DaemonSet (kubeadm init stopped before its last phase, addons)")
  fi
  local sans
  sans="$(openssl x509 -noout -ext subjectAltName -in "$K8S_DIR/pki/apiserver.crt" 2>/dev/null)" || sans=""
  sans="$(tr -d ' \n' <<<"$sans")"
  [[ ",${sans#*Name:}," == *",IPAddress:$san,"* ]] ||
    problems+=("its API server certificate does not name $san (the master's external IP changed?)")
  if ((${#problems[@]} > 0)); then
    local p msg=""
    for p in "${problems[@]}"; do msg+="$p; "; done
    die "the control plane kept from an earlier 'kubeadm init' is not usable: ${msg%; }. Reset this node ('sudo kubeadm reset --force', or scripts/kubernetes.sh down) and re-run scripts/kubernetes.sh up."
  fi
  log "the control plane is complete (API server ready, pod network $cidr, certificate for $san): keeping it"
}

join() {
  (($# == 0)) || usage
  local line
  IFS= read -r line || [[ -n "$line" ]] || die "no join command on stdin."
  if [[ -f "$K8S_DIR/kubelet.conf" ]]; then
    log "this node already joined (/etc/kubernetes/kubelet.conf exists)"
    return 0
  fi
  local re='^kubeadm join ([A-Za-z0-9.-]+:[0-9]+) --token ([a-z0-9]{6}\.[a-z0-9]{16}) --discovery-token-ca-cert-hash (sha256:[0-9a-f]{64})[[:space:]]*$'
  [[ "$line" =~ $re ]] || die "the join command on stdin does not have the expected form (not shown: it holds a token)."
  local endpoint=${BASH_REMATCH[1]} token=${BASH_REMATCH[2]} hash=${BASH_REMATCH[3]} version api=v1beta4
  version="$(kubeadm version -o short)" || die "'kubeadm version' failed"
  # JoinConfiguration v1beta4 from kubeadm 1.31 on; v1beta3 before.
  if [[ "$version" =~ ^v1\.([0-9]+)\. ]] && ((BASH_REMATCH[1] < 31)); then api=v1beta3; fi
  local cfg
  cfg="$(umask 077 && mktemp "${TMPDIR:-/tmp}/kubeadm-join.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: cfg is local
  trap "rm -f '$cfg'" EXIT
  cat >"$cfg" <<YAML
apiVersion: kubeadm.k8s.io/$api
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "$endpoint"
    token: "$token"
    caCertHashes:
      - "$hash"
YAML
  log "kubeadm join $endpoint (token and CA hash from a 0600 config file)"
  local rc=0
  kubeadm join --config="$cfg" || rc=$?
  rm -f "$cfg"
  trap - EXIT
  ((rc == 0)) || die "kubeadm join failed (exit $rc). See above; 'sudo kubeadm reset --force' undoes a partial join."
}

case "${1:-}" in
  init | join) cmd=$1; shift; "$cmd" "$@" ;;
  *) usage ;;
esac
