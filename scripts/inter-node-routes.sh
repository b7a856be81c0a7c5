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

# What 'up' creates carries this description; 'down' deletes only routes that carry it.
MARK="wasm-cni lab: created by scripts/inter-node-routes.sh up"

# check_route NODE CIDR: a route that already exists must send CIDR to NODE.
check_route() {
  local route="${1}${ROUTE_SUFFIX}" got dest hop
  got="$(gcloud compute routes describe "$route" --project="$PROJECT" \
    --format='value(destRange,nextHopInstance.basename())')" ||
    die "describing route $route failed."
  IFS=$'\x1f' read -r dest hop <<<"${got//$'\t'/$'\x1f'}" # tabs: empty fields stay
  if [[ "$dest" != "$2" || "$hop" != "$1" ]]; then
    die "route $route already exists but sends '$dest' to '$hop' (want $2 to $1: the node's podCIDR may have changed). Delete it ('gcloud compute routes delete $route') or run '$SCRIPT_NAME down', then re-run."
  fi
  log "route $route already exists ($2 via $1): keeping it"
}

up() {
  need_context
  local node i err rc
  wait_pod_cidrs "${NODES[@]}"
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    log "route ${node}${ROUTE_SUFFIX}: ${POD_CIDRS[i]} via $node"
    rc=0
    { err="$(gcloud compute routes create "${node}${ROUTE_SUFFIX}" --project="$PROJECT" \
      --network="$NETWORK" --destination-range="${POD_CIDRS[i]}" \
      --next-hop-instance="$node" --next-hop-instance-zone="$ZONE" \
      --description="$MARK" 2>&1 1>&3 3>&-)"; } 3>&1 || rc=$?
    if ((rc == 0)); then
      if [[ -n "$err" ]]; then printf '%s\n' "$err" >&2; fi
      continue
    fi
    if [[ "$err" == *"already exists"* ]]; then
      check_route "$node" "${POD_CIDRS[i]}"
      continue
    fi
    if [[ -n "$err" ]]; then printf '%s\n' "$err" >&2; fi
    die "creating route ${node}${ROUTE_SUFFIX} failed (exit $rc). Fix the cause above and re-run."
  done
  log "inter-node routes are up. Next: kubectl apply -f pods.yaml"
}

down() {
  local i node route got rc
  for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
    node=${NODES[i]}
    route="${node}${ROUTE_SUFFIX}"
    rc=0
    got="$(gcloud compute routes describe "$route" --project="$PROJECT" \
      --format='value(description)' 2>&1)" || rc=$?
    if ((rc != 0)); then
      if [[ "$got" == *"was not found"* ]]; then
        log "route $route is already gone"
        continue
      fi
      printf '%s\n' "$got" >&2
      die "describing route $route failed (exit $rc)."
    fi
    got="${got##*$'\n'}" # the value is the last line (warnings come first)
    if [[ "$got" != "$MARK" ]]; then
      log "route $route was not created by '$SCRIPT_NAME up' (no mark in its description): leaving it"
      continue
    fi
    log "deleting route $route"
    run_step "deleting route $route" gcloud compute routes delete "$route" --project="$PROJECT" --quiet
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
