#!/usr/bin/env bash
# kubernetes.sh up|down: Kubernetes (kubeadm) on the VMs made by infrastructure.sh.
#   up:   runs scripts/node/install-kubernetes.sh on every node (containerd, kubeadm,
#         kubelet, kubectl, kernel settings), `kubeadm init` on the master (pod network
#         $POD_NETWORK, master's external IP in the API server certificate; a control
#         plane kept from an earlier run is verified), `kubeadm join` on the workers
#         (the token on stdin, never in a command line), then merges the admin
#         kubeconfig into yours as context $KUBE_CONTEXT, pointing at the master's
#         external address. Node side: scripts/node/kubeadm-node.sh.
#   down: `kubeadm reset` on every node, removes the context from your kubeconfig.
# Every variable below can be overridden from the environment.
set -euo pipefail

# --- settings -----------------------------------------------------------------
ZONE="${ZONE:-europe-west1-b}"
POD_NETWORK="${POD_NETWORK:-200.200.0.0/16}"
MASTER="${MASTER:-my-k8s-master}"
WORKERS="${WORKERS:-my-k8s-worker-1 my-k8s-worker-2}"
# pkgs.k8s.io repository (minor version). v1.36: released April 2026, supported
# until about June 2027 (a minor gets ~14 months of patches); see docs/gcp.md.
K8S_MINOR="${K8S_MINOR:-v1.36}"
KUBE_CONTEXT="${KUBE_CONTEXT:-my-k8s}"        # context/cluster name in your kubeconfig
KUBE_USER="${KUBE_USER:-${KUBE_CONTEXT}-admin}"
API_PORT="${API_PORT:-6443}"
# -------------------------------------------------------------------------------

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  usage_exit "usage: $SCRIPT_NAME up|down
  up    install Kubernetes $K8S_MINOR with kubeadm on $MASTER $WORKERS and add
        context '$KUBE_CONTEXT' to your kubeconfig
  down  kubeadm reset on every node and remove context '$KUBE_CONTEXT'"
}

read -r -a WORKER_LIST <<<"$WORKERS"
NODES=("$MASTER" "${WORKER_LIST[@]}")
NODE_SCRIPT="$REPO_ROOT/scripts/node/install-kubernetes.sh"
KUBEADM_SCRIPT="$REPO_ROOT/scripts/node/kubeadm-node.sh"

install_node() {
  local node=$1
  log "$node: installing containerd and kubeadm ($K8S_MINOR)"
  run_step "copying install-kubernetes.sh and kubeadm-node.sh to $node" \
    gcloud_scp "$NODE_SCRIPT" "$KUBEADM_SCRIPT" "$node:."
  run_step "installing Kubernetes on $node" \
    gcloud_ssh "$node" "sudo env K8S_MINOR=$K8S_MINOR bash install-kubernetes.sh && rm -f install-kubernetes.sh"
}

