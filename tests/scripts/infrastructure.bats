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

expected_up() {
  cat <<CALLS
gcloud config get-value project
gcloud auth list --filter=status:ACTIVE --format=value(account)
gcloud compute networks create my-k8s-vpc $P --subnet-mode=custom
gcloud compute networks subnets create my-k8s-subnet $P --network=my-k8s-vpc --region=europe-west1 --range=10.0.0.0/16
gcloud compute firewall-rules create my-k8s-vpc-allow-external $P --network=my-k8s-vpc --direction=INGRESS --action=ALLOW --rules=tcp:22,tcp:6443 --source-ranges=0.0.0.0/0
gcloud compute firewall-rules create my-k8s-vpc-allow-internal $P --network=my-k8s-vpc --direction=INGRESS --action=ALLOW --rules=all --source-ranges=10.0.0.0/16,200.200.0.0/16
gcloud compute instances create my-k8s-master $P $Z --machine-type=e2-medium --subnet=my-k8s-subnet --image-family=ubuntu-2404-lts-amd64 --image-project=ubuntu-os-cloud --boot-disk-size=20GB --can-ip-forward
gcloud compute instances create my-k8s-worker-1 $P $Z --machine-type=e2-medium --subnet=my-k8s-subnet --image-family=ubuntu-2404-lts-amd64 --image-project=ubuntu-os-cloud --boot-disk-size=20GB --can-ip-forward
gcloud compute instances create my-k8s-worker-2 $P $Z --machine-type=e2-medium --subnet=my-k8s-subnet --image-family=ubuntu-2404-lts-amd64 --image-project=ubuntu-os-cloud --boot-disk-size=20GB --can-ip-forward
gcloud compute ssh my-k8s-master $P $Z --quiet --ssh-flag=-oConnectTimeout=10 --command=true
gcloud compute ssh my-k8s-worker-1 $P $Z --quiet --ssh-flag=-oConnectTimeout=10 --command=true
gcloud compute ssh my-k8s-worker-2 $P $Z --quiet --ssh-flag=-oConnectTimeout=10 --command=true
CALLS
}

expected_down() {
  cat <<CALLS
gcloud config get-value project
gcloud auth list --filter=status:ACTIVE --format=value(account)
gcloud compute instances delete my-k8s-worker-2 $P $Z --quiet
gcloud compute instances delete my-k8s-worker-1 $P $Z --quiet
gcloud compute instances delete my-k8s-master $P $Z --quiet
gcloud compute firewall-rules delete my-k8s-vpc-allow-internal $P --quiet
gcloud compute firewall-rules delete my-k8s-vpc-allow-external $P --quiet
gcloud compute networks subnets delete my-k8s-subnet $P --region=europe-west1 --quiet
gcloud compute networks delete my-k8s-vpc $P --quiet
CALLS
}

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
    EXTERNAL_SOURCE_RANGES=198.51.100.7/32 PROJECT=other-project \
    run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_calls <<'CALLS'
gcloud auth list --filter=status:ACTIVE --format=value(account)
gcloud compute networks create lab --project=other-project --subnet-mode=custom
gcloud compute networks subnets create lab-sub --project=other-project --network=lab --region=us-central1 --range=10.1.0.0/16
gcloud compute firewall-rules create lab-allow-external --project=other-project --network=lab --direction=INGRESS --action=ALLOW --rules=tcp:22,tcp:6443 --source-ranges=198.51.100.7/32
gcloud compute firewall-rules create lab-allow-internal --project=other-project --network=lab --direction=INGRESS --action=ALLOW --rules=all --source-ranges=10.1.0.0/16,10.244.0.0/16
gcloud compute instances create m --project=other-project --zone=us-central1-a --machine-type=e2-standard-2 --subnet=lab-sub --image-family=ubuntu-2404-lts-amd64 --image-project=ubuntu-os-cloud --boot-disk-size=20GB --can-ip-forward
gcloud compute instances create w1 --project=other-project --zone=us-central1-a --machine-type=e2-standard-2 --subnet=lab-sub --image-family=ubuntu-2404-lts-amd64 --image-project=ubuntu-os-cloud --boot-disk-size=20GB --can-ip-forward
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
  expected_up | head -4 | assert_calls
}

@test "infrastructure up: a failing VM creation stops before the next VM" {
  STUB_FAIL="gcloud compute instances create my-k8s-worker-1 *" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "error: creating VM my-k8s-worker-1 failed"
  expected_up | head -8 | assert_calls
}

@test "infrastructure up: resources that already exist are kept (re-run after a partial up)" {
  STUB_FAIL="gcloud compute networks create *" \
    STUB_FAIL_MSG=" - The resource 'projects/test-project/global/networks/my-k8s-vpc' already exists" \
    run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_contains "$output" "VPC my-k8s-vpc already exists, keeping it"
  expected_up | assert_calls
}

@test "infrastructure up: SSH wait retries (bounded) until the VM answers" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 *" STUB_FAIL_TIMES=2 SSH_RETRIES=5 \
    run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_contains "$output" "my-k8s-worker-1: SSH not ready yet (attempt 2/5)"
  { expected_up | head -11; expected_up | sed -n 11p; expected_up | sed -n '11,$p'; } | assert_calls
}

@test "infrastructure up: gives up after SSH_RETRIES attempts with a message" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 *" SSH_RETRIES=3 run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "my-k8s-worker-1 did not answer SSH after 3 attempts"
  { expected_up | head -11; expected_up | sed -n 11p; expected_up | sed -n 11p; } | assert_calls
}

@test "infrastructure down: deletes VMs, firewall rules, subnet, VPC (reverse order)" {
  run --separate-stderr "$SCRIPT" down
  assert_status 0
  expected_down | assert_calls
}

@test "infrastructure down: already-absent resources are skipped" {
  STUB_FAIL="gcloud compute * delete *" \
    STUB_FAIL_MSG=" - The resource 'projects/test-project/x' was not found" \
    run --separate-stderr "$SCRIPT" down
  assert_status 0
  assert_contains "$output" "VM my-k8s-master is already gone"
  assert_contains "$output" "VPC my-k8s-vpc is already gone"
  expected_down | assert_calls
}

@test "infrastructure down: any other failure stops the script" {
  STUB_FAIL="gcloud compute firewall-rules delete my-k8s-vpc-allow-internal *" \
    STUB_FAIL_MSG="ERROR: permission denied" run --separate-stderr "$SCRIPT" down
  assert_status 1
  assert_contains "$stderr" "ERROR: permission denied"
  assert_contains "$stderr" "error: deleting firewall rule my-k8s-vpc-allow-internal failed"
  expected_down | head -6 | assert_calls
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
  assert_calls <<<"gcloud config get-value project"
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
  expected_up | head -2 | assert_calls
}
