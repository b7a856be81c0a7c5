#!/usr/bin/env bash
# infrastructure.sh up|down: the GCP resources of the lab cluster.
#   up:   VPC (custom subnet mode), subnet, firewall rules, three VMs with IP
#         forwarding allowed; then waits until every VM answers SSH. What exists
#         already is checked (a VM's IP forwarding, subnet, image, ...) and kept only
#         if it is what 'up' would create; otherwise 'up' stops and says what differs.
#         SSH and the API server are open to your own public IP only (/32).
#   down: deletes what 'up' created (VMs labelled created_by=wasm-cni, the rest marked
#         in its description), in reverse order; what is gone or not ours is skipped.
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
# Who may reach SSH (tcp:22) and the API server (tcp:6443): comma-separated CIDRs.
# Default: your own public IPv4 address as a /32, asked from PUBLIC_IP_URL.
EXTERNAL_SOURCE_RANGES="${EXTERNAL_SOURCE_RANGES:-}"
PUBLIC_IP_URL="${PUBLIC_IP_URL:-https://checkip.amazonaws.com}"
FIREWALL_EXTERNAL="${FIREWALL_EXTERNAL:-${NETWORK}-allow-external}"
FIREWALL_INTERNAL="${FIREWALL_INTERNAL:-${NETWORK}-allow-internal}"
NODE_TAG="${NODE_TAG:-${NETWORK}-node}"     # network tag of the VMs: the firewall rules' target
SSH_RETRIES="${SSH_RETRIES:-30}"            # attempts per VM while waiting for SSH
SSH_RETRY_SLEEP="${SSH_RETRY_SLEEP:-10}"    # seconds between attempts
# -------------------------------------------------------------------------------

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# What 'up' creates carries a mark, and 'down' deletes only what carries it: VMs get
# the label created_by=wasm-cni; VPC, subnet and firewall rules (which have no
# labels) get this description.
LABEL_KEY=created_by
LABEL_VALUE=wasm-cni
MARK="wasm-cni lab: created by scripts/infrastructure.sh up"

usage() {
  usage_exit "usage: $SCRIPT_NAME up|down
  up    create VPC $NETWORK, subnet $SUBNET ($HOST_NETWORK), firewall rules and the VMs
        $MASTER $WORKERS in $ZONE
  down  delete what 'up' created (VMs, firewall rules, subnet, VPC); resources that
        'up' found and kept are left alone
Run scripts/inter-node-routes.sh down before '$SCRIPT_NAME down' (routes keep the VPC in use)."
}

read -r -a NODES <<<"$MASTER $WORKERS"

wait_for_ssh() {
  local node=$1 attempt err=""
  for ((attempt = 1; attempt <= SSH_RETRIES; attempt++)); do
    if err="$(gcloud compute ssh "$node" --project="$PROJECT" --zone="$ZONE" --quiet \
      --ssh-flag=-oConnectTimeout=10 --command=true 2>&1 >/dev/null </dev/null)"; then
      log "$node answers SSH"
      return 0
    fi
    if ((attempt < SSH_RETRIES)); then
      log "$node: SSH not ready yet (attempt $attempt/$SSH_RETRIES), retrying in ${SSH_RETRY_SLEEP}s"
      sleep "$SSH_RETRY_SLEEP"
    fi
  done
  [[ -n "$err" ]] || err="(no error output)"
  printf '%s: last SSH error from %s:\n%s\n' "$SCRIPT_NAME" "$node" "$(tail -n 5 <<<"$err")" >&2
  die "$node did not answer SSH after $SSH_RETRIES attempts (last error above). Check the VM in the console (serial port output) and the firewall rule $FIREWALL_EXTERNAL (source ranges $EXTERNAL_SOURCE_RANGES), then re-run '$SCRIPT_NAME up'."
}

# detect_public_ip: EXTERNAL_SOURCE_RANGES defaults to the caller's public IPv4 /32.
detect_public_ip() {
  need_cmd curl "It asks $PUBLIC_IP_URL for your public IP; or set EXTERNAL_SOURCE_RANGES=YOUR.IP/32."
  local ip
  ip="$(curl -4 -fsS --max-time 10 "$PUBLIC_IP_URL" 2>/dev/null)" || ip=""
  ip="${ip//[[:space:]]/}"
  is_cidr "$ip/32" ||
    die "could not detect your public IPv4 address from $PUBLIC_IP_URL (got '$ip'). Set EXTERNAL_SOURCE_RANGES=YOUR.IP/32 (several: comma-separated; 0.0.0.0/0 opens SSH and the API server to everyone)."
  EXTERNAL_SOURCE_RANGES="$ip/32"
  log "SSH and the API server will be reachable from your public IP only: $EXTERNAL_SOURCE_RANGES (EXTERNAL_SOURCE_RANGES overrides)"
}