master_external_ip() {
  local ip
  ip="$(gcloud compute instances describe "$MASTER" --project="$PROJECT" --zone="$ZONE" \
    --format='get(networkInterfaces[0].accessConfigs[0].natIP)')" ||
    die "reading the external IP of $MASTER failed. Is 'scripts/infrastructure.sh up' done?"
  [[ "$ip" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    die "$MASTER has no external IPv4 address (got '$ip')."
  printf '%s\n' "$ip"
}

# fetch_kubeconfig IP: merge /etc/kubernetes/admin.conf from the master into the
# local kubeconfig as cluster/context $KUBE_CONTEXT, user $KUBE_USER.
fetch_kubeconfig() {
  local ip=$1 tmp
  tmp="$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/kubernetes.sh.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  run_step "fetching the admin kubeconfig from $MASTER" \
    gcloud_ssh "$MASTER" "sudo cat /etc/kubernetes/admin.conf" >"$tmp/admin.conf"
  local field file
  for field in ca:'{.clusters[0].cluster.certificate-authority-data}' \
    crt:'{.users[0].user.client-certificate-data}' \
    key:'{.users[0].user.client-key-data}'; do
    file="$tmp/${field%%:*}"
    kubectl config view --kubeconfig="$tmp/admin.conf" --raw -o jsonpath="${field#*:}" >"$file.b64" ||
      die "reading ${field#*:} from the fetched admin.conf failed."
    [[ -s "$file.b64" ]] || die "the fetched admin.conf has no ${field#*:}."
    base64 --decode <"$file.b64" >"$file" || die "decoding ${field#*:} from admin.conf failed."
  done
  run_step "adding cluster $KUBE_CONTEXT to your kubeconfig" \
    kubectl config set-cluster "$KUBE_CONTEXT" --server="https://$ip:$API_PORT" \
    --certificate-authority="$tmp/ca" --embed-certs=true
  run_step "adding user $KUBE_USER to your kubeconfig" \
    kubectl config set-credentials "$KUBE_USER" --client-certificate="$tmp/crt" \
    --client-key="$tmp/key" --embed-certs=true
  run_step "adding context $KUBE_CONTEXT to your kubeconfig" \
    kubectl config set-context "$KUBE_CONTEXT" --cluster="$KUBE_CONTEXT" --user="$KUBE_USER"
  run_step "switching to context $KUBE_CONTEXT" kubectl config use-context "$KUBE_CONTEXT"
  rm -rf "$tmp"
  trap - EXIT
}

up() {
  local node ip join
  for node in "${NODES[@]}"; do
    install_node "$node"
  done

  ip="$(master_external_ip)"
  log "$MASTER: kubeadm init (pod network $POD_NETWORK, API server cert for $ip)"
  # A master that has a control plane already is checked, not initialised again.
  run_step "kubeadm init on $MASTER" gcloud_ssh "$MASTER" \
    "sudo bash kubeadm-node.sh init --pod-network-cidr $POD_NETWORK --apiserver-san $ip"

  # The join command holds a bootstrap token: it is never printed, and it reaches
  # the workers on stdin, not in a command line.
  join="$(gcloud_ssh "$MASTER" "sudo kubeadm token create --ttl=1h --print-join-command")" ||
    die "creating a join token on $MASTER failed."
  join="${join%%$'\n'*}"
  local join_re='^kubeadm join [A-Za-z0-9.:-]+ --token [a-z0-9]{6}\.[a-z0-9]{16} --discovery-token-ca-cert-hash sha256:[0-9a-f]{64}[[:space:]]*$'
  [[ "$join" =~ $join_re ]] ||
    die "the join command from $MASTER does not have the expected form 'kubeadm join HOST:PORT --token ... --discovery-token-ca-cert-hash sha256:...' (not shown: it holds a token)."
  for node in "${WORKER_LIST[@]}"; do
    log "$node: kubeadm join"
    run_step "kubeadm join on $node" gcloud_ssh_stdin "$node" "sudo bash kubeadm-node.sh join" <<<"$join"
  done

  log "merging the admin kubeconfig into yours as context $KUBE_CONTEXT (server https://$ip:$API_PORT)"
  fetch_kubeconfig "$ip"
  log "Kubernetes is up (nodes stay NotReady until a CNI plugin is installed). Next: scripts/cni-plugin.sh up"
}

down() {
  local i node
  for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
    node=${NODES[i]}
    log "$node: kubeadm reset"
    run_step "kubeadm reset on $node" gcloud_ssh "$node" \
      "if command -v kubeadm >/dev/null; then sudo kubeadm reset --force; fi; rm -f kubeadm-node.sh"
  done
  log "removing context $KUBE_CONTEXT from your kubeconfig"
  if [[ "$(kubectl config current-context 2>/dev/null || true)" == "$KUBE_CONTEXT" ]]; then
    kubectl config unset current-context >/dev/null
  fi
  kubectl config delete-context "$KUBE_CONTEXT" >/dev/null 2>&1 || log "context $KUBE_CONTEXT was not there"
  kubectl config delete-cluster "$KUBE_CONTEXT" >/dev/null 2>&1 || log "cluster $KUBE_CONTEXT was not there"
  kubectl config delete-user "$KUBE_USER" >/dev/null 2>&1 || log "user $KUBE_USER was not there"
  log "Kubernetes is down (packages stay installed on the nodes)"
}

main() {
  [[ $# -eq 1 ]] || usage
  case "$1" in
    up | down) ;;
    *) usage ;;
  esac
  need_gcloud
  need_kubectl
  need_cidr POD_NETWORK "$POD_NETWORK"
  [[ "$K8S_MINOR" =~ ^v1\.[0-9]+$ ]] || die "K8S_MINOR='$K8S_MINOR' must look like v1.36."
  [[ -f "$NODE_SCRIPT" && -f "$KUBEADM_SCRIPT" ]] || die "missing $NODE_SCRIPT or $KUBEADM_SCRIPT."
  need_project
  "$1"
}

main "$@"
