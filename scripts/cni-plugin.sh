#!/usr/bin/env bash
# cni-plugin.sh up|down|guest: wasm-cni on every node of the kubeadm cluster.
#   up:          copies dist/bin/wasm-cni and dist/guests/default.wasm to every node and
#                writes each node's /etc/cni/net.d/10-wasm-cni.conflist with the node's
#                podCIDR (read from its Node object).
#   down:        removes those files. It does NOT undo what the plugin did on the
#                nodes (bridge, routes, the nftables table ip wasm_cni_<network>) stay until reboot.
#   guest FILE:  checks FILE.wasm locally ("$WASM_CNI_RUNNER guest check"), uploads it
#                as /opt/cni/wasm/<name>.wasm and points every node's conflist at it.
#   guest default: points every node back at /opt/cni/wasm/default.wasm.
# The node side is scripts/node/install-cni.sh. Every variable below can be
# overridden from the environment.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- settings -----------------------------------------------------------------
ZONE="${ZONE:-europe-west1-b}"
HOST_NETWORK="${HOST_NETWORK:-10.0.0.0/16}"   # myHostNetwork
POD_NETWORK="${POD_NETWORK:-200.200.0.0/16}"  # myPodNetwork
MASTER="${MASTER:-my-k8s-master}"
WORKERS="${WORKERS:-my-k8s-worker-1 my-k8s-worker-2}"
KUBE_CONTEXT="${KUBE_CONTEXT:-my-k8s}"
RUNNER_BIN="${RUNNER_BIN:-$repo/dist/bin/wasm-cni}"                # uploaded to the nodes
DEFAULT_GUEST_WASM="${DEFAULT_GUEST_WASM:-$repo/dist/guests/default.wasm}"
WASM_CNI_RUNNER="${WASM_CNI_RUNNER:-$repo/dist/bin/wasm-cni}"      # runs 'guest check' locally
REMOTE_DIR="${REMOTE_DIR:-wasm-cni-install}"  # staging dir in the remote user's home
# -------------------------------------------------------------------------------

# shellcheck source=lib/common.sh
source "$repo/scripts/lib/common.sh"

usage() {
  usage_exit "usage: $SCRIPT_NAME up|down|guest FILE.wasm|guest default
  up             install wasm-cni + default guest and a conflist on $MASTER $WORKERS
  down           remove them (node settings made by the plugin stay until reboot)
  guest FILE     check FILE.wasm locally (wasm-cni guest check), upload it, point every node's conflist at it
  guest default  point every node back at /opt/cni/wasm/default.wasm"
}

read -r -a NODES <<<"$MASTER $WORKERS"
NODE_SCRIPT="$repo/scripts/node/install-cni.sh"
POD_CIDRS=()

read_pod_cidrs() {
  local node cidr
  for node in "${NODES[@]}"; do
    cidr="$(kubectl --context="$KUBE_CONTEXT" get node "$node" -o jsonpath='{.spec.podCIDR}')" ||
      die "reading the Node object $node failed (context $KUBE_CONTEXT). Is 'scripts/kubernetes.sh up' done?"
    is_cidr "$cidr" ||
      die "node $node has no podCIDR (got '$cidr'). Was kubeadm init run with --pod-network-cidr=$POD_NETWORK?"
    log "$node: podCIDR $cidr"
    POD_CIDRS+=("$cidr")
  done
}

# on_node NODE DESCRIPTION INSTALL_ARGS FILE...: stage FILE... and install-cni.sh in
# ~/$REMOTE_DIR on NODE, run install-cni.sh with INSTALL_ARGS as root, clean up.
on_node() {
  local node=$1 desc=$2 args=$3
  shift 3
  run_step "$desc: preparing $REMOTE_DIR on $node" \
    gcloud_ssh "$node" "rm -rf $REMOTE_DIR && mkdir $REMOTE_DIR"
  run_step "$desc: copying files to $node" \
    gcloud_scp "$@" "$NODE_SCRIPT" "$node:$REMOTE_DIR/"
  run_step "$desc on $node" \
    gcloud_ssh "$node" "sudo bash $REMOTE_DIR/install-cni.sh $args; rc=\$?; rm -rf $REMOTE_DIR; exit \$rc"
}

