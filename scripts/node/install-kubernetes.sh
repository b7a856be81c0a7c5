#!/usr/bin/env bash
# install-kubernetes.sh: prepare one Ubuntu node for kubeadm (run as root on the node;
# scripts/kubernetes.sh copies it to every node and runs it with sudo).
#
#   - swap off (now and in /etc/fstab)
#   - kernel modules overlay + br_netfilter (loaded now, persisted in /etc/modules-load.d)
#   - net.bridge.bridge-nf-call-iptables=1, net.ipv4.ip_forward=1 (persisted in /etc/sysctl.d)
#   - waits for cloud-init (first boot runs apt), apt waits for the dpkg lock
#   - containerd with SystemdCgroup = true (containerd 1.x and 2.x config layouts)
#   - nftables (the runner's firewall runs the nft binary)
#   - kubelet, kubeadm, kubectl from pkgs.k8s.io, repository pinned to K8S_MINOR, held
#
# Re-runnable. For tests / inspection:
#   ROOT=/tmp/x   write every file under /tmp/x instead of / (no root needed)
#   DRY_RUN=1     print the system commands (apt-get, modprobe, sysctl, systemctl, ...)
#                 instead of running them; files are still written under ROOT
#   CLOUD_INIT_TIMEOUT (600 s), APT_LOCK_TIMEOUT (600 s), APT_LOCK_RETRIES (10),
#   APT_RETRY_SLEEP (30 s): the waits for cloud-init and for apt's locks
set -euo pipefail

K8S_MINOR="${K8S_MINOR:-v1.36}"
CLOUD_INIT_TIMEOUT="${CLOUD_INIT_TIMEOUT:-600}"
APT_LOCK_TIMEOUT="${APT_LOCK_TIMEOUT:-600}"
APT_LOCK_RETRIES="${APT_LOCK_RETRIES:-10}"
APT_RETRY_SLEEP="${APT_RETRY_SLEEP:-30}"
ROOT="${ROOT:-}"
DRY_RUN="${DRY_RUN:-0}"

SCRIPT_NAME="$(basename "$0")"
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}
log() { printf '==> %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# run CMD...: run a system command, or only print it with DRY_RUN=1.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ %s\n' "$*"
  else
    "$@" || die "'$*' failed (exit $?)"
  fi
}

# apt_run apt-get|apt-mark ARGS...: with a wait for dpkg's lock (DPkg::Lock::Timeout),
# and retried while another apt holds a lock the timeout does not cover (apt-get
# update's lists lock): "Could not get lock" / "Unable to acquire" / "Unable to lock".
apt_run() {
  local tool=$1
  shift
  local cmd=("$tool" -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" "$@")
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ %s\n' "${cmd[*]}"
    return 0
  fi
  local attempt rc out
  out="$(mktemp)"
  for ((attempt = 1; ; attempt++)); do
    rc=0
    "${cmd[@]}" 2>"$out" || rc=$?
    cat "$out" >&2
    ((rc == 0)) && break
    if grep -qE 'Could not get lock|Unable to acquire|Unable to lock' "$out" && ((attempt < APT_LOCK_RETRIES)); then
      log "another apt/dpkg holds its lock (attempt $attempt/$APT_LOCK_RETRIES): retrying in ${APT_RETRY_SLEEP}s"
      sleep "$APT_RETRY_SLEEP"
      continue
    fi
    rm -f "$out"
    die "'${cmd[*]}' failed (exit $rc)"
  done
  rm -f "$out"
}

# wait_cloud_init: on first boot cloud-init (and the apt runs it starts) holds apt's
# locks; wait until it is done, bounded by CLOUD_INIT_TIMEOUT.
wait_cloud_init() {
  if ! command -v cloud-init >/dev/null 2>&1; then
    log "no cloud-init on this node: not waiting for it"
    return 0
  fi
  log "waiting for cloud-init to finish (at most ${CLOUD_INIT_TIMEOUT}s)"
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ timeout %s cloud-init status --wait\n' "$CLOUD_INIT_TIMEOUT"
    return 0
  fi
  local rc=0
  timeout "$CLOUD_INIT_TIMEOUT" cloud-init status --wait >/dev/null || rc=$?
  case "$rc" in
    0) ;;
    2) warn "cloud-init finished with recoverable errors (status exit 2); going on" ;;
    124) die "cloud-init was still running after ${CLOUD_INIT_TIMEOUT}s (see 'cloud-init status --long'); re-run later or raise CLOUD_INIT_TIMEOUT" ;;
    *) warn "'cloud-init status --wait' exited $rc (cloud-init reports an error); going on, apt waits for its lock" ;;
  esac
}

