#!/usr/bin/env bats
# scripts/node/kubeadm-node.sh against a throwaway ROOT, with kubeadm, kubectl and
# openssl replaced by the logging stub (tests/scripts/stubs/syscmd).

# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
load test_helper

setup() {
  common_setup
  NODE_SCRIPT="$REPO/scripts/node/kubeadm-node.sh"
  export ROOT="$BATS_TEST_TMPDIR/root"
  mkdir -p "$ROOT/etc/kubernetes/pki"
  local bin="$BATS_TEST_TMPDIR/sysbin" cmd
  mkdir -p "$bin"
  for cmd in kubeadm kubectl openssl; do
    ln -s "$STUBS/syscmd" "$bin/$cmd"
  done
  export PATH="$bin:$PATH"
  TOKEN="abcdef.0123456789abcdef"
  HASH="sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  JOIN="kubeadm join 10.0.0.2:6443 --token $TOKEN --discovery-token-ca-cert-hash $HASH "
}

init_it() {
  run --separate-stderr "$NODE_SCRIPT" init --pod-network-cidr 200.200.0.0/16 --apiserver-san 203.0.113.10
}

K="kubectl --kubeconfig=<T>/root/etc/kubernetes/admin.conf --request-timeout=10s"
expected_checks() {
  cat <<CALLS
$K get --raw=/readyz
$K -n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}
$K -n kube-system get daemonset kube-proxy -o name
openssl x509 -noout -ext subjectAltName -in <T>/root/etc/kubernetes/pki/apiserver.crt
CALLS
}

@test "kubeadm-node init: a fresh master runs kubeadm init with the pod network, the SAN and its own version" {
  init_it
  assert_status 0
  assert_calls <<'CALLS'
kubeadm version -o short
kubeadm init --pod-network-cidr=200.200.0.0/16 --apiserver-cert-extra-sans=203.0.113.10 --kubernetes-version=v1.36.2
CALLS
}

@test "kubeadm-node init: re-run on a complete control plane: verified and kept, no kubeadm init" {
  touch "$ROOT/etc/kubernetes/admin.conf"
  init_it
  assert_status 0
  assert_contains "$output" "the control plane is complete (API server ready, pod network 200.200.0.0/16, certificate for 203.0.113.10): keeping it"
  expected_checks | assert_calls
}

@test "kubeadm-node init: a half-failed init (admin.conf but no addons phase) is not taken as done" {
  touch "$ROOT/etc/kubernetes/admin.conf"
  STUB_NODE_NO_KUBE_PROXY=1 init_it
  assert_status 1
  assert_contains "$stderr" "the control plane kept from an earlier 'kubeadm init' is not usable: it has no kube-proxy DaemonSet (kubeadm init stopped before its last phase, addons)"
  assert_contains "$stderr" "'sudo kubeadm reset --force'"
  run grep -c "kubeadm init" "$STUB_LOG"
  [ "$output" = 0 ]
}

@test "kubeadm-node init: an API server that never answers is reported after a bounded wait" {
  touch "$ROOT/etc/kubernetes/admin.conf"
  STUB_NODE_NOT_READY=1 READY_RETRIES=3 init_it
  assert_status 1
  assert_contains "$stderr" "its API server does not answer /readyz (after 3 attempts)"
  {
    for _ in 1 2 3; do echo "$K get --raw=/readyz"; done
    expected_checks | tail -1
  } | assert_calls
}

@test "kubeadm-node init: another pod network, a certificate without the current external IP: both named" {
  touch "$ROOT/etc/kubernetes/admin.conf"
  STUB_NODE_PODSUBNET=10.244.0.0/16 STUB_NODE_SANS=198.51.100.99 init_it
  assert_status 1
  assert_contains "$stderr" "its pod network is '10.244.0.0/16' (want 200.200.0.0/16); its API server certificate does not name 203.0.113.10 (the master's external IP changed?)"
}

@test "kubeadm-node join: the token comes on stdin and goes to kubeadm in a 0600 file, never in arguments" {
  run --separate-stderr "$NODE_SCRIPT" join <<<"$JOIN"
  assert_status 0
  run grep -c -- "$TOKEN" "$STUB_LOG"
  [ "$output" = 0 ]
  grep -qx "kubeadm join --config=<MKTEMP>" <(normalize <"$STUB_LOG")
  [ "$(cat "$STUB_LOG.joincfg")" = "$(cat <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "10.0.0.2:6443"
    token: "$TOKEN"
    caCertHashes:
      - "$HASH"
YAML
)" ]
  [ "$(cat "$STUB_LOG.joincfg.mode")" = 600 ]
  assert_tmp_clean # the config file is gone
}

@test "kubeadm-node join: kubeadm before 1.31 gets a v1beta3 JoinConfiguration" {
  STUB_KUBEADM_VERSION=v1.30.9 run --separate-stderr "$NODE_SCRIPT" join <<<"$JOIN"
  assert_status 0
  grep -qx "apiVersion: kubeadm.k8s.io/v1beta3" "$STUB_LOG.joincfg"
}

@test "kubeadm-node join: an already joined node is skipped; a malformed line is refused without echoing it" {
  touch "$ROOT/etc/kubernetes/kubelet.conf"
  run --separate-stderr "$NODE_SCRIPT" join <<<"$JOIN"
  assert_status 0
  assert_contains "$output" "this node already joined"
  assert_no_calls
  rm "$ROOT/etc/kubernetes/kubelet.conf"
  run --separate-stderr "$NODE_SCRIPT" join <<<"kubeadm join 10.0.0.2:6443 --token $TOKEN; reboot"
  assert_status 1
  assert_contains "$stderr" "does not have the expected form (not shown: it holds a token)"
  [[ "$stderr$output" != *"$TOKEN"* ]]
  assert_no_calls
}

@test "kubeadm-node join: a failing join says how to undo it" {
  STUB_FAIL="kubeadm join *" run --separate-stderr "$NODE_SCRIPT" join <<<"$JOIN"
  assert_status 1
  assert_contains "$stderr" "kubeadm join failed (exit 1). See above; 'sudo kubeadm reset --force' undoes a partial join."
  assert_tmp_clean
}
