#!/usr/bin/env bash
# Build the lab's pod image offline: a rootfs holding /bin/busybox (from the
# busybox-static package) plus one symlink per applet (sh, ping, ip, sleep, wget...),
# packed as a tar that `podman import` turns into an image.
#
# usage: build-image.sh OUT.tar
set -euo pipefail

out=${1:?usage: build-image.sh OUT.tar}
busybox=${BUSYBOX:-/bin/busybox}

[[ -x $busybox ]] || { echo "build-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
    echo "build-image: $busybox is dynamically linked; the image needs busybox-static" >&2
    exit 1
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/lab-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT

mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,run,var/tmp}
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
while read -r applet; do
    [[ -n $applet && $applet != busybox ]] || continue
    ln -sf busybox "$rootfs/bin/$applet"
done < <("$busybox" --list)
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"

for applet in sh ping ip sleep wget; do
    [[ -L $rootfs/bin/$applet ]] || { echo "build-image: busybox lacks $applet" >&2; exit 1; }
done

tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$out" .
