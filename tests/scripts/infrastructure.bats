#!/usr/bin/env bats
# scripts/infrastructure.sh against stubbed gcloud (no cloud involved).

# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
load test_helper

setup() {
  common_setup
  SCRIPT="$REPO/scripts/infrastructure.sh"
}

P="--project=test-project"
Z="--zone=europe-west1-b"
MARK="--description=wasm-cni lab: created by scripts/infrastructure.sh up"
VM_FLAGS="--machine-type=e2-medium --subnet=my-k8s-subnet --image-family=ubuntu-2404-lts-amd64 --image-project=ubuntu-os-cloud --boot-disk-size=20GB --can-ip-forward --tags=my-k8s-vpc-node --labels=created_by=wasm-cni"
CURL="curl -4 -fsS --max-time 10 https://checkip.amazonaws.com"

expected_up() {
  cat <<CALLS
$CURL
gcloud config get-value project
gcloud auth list --filter=status:ACTIVE --format=value(account)
gcloud compute networks create my-k8s-vpc $P --subnet-mode=custom $MARK
gcloud compute networks subnets create my-k8s-subnet $P --network=my-k8s-vpc --region=europe-west1 --range=10.0.0.0/16 $MARK
gcloud compute firewall-rules create my-k8s-vpc-allow-external $P --network=my-k8s-vpc --direction=INGRESS --action=ALLOW --rules=tcp:22,tcp:6443 --source-ranges=198.51.100.23/32 --target-tags=my-k8s-vpc-node $MARK
gcloud compute firewall-rules create my-k8s-vpc-allow-internal $P --network=my-k8s-vpc --direction=INGRESS --action=ALLOW --rules=all --source-ranges=10.0.0.0/16,200.200.0.0/16 --destination-ranges=10.0.0.0/16,200.200.0.0/16 --target-tags=my-k8s-vpc-node $MARK
gcloud compute instances create my-k8s-master $P $Z $VM_FLAGS
gcloud compute instances create my-k8s-worker-1 $P $Z $VM_FLAGS
gcloud compute instances create my-k8s-worker-2 $P $Z $VM_FLAGS
gcloud compute ssh my-k8s-master $P $Z --quiet --ssh-flag=-oConnectTimeout=10 --command=true
gcloud compute ssh my-k8s-worker-1 $P $Z --quiet --ssh-flag=-oConnectTimeout=10 --command=true
gcloud compute ssh my-k8s-worker-2 $P $Z --quiet --ssh-flag=-oConnectTimeout=10 --command=true
CALLS
}

# check_calls KIND [NODE]: the describe calls that check a resource that exists already
check_calls() {
  case "$1" in
    network) echo "gcloud compute networks describe my-k8s-vpc $P --format=value(autoCreateSubnetworks)" ;;
    subnet) echo "gcloud compute networks subnets describe my-k8s-subnet $P --region=europe-west1 --format=value(network.basename(),ipCidrRange)" ;;
    fw-*) echo "gcloud compute firewall-rules describe my-k8s-vpc-allow-${1#fw-} $P --format=value(network.basename(),sourceRanges.list(),destinationRanges.list(),targetTags.list())" ;;
    vm)
      echo "gcloud compute instances describe $2 $P $Z --format=value(canIpForward,networkInterfaces[0].subnetwork.basename(),tags.items.list(),disks[0].source.basename())"
      echo "gcloud compute disks describe $2 $P $Z --format=value(sourceImage)"
      echo "gcloud compute images describe ubuntu-2404-noble-amd64-v20251120 --project=ubuntu-os-cloud --format=value(family)"
      ;;
  esac
}

# expected_rerun: up when every resource exists already (and fits)
expected_rerun() {
  expected_up | sed -n 1,4p
  check_calls network
  expected_up | sed -n 5p
  check_calls subnet
  expected_up | sed -n 6p
  check_calls fw-external
  expected_up | sed -n 7p
  check_calls fw-internal
  local n=8 node
  for node in my-k8s-master my-k8s-worker-1 my-k8s-worker-2; do
    expected_up | sed -n "${n}p"
    check_calls vm "$node"
    n=$((n + 1))
  done
  expected_up | sed -n '11,$p'
}