# containerd_config: 'containerd config default' with the runc runtime's
# SystemdCgroup = true, in either layout: 1.x (version 2, plugin
# "io.containerd.grpc.v1.cri", which prints SystemdCgroup = false) or 2.x (version 3,
# plugin 'io.containerd.cri.v1.runtime', which does not print SystemdCgroup at all).
containerd_config() {
  local config
  config="$(containerd config default)" || die "'containerd config default' failed"
  # shellcheck disable=SC2016 # an awk program
  awk -v q="'" '
    BEGIN {
      runc = "^[[:space:]]*\\[plugins\\.(\"io\\.containerd\\.grpc\\.v1\\.cri\"|" q "io\\.containerd\\.cri\\.v1\\.runtime" q ")\\.containerd\\.runtimes\\.runc\\.options\\][[:space:]]*$"
    }
    /^[[:space:]]*\[/ {
      if (in_runc && !done) { print indent "SystemdCgroup = true"; done = 1 }
      in_runc = ($0 ~ runc)
      if (in_runc) { match($0, /^[[:space:]]*/); indent = substr($0, 1, RLENGTH) "  " }
      print
      next
    }
    in_runc && /^[[:space:]]*SystemdCgroup[[:space:]]*=/ {
      if (!done) { match($0, /^[[:space:]]*/); print substr($0, 1, RLENGTH) "SystemdCgroup = true"; done = 1 }
      next
    }
    { print }
    END {
      if (in_runc && !done) { print indent "SystemdCgroup = true"; done = 1 }
      if (!done) exit 3
    }
  ' <<<"$config" || die "could not set SystemdCgroup = true in /etc/containerd/config.toml: no runc options table in 'containerd config default' (unknown containerd config format)"
}

# write_file PATH MODE: stdin -> $ROOT$PATH, atomically.
write_file() {
  local dst="$ROOT$1" mode=$2 tmp
  mkdir -p "$(dirname "$dst")"
  tmp="$(mktemp "$dst.XXXXXX")"
  cat >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dst"
}

[[ $# -eq 0 ]] || {
  printf 'usage: [K8S_MINOR=v1.36] [ROOT=DIR] [DRY_RUN=1] %s\n' "$SCRIPT_NAME" >&2
  exit 2
}
[[ "$K8S_MINOR" =~ ^v1\.[0-9]+$ ]] || die "K8S_MINOR='$K8S_MINOR' must look like v1.36."
if [[ -z "$ROOT" && "$DRY_RUN" != 1 && "$(id -u)" != 0 ]]; then
  die "must run as root (sudo), or set ROOT=DIR / DRY_RUN=1 for a trial run."
fi

export DEBIAN_FRONTEND=noninteractive
KEYRING=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
REPO_URL="https://pkgs.k8s.io/core:/stable:/${K8S_MINOR}/deb/"

log "swap off"
run swapoff -a
if [[ -f "$ROOT/etc/fstab" ]]; then
  awk '!/^[[:space:]]*#/ && $3 == "swap" { print "#" $0; next } { print }' "$ROOT/etc/fstab" |
    write_file /etc/fstab 0644
fi

log "kernel modules overlay, br_netfilter"
printf 'overlay\nbr_netfilter\n' | write_file /etc/modules-load.d/k8s.conf 0644
run modprobe overlay
run modprobe br_netfilter

log "sysctl: bridge netfilter, IP forwarding"
write_file /etc/sysctl.d/99-kubernetes.conf 0644 <<'CONF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF
run sysctl --system

log "containerd, nftables"
wait_cloud_init
apt_run apt-get update
apt_run apt-get install -y apt-transport-https ca-certificates curl gpg containerd nftables
mkdir -p "$ROOT/etc/containerd"
if [[ "$DRY_RUN" == 1 ]]; then
  printf '+ containerd config default > %s (with SystemdCgroup = true)\n' "$ROOT/etc/containerd/config.toml"
else
  containerd_toml="$(containerd_config)"
  write_file /etc/containerd/config.toml 0644 <<<"$containerd_toml"
fi
write_file /etc/crictl.yaml 0644 <<'CONF'
runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
CONF
run systemctl enable containerd
run systemctl restart containerd

log "kubelet, kubeadm, kubectl from pkgs.k8s.io ($K8S_MINOR)"
mkdir -p "$ROOT/etc/apt/keyrings"
key_tmp="$(mktemp)"
trap 'rm -f "$key_tmp"' EXIT
run curl -fsSL --retry 3 -o "$key_tmp" "${REPO_URL}Release.key"
run gpg --batch --yes --dearmor -o "$ROOT$KEYRING" "$key_tmp"
printf 'deb [signed-by=%s] %s /\n' "$KEYRING" "$REPO_URL" |
  write_file /etc/apt/sources.list.d/kubernetes.list 0644
apt_run apt-get update
apt_run apt-get install -y kubelet kubeadm kubectl
apt_run apt-mark hold kubelet kubeadm kubectl
run systemctl enable --now kubelet
log "node ready for kubeadm"
