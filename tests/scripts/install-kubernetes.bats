#!/usr/bin/env bats
# scripts/node/install-kubernetes.sh run against a throwaway ROOT, with the system
# commands (apt-get, modprobe, sysctl, systemctl, ...) replaced by a logging stub.

# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
load test_helper

setup() {
  common_setup
  NODE_SCRIPT="$REPO/scripts/node/install-kubernetes.sh"
  export ROOT="$BATS_TEST_TMPDIR/root"
  mkdir -p "$ROOT/etc"
  printf '%s\n' "LABEL=cloudimg-rootfs / ext4 defaults 0 1" "/swap.img none swap sw 0 0" \
    "# /old none swap sw 0 0" >"$ROOT/etc/fstab"
  local bin="$BATS_TEST_TMPDIR/sysbin" cmd
  mkdir -p "$bin"
  for cmd in swapoff modprobe sysctl apt-get apt-mark systemctl containerd curl gpg id; do
    ln -s "$STUBS/syscmd" "$bin/$cmd"
  done
  export PATH="$bin:$PATH"
}

expected_commands() {
  local minor=${1:-v1.34}
  cat <<CALLS
swapoff -a
modprobe overlay
modprobe br_netfilter
sysctl --system
apt-get update
apt-get install -y apt-transport-https ca-certificates curl gpg containerd
containerd config default
systemctl enable containerd
systemctl restart containerd
curl -fsSL --retry 3 -o <MKTEMP> https://pkgs.k8s.io/core:/stable:/$minor/deb/Release.key
gpg --batch --yes --dearmor -o <T>/root/etc/apt/keyrings/kubernetes-apt-keyring.gpg <MKTEMP>
apt-get update
apt-get install -y kubelet kubeadm kubectl
apt-mark hold kubelet kubeadm kubectl
systemctl enable --now kubelet
CALLS
}

@test "install-kubernetes: writes kernel, containerd and apt settings under ROOT, runs the system commands in order" {
  run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  expected_commands | assert_calls
  [ "$(cat "$ROOT/etc/modules-load.d/k8s.conf")" = "$(printf 'overlay\nbr_netfilter')" ]
  grep -qx 'net.bridge.bridge-nf-call-iptables = 1' "$ROOT/etc/sysctl.d/99-kubernetes.conf"
  grep -qx 'net.ipv4.ip_forward = 1' "$ROOT/etc/sysctl.d/99-kubernetes.conf"
  grep -q '^ *SystemdCgroup = true$' "$ROOT/etc/containerd/config.toml"
  run ! grep -q 'SystemdCgroup = false' "$ROOT/etc/containerd/config.toml"
  [ "$(cat "$ROOT/etc/apt/sources.list.d/kubernetes.list")" = \
    "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /" ]
  [ -s "$ROOT/etc/apt/keyrings/kubernetes-apt-keyring.gpg" ]
  grep -q 'runtime-endpoint: unix:///run/containerd/containerd.sock' "$ROOT/etc/crictl.yaml"
  # swap line commented out, the rest untouched
  [ "$(cat "$ROOT/etc/fstab")" = "$(printf '%s\n' "LABEL=cloudimg-rootfs / ext4 defaults 0 1" \
    "#/swap.img none swap sw 0 0" "# /old none swap sw 0 0")" ]
  assert_tmp_clean
}

@test "install-kubernetes: K8S_MINOR selects the pkgs.k8s.io repository" {
  K8S_MINOR=v1.33 run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  expected_commands v1.33 | assert_calls
  grep -q 'https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /' "$ROOT/etc/apt/sources.list.d/kubernetes.list"
}

@test "install-kubernetes: DRY_RUN=1 runs no system command, prints them, still writes files under ROOT" {
  DRY_RUN=1 run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  assert_no_calls
  assert_contains "$output" "+ apt-get install -y kubelet kubeadm kubectl"
  assert_contains "$output" "+ sysctl --system"
  [ -f "$ROOT/etc/sysctl.d/99-kubernetes.conf" ]
  [ -f "$ROOT/etc/apt/sources.list.d/kubernetes.list" ]
}

@test "install-kubernetes: a failing command stops the script with its name" {
  STUB_FAIL="apt-get install -y kubelet*" run --separate-stderr "$NODE_SCRIPT"
  assert_status 1
  assert_contains "$stderr" "install-kubernetes.sh: error: 'apt-get install -y kubelet kubeadm kubectl' failed (exit 1)"
  expected_commands | head -13 | assert_calls
  assert_tmp_clean
}

@test "install-kubernetes: refuses when SystemdCgroup cannot be set" {
  STUB_CONTAINERD_UNKNOWN=1 run --separate-stderr "$NODE_SCRIPT"
  assert_status 1
  assert_contains "$stderr" "could not set SystemdCgroup = true"
}

@test "install-kubernetes: refuses a bad K8S_MINOR, arguments, and non-root without ROOT" {
  K8S_MINOR=latest run --separate-stderr "$NODE_SCRIPT"
  assert_status 1
  assert_contains "$stderr" "K8S_MINOR='latest' must look like v1.34"
  run --separate-stderr "$NODE_SCRIPT" extra
  assert_status 2
  ROOT="" STUB_UID=1000 run --separate-stderr "$NODE_SCRIPT"
  assert_status 1
  assert_contains "$stderr" "must run as root (sudo)"
  assert_calls <<<"id -u"
}
