#!/usr/bin/env bash
# Install what building, testing and the offline lab need on a fresh Debian machine:
# Debian packages (only those missing), the wasm32-wasip2 Rust target, and the pinned
# toolchains of the C and Python guests (scripts/guest-tools.sh).
set -euo pipefail

packages=(
  containernetworking-plugins  # reference plugins (benchmark baseline, loopback for containerd)
  iproute2 iputils-ping        # ip netns, ping
  nftables iptables            # nft is what the runner's firewall host functions call
  jq bats shellcheck           # tests
  python3-yaml gcc libc6-dev   # script tests: pods.yaml check, a stand-in x86-64 runner ELF
  podman runc uidmap           # the offline lab's container runtime
  busybox-static               # tiny images built offline
  containerd                   # the kubelet path tests
  protobuf-compiler            # the CRI client's build
  procps psmisc                # pgrep/fuser in clean-up paths
  skopeo apache2-utils openssl # registry tests: another client, htpasswd, a self-signed CA
  docker-registry              # a real OCI registry (distribution 2.8) for the guest push/pull tests and the lab's
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The JavaScript guest's toolchain (jco) comes from the npm registry: it needs Node.js
# 18 or later with npm (the machine's own, or Debian's nodejs + npm).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 Rust target" >&2
  rustup target add wasm32-wasip2
fi
# The C and Python guests' toolchains: pinned, from PyPI and crates.io, into
# .guest-tools/ (only what is missing; a first install compiles two crates.io tools)
"$(dirname "${BASH_SOURCE[0]}")/guest-tools.sh"
echo "setup: done" >&2