need_source_ranges() {
  local r ranges
  IFS=, read -r -a ranges <<<"$EXTERNAL_SOURCE_RANGES"
  ((${#ranges[@]} > 0)) || die "EXTERNAL_SOURCE_RANGES is empty."
  for r in "${ranges[@]}"; do
    is_cidr "$r" || die "EXTERNAL_SOURCE_RANGES: '$r' is not an IPv4 CIDR (e.g. 203.0.113.7/32)."
    if [[ "$r" == */0 ]]; then
      warn "EXTERNAL_SOURCE_RANGES contains $r: SSH and the API server are open to the whole internet."
    fi
  done
}

# sorted_csv CSV: the comma-separated items of CSV, sorted (for set comparisons).
sorted_csv() {
  tr ',;' '\n\n' <<<"$1" | sed '/^$/d' | sort | paste -sd, -
}

# --- checks of resources that already exist ('up' keeps them only if they fit) ---
# describe_or_die DESCRIPTION CMD...: the output of a describe call.
describe_or_die() {
  local desc=$1 out
  shift
  out="$("$@")" || die "$desc failed (exit $?)."
  printf '%s\n' "$out"
}

# differs NAME WHAT GOT WANT: append "WHAT is GOT (want WANT)" to DIFFS if GOT != WANT.
DIFFS=()
differs() {
  [[ "$2" == "$3" ]] || DIFFS+=("$1 is '${2}' (want '${3}')")
}

report_diffs() { # KIND NAME FIX
  ((${#DIFFS[@]} == 0)) && return 0
  local d msg=""
  for d in "${DIFFS[@]}"; do msg+="$d; "; done
  DIFFS=()
  die "$1 $2 already exists but differs from what '$SCRIPT_NAME up' creates: ${msg%; }. $3"
}

check_network() {
  local got
  got="$(describe_or_die "describing VPC $NETWORK" gcloud compute networks describe "$NETWORK" \
    --project="$PROJECT" --format='value(autoCreateSubnetworks)')"
  differs "autoCreateSubnetworks" "$got" "False"
  report_diffs VPC "$NETWORK" "Use a custom-mode VPC: set NETWORK to another name, or delete this one."
  log "VPC $NETWORK already exists and is a custom-mode VPC: keeping it"
}

check_subnet() {
  local got net range
  got="$(describe_or_die "describing subnet $SUBNET" gcloud compute networks subnets describe "$SUBNET" \
    --project="$PROJECT" --region="$REGION" --format='value(network.basename(),ipCidrRange)')"
  IFS=$'\x1f' read -r net range <<<"${got//$'\t'/$'\x1f'}" # tabs: empty fields stay
  differs "its network" "$net" "$NETWORK"
  differs "its range" "$range" "$HOST_NETWORK"
  report_diffs subnet "$SUBNET" "Set SUBNET/HOST_NETWORK to match, or delete the subnet ('gcloud compute networks subnets delete $SUBNET --region=$REGION')."
  log "subnet $SUBNET already exists with network $NETWORK and range $HOST_NETWORK: keeping it"
}

check_firewall() { # RULE SOURCE_RANGES DESTINATION_RANGES
  local rule=$1 got net src dst tags
  got="$(describe_or_die "describing firewall rule $rule" gcloud compute firewall-rules describe "$rule" \
    --project="$PROJECT" --format='value(network.basename(),sourceRanges.list(),destinationRanges.list(),targetTags.list())')"
  IFS=$'\x1f' read -r net src dst tags <<<"${got//$'\t'/$'\x1f'}" # tabs: empty fields stay
  differs "its network" "$net" "$NETWORK"
  differs "its source ranges" "$(sorted_csv "$src")" "$(sorted_csv "$2")"
  differs "its destination ranges" "$(sorted_csv "$dst")" "$(sorted_csv "$3")"
  differs "its target tags" "$tags" "$NODE_TAG"
  report_diffs "firewall rule" "$rule" "Update it (gcloud compute firewall-rules update $rule --source-ranges=... ) or delete it ('gcloud compute firewall-rules delete $rule'), then re-run."
  log "firewall rule $rule already exists as wanted: keeping it"
}

check_firewall_external() { check_firewall "$FIREWALL_EXTERNAL" "$EXTERNAL_SOURCE_RANGES" ""; }
check_firewall_internal() {
  check_firewall "$FIREWALL_INTERNAL" "$HOST_NETWORK,$POD_NETWORK" "$HOST_NETWORK,$POD_NETWORK"
}

check_vm() {
  local node=$1 got fwd subnet tags disk image family img_project img_name
  got="$(describe_or_die "describing VM $node" gcloud compute instances describe "$node" \
    --project="$PROJECT" --zone="$ZONE" \
    --format='value(canIpForward,networkInterfaces[0].subnetwork.basename(),tags.items.list(),disks[0].source.basename())')"
  IFS=$'\x1f' read -r fwd subnet tags disk <<<"${got//$'\t'/$'\x1f'}" # tabs: empty fields stay
  differs "canIpForward" "$fwd" "True"
  differs "its subnet" "$subnet" "$SUBNET"
  [[ ",$tags," == *",$NODE_TAG,"* ]] || DIFFS+=("its network tags are '$tags' (want them to include '$NODE_TAG')")
  image="$(describe_or_die "describing the boot disk $disk of $node" gcloud compute disks describe "$disk" \
    --project="$PROJECT" --zone="$ZONE" --format='value(sourceImage)')"
  # .../projects/PROJECT/global/images/NAME
  img_name="${image##*/}"
  img_project="${image#*/projects/}"
  img_project="${img_project%%/*}"
  if [[ "$image" != */projects/*/global/images/* ]]; then
    DIFFS+=("its boot disk's image is '$image' (want one of family $IMAGE_PROJECT/$IMAGE_FAMILY)")
  else
    family="$(gcloud compute images describe "$img_name" --project="$img_project" --format='value(family)' 2>/dev/null)" ||
      family="(image $img_project/$img_name not found)"
    differs "its image family" "$img_project/$family" "$IMAGE_PROJECT/$IMAGE_FAMILY"
  fi
  report_diffs VM "$node" "Delete it ('gcloud compute instances delete $node --zone=$ZONE') and re-run."
  log "VM $node already exists with IP forwarding, subnet $SUBNET and image family $IMAGE_FAMILY: keeping it"
}

# create_or_check DESCRIPTION CHECK_CMD CREATE_CMD...: create; if it already exists,
# run CHECK_CMD (word-split) to verify it instead.
create_or_check() {
  local desc=$1 check=$2 err rc=0
  shift 2
  { err="$("$@" 2>&1 1>&3 3>&-)"; } 3>&1 || rc=$?
  if ((rc == 0)); then
    if [[ -n "$err" ]]; then printf '%s\n' "$err" >&2; fi
    return 0
  fi
  if [[ "$err" == *"already exists"* ]]; then
    # shellcheck disable=SC2086 # CHECK_CMD is a function name and its arguments
    $check
    return 0
  fi
  if [[ -n "$err" ]]; then printf '%s\n' "$err" >&2; fi
  die "$desc failed (exit $rc). Fix the cause above and re-run."
}

up() {
  log "creating VPC $NETWORK"
  create_or_check "creating VPC $NETWORK" check_network \
    gcloud compute networks create "$NETWORK" --project="$PROJECT" --subnet-mode=custom \
    --description="$MARK"

  log "creating subnet $SUBNET ($HOST_NETWORK) in $REGION"
  create_or_check "creating subnet $SUBNET" check_subnet \
    gcloud compute networks subnets create "$SUBNET" --project="$PROJECT" \
    --network="$NETWORK" --region="$REGION" --range="$HOST_NETWORK" --description="$MARK"

  log "creating firewall rule $FIREWALL_EXTERNAL (SSH, API server from $EXTERNAL_SOURCE_RANGES to the VMs tagged $NODE_TAG)"
  create_or_check "creating firewall rule $FIREWALL_EXTERNAL" \
    check_firewall_external \
    gcloud compute firewall-rules create "$FIREWALL_EXTERNAL" --project="$PROJECT" \
    --network="$NETWORK" --direction=INGRESS --action=ALLOW --rules=tcp:22,tcp:6443 \
    --source-ranges="$EXTERNAL_SOURCE_RANGES" --target-tags="$NODE_TAG" --description="$MARK"

  # The pod range of the course (200.200.0.0/16) is public address space: the rule only
  # admits it towards internal destinations (node and pod addresses), never towards
  # the VMs' external IPs, and only on our VMs.
  local internal="$HOST_NETWORK,$POD_NETWORK"
  log "creating firewall rule $FIREWALL_INTERNAL (all traffic from $internal to $internal on the VMs tagged $NODE_TAG)"
  create_or_check "creating firewall rule $FIREWALL_INTERNAL" \
    check_firewall_internal \
    gcloud compute firewall-rules create "$FIREWALL_INTERNAL" --project="$PROJECT" \
    --network="$NETWORK" --direction=INGRESS --action=ALLOW --rules=all \
    --source-ranges="$internal" --destination-ranges="$internal" \
    --target-tags="$NODE_TAG" --description="$MARK"

  local node
  for node in "${NODES[@]}"; do
    log "creating VM $node ($MACHINE_TYPE, $IMAGE_FAMILY)"
    create_or_check "creating VM $node" "check_vm $node" \
      gcloud compute instances create "$node" --project="$PROJECT" --zone="$ZONE" \
      --machine-type="$MACHINE_TYPE" --subnet="$SUBNET" \
      --image-family="$IMAGE_FAMILY" --image-project="$IMAGE_PROJECT" \
      --boot-disk-size="$BOOT_DISK_SIZE" --can-ip-forward --tags="$NODE_TAG" \
      --labels="$LABEL_KEY=$LABEL_VALUE"
  done

  for node in "${NODES[@]}"; do
    wait_for_ssh "$node"
  done
  log "infrastructure is up. Next: scripts/kubernetes.sh up"
}

# delete_if_ours KIND NAME WANT DESCRIBE_CMD... -- DELETE_CMD...: describe (its output
# must equal WANT, the mark); delete if it matches; skip if it is gone or not ours.
delete_if_ours() {
  local kind=$1 name=$2 want=$3 describe=() got rc=0
  shift 3
  while [[ "$1" != -- ]]; do describe+=("$1"); shift; done
  shift
  got="$("${describe[@]}" 2>&1)" || rc=$?
  if ((rc != 0)); then
    if [[ "$got" == *"was not found"* ]]; then
      log "$kind $name is already gone"
      return 0
    fi
    printf '%s\n' "$got" >&2
    die "describing $kind $name failed (exit $rc)."
  fi
  got="${got##*$'\n'}" # the value is the last line (warnings come first)
  if [[ "$got" != "$want" ]]; then
    log "$kind $name was not created by '$SCRIPT_NAME up' (no mark '$want'): leaving it"
    return 0
  fi
  log "deleting $kind $name"
  run_step "deleting $kind $name" "$@"
}

down() {
  local i node rule
  for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
    node=${NODES[i]}
    delete_if_ours VM "$node" "$LABEL_VALUE" \
      gcloud compute instances describe "$node" --project="$PROJECT" --zone="$ZONE" \
      --format="value(labels.$LABEL_KEY)" -- \
      gcloud compute instances delete "$node" --project="$PROJECT" --zone="$ZONE" --quiet
  done
  for rule in "$FIREWALL_INTERNAL" "$FIREWALL_EXTERNAL"; do
    delete_if_ours "firewall rule" "$rule" "$MARK" \
      gcloud compute firewall-rules describe "$rule" --project="$PROJECT" --format='value(description)' -- \
      gcloud compute firewall-rules delete "$rule" --project="$PROJECT" --quiet
  done
  delete_if_ours subnet "$SUBNET" "$MARK" \
    gcloud compute networks subnets describe "$SUBNET" --project="$PROJECT" --region="$REGION" \
    --format='value(description)' -- \
    gcloud compute networks subnets delete "$SUBNET" --project="$PROJECT" --region="$REGION" --quiet
  delete_if_ours VPC "$NETWORK" "$MARK" \
    gcloud compute networks describe "$NETWORK" --project="$PROJECT" --format='value(description)' -- \
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
  [[ "$NODE_TAG" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "NODE_TAG='$NODE_TAG' is not a valid network tag."
  [[ "$SSH_RETRIES" =~ ^[1-9][0-9]*$ ]] || die "SSH_RETRIES='$SSH_RETRIES' must be a positive integer."
  if [[ "$1" == up ]]; then
    [[ -n "$EXTERNAL_SOURCE_RANGES" ]] || detect_public_ip
    need_source_ranges
  fi
  need_project
  "$1"
}

main "$@"