expected_down() {
  local node rule
  echo "gcloud config get-value project"
  echo "gcloud auth list --filter=status:ACTIVE --format=value(account)"
  for node in my-k8s-worker-2 my-k8s-worker-1 my-k8s-master; do
    echo "gcloud compute instances describe $node $P $Z --format=value(labels.created_by)"
    echo "gcloud compute instances delete $node $P $Z --quiet"
  done
  for rule in my-k8s-vpc-allow-internal my-k8s-vpc-allow-external; do
    echo "gcloud compute firewall-rules describe $rule $P --format=value(description)"
    echo "gcloud compute firewall-rules delete $rule $P --quiet"
  done
  echo "gcloud compute networks subnets describe my-k8s-subnet $P --region=europe-west1 --format=value(description)"
  echo "gcloud compute networks subnets delete my-k8s-subnet $P --region=europe-west1 --quiet"
  echo "gcloud compute networks describe my-k8s-vpc $P --format=value(description)"
  echo "gcloud compute networks delete my-k8s-vpc $P --quiet"
}

ALREADY=" - The resource 'projects/test-project/x' already exists"

@test "infrastructure: no argument prints usage and exits 2" {
  run --separate-stderr "$SCRIPT"
  assert_status 2
  assert_contains "$stderr" "usage: infrastructure.sh up|down"
  assert_no_calls
}

@test "infrastructure: unknown or extra arguments print usage and exit 2" {
  for args in "sideways" "up now" "--help" "UP"; do
    # shellcheck disable=SC2086
    run --separate-stderr "$SCRIPT" $args
    assert_status 2
    assert_contains "$stderr" "usage:"
  done
  assert_no_calls
}

@test "infrastructure up: creates network, subnet, firewall, VMs in order, then waits for SSH" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up | assert_calls
}

@test "infrastructure up: settings come from the environment" {
  ZONE=us-central1-a REGION=us-central1 MACHINE_TYPE=e2-standard-2 NETWORK=lab SUBNET=lab-sub \
    HOST_NETWORK=10.1.0.0/16 POD_NETWORK=10.244.0.0/16 MASTER=m WORKERS="w1" \
    EXTERNAL_SOURCE_RANGES=198.51.100.7/32,192.0.2.0/24 PROJECT=other-project \
    run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_calls <<'CALLS'
gcloud auth list --filter=status:ACTIVE --format=value(account)
gcloud compute networks create lab --project=other-project --subnet-mode=custom --description=wasm-cni lab: created by scripts/infrastructure.sh up
gcloud compute networks subnets create lab-sub --project=other-project --network=lab --region=us-central1 --range=10.1.0.0/16 --description=wasm-cni lab: created by scripts/infrastructure.sh up
gcloud compute firewall-rules create lab-allow-external --project=other-project --network=lab --direction=INGRESS --action=ALLOW --rules=tcp:22,tcp:6443 --source-ranges=198.51.100.7/32,192.0.2.0/24 --target-tags=lab-node --description=wasm-cni lab: created by scripts/infrastructure.sh up
gcloud compute firewall-rules create lab-allow-internal --project=other-project --network=lab --direction=INGRESS --action=ALLOW --rules=all --source-ranges=10.1.0.0/16,10.244.0.0/16 --destination-ranges=10.1.0.0/16,10.244.0.0/16 --target-tags=lab-node --description=wasm-cni lab: created by scripts/infrastructure.sh up
gcloud compute instances create m --project=other-project --zone=us-central1-a --machine-type=e2-standard-2 --subnet=lab-sub --image-family=ubuntu-2404-lts-amd64 --image-project=ubuntu-os-cloud --boot-disk-size=20GB --can-ip-forward --tags=lab-node --labels=created_by=wasm-cni
gcloud compute instances create w1 --project=other-project --zone=us-central1-a --machine-type=e2-standard-2 --subnet=lab-sub --image-family=ubuntu-2404-lts-amd64 --image-project=ubuntu-os-cloud --boot-disk-size=20GB --can-ip-forward --tags=lab-node --labels=created_by=wasm-cni
gcloud compute ssh m --project=other-project --zone=us-central1-a --quiet --ssh-flag=-oConnectTimeout=10 --command=true
gcloud compute ssh w1 --project=other-project --zone=us-central1-a --quiet --ssh-flag=-oConnectTimeout=10 --command=true
CALLS
}

