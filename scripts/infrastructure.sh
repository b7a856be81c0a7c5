#!/usr/bin/env bash
# infrastructure.sh up|down: the GCP resources of the lab cluster.
#   up:   VPC (custom subnet mode), subnet, firewall rules, three VMs with IP
#         forwarding allowed; then waits until every VM answers SSH.
#   down: deletes the VMs, firewall rules, subnet and VPC (reverse order);
#         resources that are already gone are skipped.
# Every variable below can be overridden from the environment.
set -euo pipefail

# --- settings -----------------------------------------------------------------
REGION="${REGION:-europe-west1}"
ZONE="${ZONE:-europe-west1-b}"
NETWORK="${NETWORK:-my-k8s-vpc}"
SUBNET="${SUBNET:-my-k8s-subnet}"
HOST_NETWORK="${HOST_NETWORK:-10.0.0.0/16}"   # the subnet's range (node IPs)
POD_NETWORK="${POD_NETWORK:-200.200.0.0/16}"  # the cluster's pod CIDR
MASTER="${MASTER:-my-k8s-master}"
WORKERS="${WORKERS:-my-k8s-worker-1 my-k8s-worker-2}"
MACHINE_TYPE="${MACHINE_TYPE:-e2-medium}"
IMAGE_FAMILY="${IMAGE_FAMILY:-ubuntu-2404-lts-amd64}"
IMAGE_PROJECT="${IMAGE_PROJECT:-ubuntu-os-cloud}"
BOOT_DISK_SIZE="${BOOT_DISK_SIZE:-20GB}"
# Who may reach SSH (tcp:22) and the API server (tcp:6443). Narrow it to your own
# address (e.g. 203.0.113.7/32) if you can.
EXTERNAL_SOURCE_RANGES="${EXTERNAL_SOURCE_RANGES:-0.0.0.0/0}"
FIREWALL_EXTERNAL="${FIREWALL_EXTERNAL:-${NETWORK}-allow-external}"
FIREWALL_INTERNAL="${FIREWALL_INTERNAL:-${NETWORK}-allow-internal}"
SSH_RETRIES="${SSH_RETRIES:-30}"            # attempts per VM while waiting for SSH
SSH_RETRY_SLEEP="${SSH_RETRY_SLEEP:-10}"    # seconds between attempts
# -------------------------------------------------------------------------------

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  usage_exit "usage: $SCRIPT_NAME up|down
  up    create VPC $NETWORK, subnet $SUBNET ($HOST_NETWORK), firewall rules and the VMs
        $MASTER $WORKERS in $ZONE
  down  delete them again (VMs, firewall rules, subnet, VPC)
Run scripts/inter-node-routes.sh down before '$SCRIPT_NAME down' (routes keep the VPC in use)."
}

read -r -a NODES <<<"$MASTER $WORKERS"

wait_for_ssh() {
  local node=$1 attempt
  for ((attempt = 1; attempt <= SSH_RETRIES; attempt++)); do
    if gcloud compute ssh "$node" --project="$PROJECT" --zone="$ZONE" --quiet \
      --ssh-flag=-oConnectTimeout=10 --command=true >/dev/null 2>&1; then
      log "$node answers SSH"
      return 0
    fi
    if ((attempt < SSH_RETRIES)); then
      log "$node: SSH not ready yet (attempt $attempt/$SSH_RETRIES), retrying in ${SSH_RETRY_SLEEP}s"
      sleep "$SSH_RETRY_SLEEP"
    fi
  done
  die "$node did not answer SSH after $SSH_RETRIES attempts. Check the VM in the console (serial port output), then re-run '$SCRIPT_NAME up'."
}

