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
  for cmd in swapoff modprobe sysctl apt-get apt-mark systemctl containerd cloud-init curl gpg id; do
    ln -s "$STUBS/syscmd" "$bin/$cmd"
  done
  export PATH="$bin:$PATH"
}

expected_commands() {
  local minor=${1:-v1.36}
  cat <<CALLS
swapoff -a
modprobe overlay
modprobe br_netfilter
sysctl --system
cloud-init status --wait
apt-get -o DPkg::Lock::Timeout=600 update
apt-get -o DPkg::Lock::Timeout=600 install -y apt-transport-https ca-certificates curl gpg containerd nftables
containerd config default
systemctl enable containerd
systemctl restart containerd
curl -fsSL --retry 3 -o <MKTEMP> https://pkgs.k8s.io/core:/stable:/$minor/deb/Release.key
gpg --batch --yes --dearmor -o <T>/root/etc/apt/keyrings/kubernetes-apt-keyring.gpg <MKTEMP>
apt-get -o DPkg::Lock::Timeout=600 update
apt-get -o DPkg::Lock::Timeout=600 install -y kubelet kubeadm kubectl
apt-mark -o DPkg::Lock::Timeout=600 hold kubelet kubeadm kubectl
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
    "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.36/deb/ /" ]
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
  assert_contains "$output" "+ apt-get -o DPkg::Lock::Timeout=600 install -y kubelet kubeadm kubectl"
  assert_contains "$output" "+ sysctl --system"
  [ -f "$ROOT/etc/sysctl.d/99-kubernetes.conf" ]
  [ -f "$ROOT/etc/apt/sources.list.d/kubernetes.list" ]
}

@test "install-kubernetes: a failing command stops the script with its name" {
  STUB_FAIL="apt-get * install -y kubelet*" run --separate-stderr "$NODE_SCRIPT"
  assert_status 1
  assert_contains "$stderr" "install-kubernetes.sh: error: 'apt-get -o DPkg::Lock::Timeout=600 install -y kubelet kubeadm kubectl' failed (exit 1)"
  expected_commands | head -14 | assert_calls
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
  assert_contains "$stderr" "K8S_MINOR='latest' must look like v1.36"
  run --separate-stderr "$NODE_SCRIPT" extra
  assert_status 2
  ROOT="" STUB_UID=1000 run --separate-stderr "$NODE_SCRIPT"
  assert_status 1
  assert_contains "$stderr" "must run as root (sudo)"
  assert_calls <<<"id -u"
}

# runc_options CONFIG: the lines of the runc runtime's options table in CONFIG
runc_options() {
  awk '/^[[:space:]]*\[/ { in_t = ($0 ~ /containerd\.runtimes\.runc\.options\]/) ; next } in_t' "$1"
}

@test "install-kubernetes: containerd 1.7 default config (fixture): SystemdCgroup = false becomes true in the runc options" {
  STUB_CONTAINERD_CONFIG=1.7 run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  run runc_options "$ROOT/etc/containerd/config.toml"
  assert_contains "$output" "SystemdCgroup = true"
  [ "$(grep -c '^ *SystemdCgroup = ' "$ROOT/etc/containerd/config.toml")" -eq 1 ]
  # the rest of the default config is kept as it was
  diff <(grep -v '^ *SystemdCgroup = ' "$STUBS/../fixtures/containerd-1.7-default.toml") \
    <(grep -v '^ *SystemdCgroup = ' "$ROOT/etc/containerd/config.toml")
}

@test "install-kubernetes: containerd 2.x default config (fixture, no SystemdCgroup line): SystemdCgroup = true is added to the runc options" {
  STUB_CONTAINERD_CONFIG=2.x run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  run runc_options "$ROOT/etc/containerd/config.toml"
  assert_contains "$output" "            SystemdCgroup = true"
  [ "$(grep -c '^ *SystemdCgroup = ' "$ROOT/etc/containerd/config.toml")" -eq 1 ]
  diff <(grep -v '^ *SystemdCgroup = ' "$STUBS/../fixtures/containerd-2.x-default.toml") \
    <(grep -v '^ *SystemdCgroup = ' "$ROOT/etc/containerd/config.toml")
  # with python3's tomllib the result is valid TOML and the value sits where containerd reads it
  python3 - "$ROOT/etc/containerd/config.toml" <<'PY'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
opts = c["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]["options"]
assert opts["SystemdCgroup"] is True, opts
PY
}

@test "install-kubernetes: waits for cloud-init before apt, and apt waits for dpkg's lock" {
  run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  # cloud-init's wait comes before the first apt-get, every apt call has a lock timeout
  [ "$(grep -n -m1 '^cloud-init status --wait$' "$STUB_LOG" | cut -d: -f1)" -lt \
    "$(grep -n -m1 '^apt-get' "$STUB_LOG" | cut -d: -f1)" ]
  run grep -E '^apt-(get|mark) ' "$STUB_LOG"
  [ "$(grep -c . <<<"$output")" -eq 5 ]
  [ "$(grep -c -- '-o DPkg::Lock::Timeout=600 ' <<<"$output")" -eq 5 ]
}

@test "install-kubernetes: a lock still held (apt-get update's lists lock) is retried, bounded" {
  STUB_FAIL="apt-get * update" STUB_FAIL_TIMES=2 \
    STUB_FAIL_MSG="E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1234 (apt-get)" \
    run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  assert_contains "$output" "another apt/dpkg holds its lock (attempt 2/10)"
  expected_commands | awk '/ update$/ && !n++ { print; print } { print }' | assert_calls
  : >"$STUB_LOG"
  rm -f "$STUB_LOG.failcount"
  STUB_FAIL="apt-get * update" APT_LOCK_RETRIES=3 \
    STUB_FAIL_MSG="E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1234 (apt-get)" \
    run --separate-stderr "$NODE_SCRIPT"
  assert_status 1
  assert_contains "$stderr" "error: 'apt-get -o DPkg::Lock::Timeout=600 update' failed (exit 1)"
  [ "$(grep -c ' update$' "$STUB_LOG")" -eq 3 ]
}

@test "install-kubernetes: cloud-init with recoverable errors (exit 2) goes on; still running after the timeout stops" {
  STUB_CLOUD_INIT_RC=2 run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  assert_contains "$stderr" "cloud-init finished with recoverable errors"
  : >"$STUB_LOG"
  STUB_CLOUD_INIT_RC=124 run --separate-stderr "$NODE_SCRIPT"
  assert_status 1
  assert_contains "$stderr" "cloud-init was still running after 600s"
  expected_commands | head -5 | assert_calls
}

@test "install-kubernetes: installs nftables (the runner's firewall runs nft)" {
  run --separate-stderr "$NODE_SCRIPT"
  assert_status 0
  grep -qE '^apt-get .* install -y .*\bnftables\b' "$STUB_LOG"
}