@test "infrastructure up: a failing step stops the script with a message, later calls are not made" {
  STUB_FAIL="gcloud compute networks subnets create *" STUB_FAIL_MSG="ERROR: quota exceeded" \
    run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "ERROR: quota exceeded"
  assert_contains "$stderr" "infrastructure.sh: error: creating subnet my-k8s-subnet failed"
  expected_up | head -5 | assert_calls
}

@test "infrastructure up: a failing VM creation stops before the next VM" {
  STUB_FAIL="gcloud compute instances create my-k8s-worker-1 *" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "error: creating VM my-k8s-worker-1 failed"
  expected_up | head -9 | assert_calls
}

@test "infrastructure up: a VPC that already exists is checked and kept (re-run after a partial up)" {
  STUB_FAIL="gcloud compute networks create *" \
    STUB_FAIL_MSG=" - The resource 'projects/test-project/global/networks/my-k8s-vpc' already exists" \
    run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_contains "$output" "VPC my-k8s-vpc already exists and is a custom-mode VPC: keeping it"
  { expected_up | head -4; check_calls network; expected_up | tail -n +5; } | assert_calls
}

@test "infrastructure up: re-run when everything exists: every resource is checked, then kept" {
  STUB_FAIL="gcloud compute * create *" STUB_FAIL_MSG="$ALREADY" run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_rerun | assert_calls
  assert_contains "$output" "subnet my-k8s-subnet already exists with network my-k8s-vpc and range 10.0.0.0/16: keeping it"
  assert_contains "$output" "firewall rule my-k8s-vpc-allow-internal already exists as wanted: keeping it"
  assert_contains "$output" "VM my-k8s-worker-2 already exists with IP forwarding, subnet my-k8s-subnet and image family ubuntu-2404-lts-amd64: keeping it"
}

@test "infrastructure up: a kept VM without IP forwarding, in another subnet, untagged: stop, saying what differs" {
  STUB_FAIL="gcloud compute * create *" STUB_FAIL_MSG="$ALREADY" STUB_ODD_VM=my-k8s-worker-1 \
    STUB_DESCRIBE_VM='False\tdefault\t\tmy-k8s-worker-1' run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "VM my-k8s-worker-1 already exists but differs from what 'infrastructure.sh up' creates: canIpForward is 'False' (want 'True'); its subnet is 'default' (want 'my-k8s-subnet'); its network tags are '' (want them to include 'my-k8s-vpc-node')"
  assert_contains "$stderr" "gcloud compute instances delete my-k8s-worker-1 --zone=europe-west1-b"
  # stops there: no later VM, no SSH wait
  expected_rerun | sed '/instances create my-k8s-worker-2/,$d' | assert_calls
}

@test "infrastructure up: a kept VM from another image family: stop, naming it" {
  STUB_FAIL="gcloud compute instances create *" STUB_FAIL_MSG="$ALREADY" STUB_IMAGE_FAMILY=debian-12 \
    run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "VM my-k8s-master already exists but differs from what 'infrastructure.sh up' creates: its image family is 'ubuntu-os-cloud/debian-12' (want 'ubuntu-os-cloud/ubuntu-2404-lts-amd64')"
  { expected_up | head -8; check_calls vm my-k8s-master; } | assert_calls
}

@test "infrastructure up: a kept subnet with another range, a kept auto-mode VPC: stop, saying what differs" {
  STUB_FAIL="gcloud compute networks subnets create *" STUB_FAIL_MSG="$ALREADY" \
    STUB_DESCRIBE_SUBNET='my-k8s-vpc\t10.128.0.0/20' run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "subnet my-k8s-subnet already exists but differs from what 'infrastructure.sh up' creates: its range is '10.128.0.0/20' (want '10.0.0.0/16')"
  { expected_up | head -5; check_calls subnet; } | assert_calls
  : >"$STUB_LOG"
  STUB_FAIL="gcloud compute networks create *" STUB_FAIL_MSG="$ALREADY" STUB_DESCRIBE_NETWORK=True \
    run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "VPC my-k8s-vpc already exists but differs from what 'infrastructure.sh up' creates: autoCreateSubnetworks is 'True' (want 'False')"
}

