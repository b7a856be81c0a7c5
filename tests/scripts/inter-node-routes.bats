#!/usr/bin/env bats
# scripts/inter-node-routes.sh against stubbed gcloud/kubectl.

# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
load test_helper

setup() {
  common_setup
  SCRIPT="$REPO/scripts/inter-node-routes.sh"
}

P="--project=test-project"
MARK="--description=wasm-cni lab: created by scripts/inter-node-routes.sh up"

expected_up() {
  cat <<CALLS
gcloud config get-value project
gcloud auth list --filter=status:ACTIVE --format=value(account)
kubectl config get-contexts -o name
kubectl --context=my-k8s get node my-k8s-master -o jsonpath={.spec.podCIDR}
kubectl --context=my-k8s get node my-k8s-worker-1 -o jsonpath={.spec.podCIDR}
kubectl --context=my-k8s get node my-k8s-worker-2 -o jsonpath={.spec.podCIDR}
gcloud compute routes create my-k8s-master-pod-route $P --network=my-k8s-vpc --destination-range=200.200.0.0/24 --next-hop-instance=my-k8s-master --next-hop-instance-zone=europe-west1-b $MARK
gcloud compute routes create my-k8s-worker-1-pod-route $P --network=my-k8s-vpc --destination-range=200.200.1.0/24 --next-hop-instance=my-k8s-worker-1 --next-hop-instance-zone=europe-west1-b $MARK
gcloud compute routes create my-k8s-worker-2-pod-route $P --network=my-k8s-vpc --destination-range=200.200.2.0/24 --next-hop-instance=my-k8s-worker-2 --next-hop-instance-zone=europe-west1-b $MARK
CALLS
}

expected_down() {
  cat <<CALLS
gcloud config get-value project
gcloud auth list --filter=status:ACTIVE --format=value(account)
gcloud compute routes describe my-k8s-worker-2-pod-route $P --format=value(description)
gcloud compute routes delete my-k8s-worker-2-pod-route $P --quiet
gcloud compute routes describe my-k8s-worker-1-pod-route $P --format=value(description)
gcloud compute routes delete my-k8s-worker-1-pod-route $P --quiet
gcloud compute routes describe my-k8s-master-pod-route $P --format=value(description)
gcloud compute routes delete my-k8s-master-pod-route $P --quiet
CALLS
}

@test "inter-node-routes: usage on no/unknown arguments, exit 2" {
  for args in "" "create" "up down"; do
    # shellcheck disable=SC2086
    run --separate-stderr "$SCRIPT" $args
    assert_status 2
    assert_contains "$stderr" "usage: inter-node-routes.sh up|down"
  done
  assert_no_calls
}

@test "inter-node-routes up: one route per node, its podCIDR via its VM" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up | assert_calls
}

@test "inter-node-routes up: a node that never gets a podCIDR: bounded wait, then stop before any route is created" {
  STUB_NO_PODCIDR=my-k8s-worker-2 PODCIDR_RETRIES=2 run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "node my-k8s-worker-2 has no podCIDR yet (got '') after 2 attempts"
  { expected_up | head -6; expected_up | sed -n 6p; } | assert_calls
}

@test "inter-node-routes up: a podCIDR that appears late is waited for" {
  STUB_PODCIDR_LATE="my-k8s-worker-1 1" run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up | awk '/get node my-k8s-worker-1 / { print; print } { print }' | assert_calls
}

@test "inter-node-routes up: re-run: existing routes are checked (podCIDR, next hop) and kept" {
  STUB_FAIL="gcloud compute routes create *" STUB_FAIL_MSG=" - The resource 'projects/test-project/global/routes/x' already exists" \
    run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_contains "$output" "route my-k8s-worker-2-pod-route already exists (200.200.2.0/24 via my-k8s-worker-2): keeping it"
  expected_up | awk '{ print } / routes create / { print "gcloud compute routes describe " $5 " --project=test-project --format=value(destRange,nextHopInstance.basename())" }' | assert_calls
}

@test "inter-node-routes up: a kept route to an old podCIDR is reported, not trusted" {
  STUB_FAIL="gcloud compute routes create my-k8s-worker-1-pod-route *" STUB_FAIL_MSG=" - The resource 'x' already exists" \
    STUB_DESCRIBE_ROUTE='200.200.7.0/24\tmy-k8s-worker-1' run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "route my-k8s-worker-1-pod-route already exists but sends '200.200.7.0/24' to 'my-k8s-worker-1' (want 200.200.1.0/24 to my-k8s-worker-1"
  expected_up | head -8 | sed '$a gcloud compute routes describe my-k8s-worker-1-pod-route --project=test-project --format=value(destRange,nextHopInstance.basename())' | assert_calls
}

@test "inter-node-routes up: a failing route creation stops the script" {
  STUB_FAIL="gcloud compute routes create my-k8s-worker-1-pod-route *" STUB_FAIL_MSG="ERROR: quota exceeded" \
    run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "ERROR: quota exceeded"
  assert_contains "$stderr" "error: creating route my-k8s-worker-1-pod-route failed"
  expected_up | head -8 | assert_calls
}

@test "inter-node-routes up: fails early without the cluster's context" {
  STUB_NO_CONTEXT=1 run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "kubeconfig has no context 'my-k8s'"
  expected_up | head -3 | assert_calls
}

@test "inter-node-routes down: deletes the routes (reverse order)" {
  run --separate-stderr "$SCRIPT" down
  assert_status 0
  expected_down | assert_calls
}

@test "inter-node-routes down: routes already gone are skipped, other failures stop" {
  STUB_FAIL="gcloud compute routes describe *" STUB_FAIL_MSG=" - The resource 'x' was not found" \
    run --separate-stderr "$SCRIPT" down
  assert_status 0
  assert_contains "$output" "route my-k8s-master-pod-route is already gone"
  expected_down | grep -v " delete " | assert_calls
  : >"$STUB_LOG"
  STUB_FAIL="gcloud compute routes delete my-k8s-worker-2-pod-route *" run --separate-stderr "$SCRIPT" down
  assert_status 1
  assert_contains "$stderr" "error: deleting route my-k8s-worker-2-pod-route failed"
  expected_down | head -4 | assert_calls
}

@test "inter-node-routes down: a route that 'up' did not create (no mark) is left alone" {
  STUB_NOT_OURS=route run --separate-stderr "$SCRIPT" down
  assert_status 0
  assert_contains "$output" "route my-k8s-worker-1-pod-route was not created by 'inter-node-routes.sh up'"
  expected_down | grep -v " delete " | assert_calls
}

@test "inter-node-routes: fails early without gcloud, kubectl or a project" {
  PATH="$(path_without gcloud)" run --separate-stderr "$SCRIPT" down
  assert_status 1
  assert_contains "$stderr" "'gcloud' not found on PATH"
  PATH="$(path_without kubectl)" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "'kubectl' not found on PATH"
  assert_no_calls
  STUB_PROJECT="" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "no Google Cloud project set"
  assert_calls <<<"gcloud config get-value project"
}
