#!/usr/bin/env bash
# inter-node-routes.sh up|down: one VPC route per node so that pods on different
# nodes reach each other (destination = the node's podCIDR from its Node object,
# next hop = the node's VM). Without them, only pods on the same node can talk and
# cluster DNS fails.
# Every variable below can be overridden from the environment.
set -euo pipefail

# --- settings -----------------------------------------------------------------
ZONE="${ZONE:-europe-west1-b}"
NETWORK="${NETWORK:-my-k8s-vpc}"
MASTER="${MASTER:-my-k8s-master}"
WORKERS="${WORKERS:-my-k8s-worker-1 my-k8s-worker-2}"
KUBE_CONTEXT="${KUBE_CONTEXT:-my-k8s}"
ROUTE_SUFFIX="${ROUTE_SUFFIX:--pod-route}"    # route name = <node><suffix>
# -------------------------------------------------------------------------------

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  usage_exit "usage: $SCRIPT_NAME up|down
  up    create a route in $NETWORK per node: the node's podCIDR via the node's VM
  down  delete those routes"
}

read -r -a NODES <<<"$MASTER $WORKERS"

up() {
  need_context
  local node cidr cidrs=() i
  for node in "${NODES[@]}"; do
    cidr="$(kubectl --context="$KUBE_CONTEXT" get node "$node" -o jsonpath='{.spec.podCIDR}')" ||
      die "reading the Node object $node failed (context $KUBE_CONTEXT). Is 'scripts/kubernetes.sh up' done?"
    is_cidr "$cidr" || die "node $node has no podCIDR (got '$cidr')."
    cidrs+=("$cidr")
  done
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    log "route ${node}${ROUTE_SUFFIX}: ${cidrs[i]} via $node"
    tolerant_step "already exists" "route ${node}${ROUTE_SUFFIX} already exists, keeping it" \
      "creating route ${node}${ROUTE_SUFFIX}" \
      gcloud compute routes create "${node}${ROUTE_SUFFIX}" --project="$PROJECT" \
      --network="$NETWORK" --destination-range="${cidrs[i]}" \
      --next-hop-instance="$node" --next-hop-instance-zone="$ZONE"
  done
  log "inter-node routes are up. Next: kubectl apply -f pods.yaml"
}

down() {
  local i node
  for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
    node=${NODES[i]}
    log "deleting route ${node}${ROUTE_SUFFIX}"
    tolerant_step "was not found" "route ${node}${ROUTE_SUFFIX} is already gone" \
      "deleting route ${node}${ROUTE_SUFFIX}" \
      gcloud compute routes delete "${node}${ROUTE_SUFFIX}" --project="$PROJECT" --quiet
  done
  log "inter-node routes are down"
}

main() {
  [[ $# -eq 1 ]] || usage
  case "$1" in
    up | down) ;;
    *) usage ;;
  esac
  need_gcloud
  [[ "$1" == down ]] || need_kubectl
  need_project
  "$1"
}

main "$@"
