#!/usr/bin/env bash
# install-kubernetes.sh: prepare one Ubuntu node for kubeadm (run as root on the node;
# scripts/kubernetes.sh copies it to every node and runs it with sudo).
#
#   - swap off (now and in /etc/fstab)
#   - kernel modules overlay + br_netfilter (loaded now, persisted in /etc/modules-load.d)
#   - net.bridge.bridge-nf-call-iptables=1, net.ipv4.ip_forward=1 (persisted in /etc/sysctl.d)
#   - containerd with SystemdCgroup = true
#   - kubelet, kubeadm, kubectl from pkgs.k8s.io, repository pinned to K8S_MINOR, held
#
# Re-runnable. For tests / inspection:
#   ROOT=/tmp/x   write every file under /tmp/x instead of / (no root needed)
#   DRY_RUN=1     print the system commands (apt-get, modprobe, sysctl, systemctl, ...)
#                 instead of running them; files are still written under ROOT
set -euo pipefail

K8S_MINOR="${K8S_MINOR:-v1.34}"
ROOT="${ROOT:-}"
DRY_RUN="${DRY_RUN:-0}"

SCRIPT_NAME="$(basename "$0")"
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}
log() { printf '==> %s\n' "$*"; }

# run CMD...: run a system command, or only print it with DRY_RUN=1.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ %s\n' "$*"
  else
    "$@" || die "'$*' failed (exit $?)"
  fi
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
  printf 'usage: [K8S_MINOR=v1.34] [ROOT=DIR] [DRY_RUN=1] %s\n' "$SCRIPT_NAME" >&2
  exit 2
}
[[ "$K8S_MINOR" =~ ^v1\.[0-9]+$ ]] || die "K8S_MINOR='$K8S_MINOR' must look like v1.34."
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

log "containerd"
run apt-get update
run apt-get install -y apt-transport-https ca-certificates curl gpg containerd
mkdir -p "$ROOT/etc/containerd"
if [[ "$DRY_RUN" == 1 ]]; then
  printf '+ containerd config default > %s (with SystemdCgroup = true)\n' "$ROOT/etc/containerd/config.toml"
else
  default_config="$(containerd config default)" || die "'containerd config default' failed"
  sed 's/SystemdCgroup = false/SystemdCgroup = true/' <<<"$default_config" |
    write_file /etc/containerd/config.toml 0644
  grep -q 'SystemdCgroup = true' "$ROOT/etc/containerd/config.toml" ||
    die "could not set SystemdCgroup = true in /etc/containerd/config.toml (unknown containerd config format)"
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
run apt-get update
run apt-get install -y kubelet kubeadm kubectl
run apt-mark hold kubelet kubeadm kubectl
run systemctl enable --now kubelet
log "node ready for kubeadm"
