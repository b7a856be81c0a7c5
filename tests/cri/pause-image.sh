#!/usr/bin/env bash
# Build the CRI tests' pause image offline, as a docker-archive tar that
# `ctr images import` takes: one layer holding /bin/busybox (busybox-static), an
# entrypoint that sleeps forever, a config whose diff_ids match the layer.
#
# usage: pause-image.sh OUT.tar [REF]     (REF default: wasm-cni.test/pause:1)
set -euo pipefail
out=${1:?usage: pause-image.sh OUT.tar [REF]}
ref=${2:-wasm-cni.test/pause:1}
busybox=${BUSYBOX:-/bin/busybox}

[[ -x $busybox ]] || { echo "pause-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
  echo "pause-image: $busybox is dynamically linked; the image needs busybox-static" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys" \
  "$work/rootfs/etc" "$work/img"
install -m 0755 "$busybox" "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/sh"
ln -s busybox "$work/rootfs/bin/sleep"
# Reproducible layer: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2020-01-01 00:00Z' \
  -C "$work/rootfs" -cf "$work/img/layer.tar" .
diff_id=sha256:$(sha256sum "$work/img/layer.tar" | cut -d' ' -f1)

jq -n --arg diff "$diff_id" '{
  architecture: "amd64", os: "linux", created: "2020-01-01T00:00:00Z",
  config: {
    Entrypoint: ["/bin/busybox", "sleep", "2147483647"],
    Env: ["PATH=/bin"], WorkingDir: "/"
  },
  rootfs: { type: "layers", diff_ids: [$diff] },
  history: [{ created: "2020-01-01T00:00:00Z", created_by: "tests/cri/pause-image.sh" }]
}' > "$work/img/config.json"
config_id=$(sha256sum "$work/img/config.json" | cut -d' ' -f1)
mv "$work/img/config.json" "$work/img/$config_id.json"
jq -n --arg cfg "$config_id.json" --arg ref "$ref" \
  '[{ Config: $cfg, RepoTags: [$ref], Layers: ["layer.tar"] }]' > "$work/img/manifest.json"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2020-01-01 00:00Z' \
  -C "$work/img" -cf "$out" manifest.json "$config_id.json" layer.tar