@test "infrastructure up: a kept SSH rule for another address (your IP changed): stop, saying how to update it" {
  STUB_FAIL="gcloud compute firewall-rules create *" STUB_FAIL_MSG="$ALREADY" \
    STUB_DESCRIBE_FW_EXTERNAL='my-k8s-vpc\t0.0.0.0/0\t\t' run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "firewall rule my-k8s-vpc-allow-external already exists but differs from what 'infrastructure.sh up' creates: its source ranges is '0.0.0.0/0' (want '198.51.100.23/32'); its target tags is '' (want 'my-k8s-vpc-node')"
  assert_contains "$stderr" "gcloud compute firewall-rules update my-k8s-vpc-allow-external"
  { expected_up | head -6; check_calls fw-external; } | assert_calls
}

@test "infrastructure up: a kept allow-internal rule open to every destination (the old rule) is refused" {
  STUB_FAIL="gcloud compute firewall-rules create my-k8s-vpc-allow-internal *" STUB_FAIL_MSG="$ALREADY" \
    STUB_DESCRIBE_FW_INTERNAL='my-k8s-vpc\t10.0.0.0/16;200.200.0.0/16\t\t' run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "its destination ranges is '' (want '10.0.0.0/16,200.200.0.0/16')"
}

@test "infrastructure up: SSH wait retries (bounded) until the VM answers" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 *" STUB_FAIL_TIMES=2 SSH_RETRIES=5 \
    run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_contains "$output" "my-k8s-worker-1: SSH not ready yet (attempt 2/5)"
  { expected_up | head -12; expected_up | sed -n 12p; expected_up | sed -n '12,$p'; } | assert_calls
}

@test "infrastructure up: gives up after SSH_RETRIES attempts, printing SSH's last error" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 *" SSH_RETRIES=3 \
    STUB_FAIL_MSG="ssh: connect to host 34.76.1.2 port 22: Connection timed out" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "last SSH error from my-k8s-worker-1:
ssh: connect to host 34.76.1.2 port 22: Connection timed out"
  assert_contains "$stderr" "my-k8s-worker-1 did not answer SSH after 3 attempts (last error above)"
  assert_contains "$stderr" "firewall rule my-k8s-vpc-allow-external (source ranges 198.51.100.23/32)"
  { expected_up | head -12; expected_up | sed -n 12p; expected_up | sed -n 12p; } | assert_calls
}

@test "infrastructure up: SSH and the API server are open to the caller's detected public /32 only" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_contains "$output" "reachable from your public IP only: 198.51.100.23/32 (EXTERNAL_SOURCE_RANGES overrides)"
  grep -q -- "allow-external .*--source-ranges=198.51.100.23/32 --target-tags=my-k8s-vpc-node" "$STUB_LOG"
  run grep -c -- "0.0.0.0/0" "$STUB_LOG"
  [ "$output" = 0 ]
}

@test "infrastructure up: no public IP detected: stop before any cloud call, saying how to set it" {
  STUB_FAIL="curl *" STUB_FAIL_MSG="curl: (6) Could not resolve host" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "could not detect your public IPv4 address from https://checkip.amazonaws.com"
  assert_contains "$stderr" "Set EXTERNAL_SOURCE_RANGES=YOUR.IP/32"
  assert_calls <<<"$CURL"
  STUB_PUBLIC_IP="<html>rate limited</html>" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "got '<html>ratelimited</html>'"
}