networks() { # NODE_INDEX
  printf -- '--host-network %s --pod-network %s --pod-subnet %s' \
    "$HOST_NETWORK" "$POD_NETWORK" "${POD_CIDRS[$1]}"
}

up() {
  need_file "$RUNNER_BIN" "the runner"
  need_file "$DEFAULT_GUEST_WASM" "the default guest"
  need_project
  need_context
  read_pod_cidrs
  local i node
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    log "$node: installing wasm-cni (pod subnet ${POD_CIDRS[i]})"
    on_node "$node" "installing wasm-cni" \
      "install --runner $REMOTE_DIR/$(basename "$RUNNER_BIN") --default-guest $REMOTE_DIR/$(basename "$DEFAULT_GUEST_WASM") $(networks "$i")" \
      "$RUNNER_BIN" "$DEFAULT_GUEST_WASM"
  done
  log "wasm-cni is installed; nodes become Ready shortly. Next: scripts/inter-node-routes.sh up"
}

down() {
  need_project
  local node
  for node in "${NODES[@]}"; do
    log "$node: removing wasm-cni"
    on_node "$node" "removing wasm-cni" "uninstall"
  done
  log "removed the wasm-cni files. Note: this does not undo the settings the plugin made"
  log "on the nodes (bridge cni0, routes, the nftables table ip wasm_cni_<network>); they stay until the nodes reboot."
}

guest() {
  local file=$1 name="" done_nodes=() i node args
  if [[ "$file" != default ]]; then
    [[ -f "$file" ]] || die "refusing '$file': no such file."
    name="$(basename "$file")"
    [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*\.wasm$ ]] ||
      die "refusing '$file': the file name must match [A-Za-z0-9._-]*.wasm."
    [[ "$name" != default.wasm ]] ||
      die "refusing '$file': default.wasm would replace the default guest; rename it."
    [[ -x "$WASM_CNI_RUNNER" ]] ||
      die "cannot check '$file': runner '$WASM_CNI_RUNNER' not found or not executable. Build it (scripts/build.sh) or set WASM_CNI_RUNNER."
    local out rc=0
    out="$("$WASM_CNI_RUNNER" guest check "$file" 2>&1)" || rc=$?
    ((rc == 0)) ||
      die "refusing '$file': it is not a component of the wasm-cni world (guest check exit $rc): $out"
    log "${out%%$'\n'*}"
  fi
  need_project
  need_context
  read_pod_cidrs
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    if [[ -n "$name" ]]; then
      log "$node: switching to guest /opt/cni/wasm/$name"
      args="guest --file $REMOTE_DIR/$name $(networks "$i")"
      on_node "$node" "switching to $name (nodes already switched: ${done_nodes[*]:-none})" "$args" "$file"
    else
      log "$node: switching back to the default guest"
      args="guest --default $(networks "$i")"
      on_node "$node" "switching to default.wasm (nodes already switched: ${done_nodes[*]:-none})" "$args"
    fi
    done_nodes+=("$node")
  done
  log "every node now uses ${name:-default.wasm} for new CNI calls"
}

need_file() {
  [[ -f "$1" ]] || die "$2 '$1' is missing. Build it with scripts/build.sh."
}

main() {
  case "${1:-}" in
    up | down) [[ $# -eq 1 ]] || usage ;;
    guest) [[ $# -eq 2 && -n "$2" ]] || usage ;;
    *) usage ;;
  esac
  need_gcloud
  [[ "$1" == down ]] || need_kubectl
  need_cidr HOST_NETWORK "$HOST_NETWORK"
  need_cidr POD_NETWORK "$POD_NETWORK"
  [[ -f "$NODE_SCRIPT" ]] || die "missing $NODE_SCRIPT."
  "$1" "${@:2}"
}

main "$@"