up() {
  local exists="already exists"
  log "creating VPC $NETWORK"
  tolerant_step "$exists" "VPC $NETWORK already exists, keeping it" "creating VPC $NETWORK" \
    gcloud compute networks create "$NETWORK" --project="$PROJECT" --subnet-mode=custom

  log "creating subnet $SUBNET ($HOST_NETWORK) in $REGION"
  tolerant_step "$exists" "subnet $SUBNET already exists, keeping it" "creating subnet $SUBNET" \
    gcloud compute networks subnets create "$SUBNET" --project="$PROJECT" \
    --network="$NETWORK" --region="$REGION" --range="$HOST_NETWORK"

  log "creating firewall rule $FIREWALL_EXTERNAL (SSH, API server from $EXTERNAL_SOURCE_RANGES)"
  tolerant_step "$exists" "firewall rule $FIREWALL_EXTERNAL already exists, keeping it" \
    "creating firewall rule $FIREWALL_EXTERNAL" \
    gcloud compute firewall-rules create "$FIREWALL_EXTERNAL" --project="$PROJECT" \
    --network="$NETWORK" --direction=INGRESS --action=ALLOW --rules=tcp:22,tcp:6443 \
    --source-ranges="$EXTERNAL_SOURCE_RANGES"

  log "creating firewall rule $FIREWALL_INTERNAL (all traffic within $HOST_NETWORK and $POD_NETWORK)"
  tolerant_step "$exists" "firewall rule $FIREWALL_INTERNAL already exists, keeping it" \
    "creating firewall rule $FIREWALL_INTERNAL" \
    gcloud compute firewall-rules create "$FIREWALL_INTERNAL" --project="$PROJECT" \
    --network="$NETWORK" --direction=INGRESS --action=ALLOW --rules=all \
    --source-ranges="$HOST_NETWORK,$POD_NETWORK"

  local node
  for node in "${NODES[@]}"; do
    log "creating VM $node ($MACHINE_TYPE, $IMAGE_FAMILY)"
    tolerant_step "$exists" "VM $node already exists, keeping it" "creating VM $node" \
      gcloud compute instances create "$node" --project="$PROJECT" --zone="$ZONE" \
      --machine-type="$MACHINE_TYPE" --subnet="$SUBNET" \
      --image-family="$IMAGE_FAMILY" --image-project="$IMAGE_PROJECT" \
      --boot-disk-size="$BOOT_DISK_SIZE" --can-ip-forward
  done

  for node in "${NODES[@]}"; do
    wait_for_ssh "$node"
  done
  log "infrastructure is up. Next: scripts/kubernetes.sh up"
}

down() {
  local gone="was not found" i node
  for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
    node=${NODES[i]}
    log "deleting VM $node"
    tolerant_step "$gone" "VM $node is already gone" "deleting VM $node" \
      gcloud compute instances delete "$node" --project="$PROJECT" --zone="$ZONE" --quiet
  done
  local rule
  for rule in "$FIREWALL_INTERNAL" "$FIREWALL_EXTERNAL"; do
    log "deleting firewall rule $rule"
    tolerant_step "$gone" "firewall rule $rule is already gone" "deleting firewall rule $rule" \
      gcloud compute firewall-rules delete "$rule" --project="$PROJECT" --quiet
  done
  log "deleting subnet $SUBNET"
  tolerant_step "$gone" "subnet $SUBNET is already gone" "deleting subnet $SUBNET" \
    gcloud compute networks subnets delete "$SUBNET" --project="$PROJECT" --region="$REGION" --quiet
  log "deleting VPC $NETWORK"
  tolerant_step "$gone" "VPC $NETWORK is already gone" \
    "deleting VPC $NETWORK (if routes still use it, run scripts/inter-node-routes.sh down first)" \
    gcloud compute networks delete "$NETWORK" --project="$PROJECT" --quiet
  log "infrastructure is down"
}

main() {
  [[ $# -eq 1 ]] || usage
  case "$1" in
    up | down) ;;
    *) usage ;;
  esac
  need_gcloud
  need_cidr HOST_NETWORK "$HOST_NETWORK"
  need_cidr POD_NETWORK "$POD_NETWORK"
  [[ "$SSH_RETRIES" =~ ^[1-9][0-9]*$ ]] || die "SSH_RETRIES='$SSH_RETRIES' must be a positive integer."
  need_project
  "$1"
}

main "$@"