@test "infrastructure up: EXTERNAL_SOURCE_RANGES: validated, 0.0.0.0/0 allowed with a warning" {
  EXTERNAL_SOURCE_RANGES=198.51.100.7 run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "EXTERNAL_SOURCE_RANGES: '198.51.100.7' is not an IPv4 CIDR"
  assert_no_calls
  EXTERNAL_SOURCE_RANGES=0.0.0.0/0 run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_contains "$stderr" "warning: EXTERNAL_SOURCE_RANGES contains 0.0.0.0/0: SSH and the API server are open to the whole internet"
  grep -q -- "--source-ranges=0.0.0.0/0 --target-tags=my-k8s-vpc-node" "$STUB_LOG"
  run grep -c "^curl" "$STUB_LOG"
  [ "$output" = 0 ]
}

@test "infrastructure up: the allow-all rule admits the pod range only to internal destinations, only on the lab's VMs" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  run grep -- "firewall-rules create my-k8s-vpc-allow-internal" "$STUB_LOG"
  assert_contains "$output" "--source-ranges=10.0.0.0/16,200.200.0.0/16 --destination-ranges=10.0.0.0/16,200.200.0.0/16 --target-tags=my-k8s-vpc-node"
  run grep -c -- "instances create .*--tags=my-k8s-vpc-node" "$STUB_LOG"
  [ "$output" = 3 ]
}

@test "infrastructure down: deletes VMs, firewall rules, subnet, VPC (reverse order)" {
  run --separate-stderr "$SCRIPT" down
  assert_status 0
  expected_down | assert_calls
}

@test "infrastructure down: already-absent resources are skipped" {
  STUB_FAIL="gcloud compute * describe *" \
    STUB_FAIL_MSG="ERROR: (gcloud.compute.x.describe) Could not fetch resource: - The resource 'projects/test-project/x' was not found" \
    run --separate-stderr "$SCRIPT" down
  assert_status 0
  assert_contains "$output" "VM my-k8s-master is already gone"
  assert_contains "$output" "VPC my-k8s-vpc is already gone"
  expected_down | grep -v " delete " | assert_calls
}

@test "infrastructure down: deletes only what 'up' created (label / description mark); a pre-existing VPC and VM stay" {
  STUB_NOT_OURS="network vm" run --separate-stderr "$SCRIPT" down
  assert_status 0
  assert_contains "$output" "VPC my-k8s-vpc was not created by 'infrastructure.sh up'"
  assert_contains "$output" "VM my-k8s-master was not created by 'infrastructure.sh up'"
  expected_down | grep -v -e "instances delete" -e "networks delete my-k8s-vpc" | assert_calls
}

@test "infrastructure down: any other failure stops the script" {
  STUB_FAIL="gcloud compute firewall-rules delete my-k8s-vpc-allow-internal *" \
    STUB_FAIL_MSG="ERROR: permission denied" run --separate-stderr "$SCRIPT" down
  assert_status 1
  assert_contains "$stderr" "ERROR: permission denied"
  assert_contains "$stderr" "error: deleting firewall rule my-k8s-vpc-allow-internal failed"
  expected_down | head -10 | assert_calls
  : >"$STUB_LOG"
  STUB_FAIL="gcloud compute instances describe my-k8s-worker-1 *" \
    STUB_FAIL_MSG="ERROR: permission denied" run --separate-stderr "$SCRIPT" down
  assert_status 1
  assert_contains "$stderr" "error: describing VM my-k8s-worker-1 failed"
  expected_down | head -5 | assert_calls
}

@test "infrastructure: fails early when gcloud is not installed" {
  PATH="$(path_without gcloud)" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "'gcloud' not found on PATH. Install the Google Cloud CLI"
  assert_no_calls
}

@test "infrastructure: fails early when no project is set" {
  STUB_PROJECT="" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "no Google Cloud project set. Run 'gcloud config set project PROJECT_ID'"
  printf '%s\n' "$CURL" "gcloud config get-value project" | assert_calls
}

@test "infrastructure: rejects a malformed CIDR before any call" {
  HOST_NETWORK=10.0.0.0/99 run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "HOST_NETWORK='10.0.0.0/99' is not an IPv4 CIDR"
  assert_no_calls
}

@test "infrastructure: fails early when gcloud has no active account" {
  STUB_ACCOUNT="" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "no active gcloud account. Run 'gcloud auth login'"
  expected_up | head -3 | assert_calls
}
