# shellcheck shell=bash
# The kubelet's path without a cloud: containerd 1.6 with its CRI plugin, run inside a
# throwaway node network namespace, with a private root/state/socket and private CNI conf
# and bin dirs, driven by tests/cri-client (which sends what the kubelet sends).
#
# Everything lives under one directory $CRI_DIR (mktemp -d /tmp/wccri.XXXXXX, short enough
# for unix socket paths) and one namespace $CRI_NODE. cri_stop removes it all: sandboxes,
# containerd, its shims, every mount under the dir (rootfs, shm, pod netns), the namespace.
#
#   cri_start [wasm|bridge|wasm-dual|bridge-dual]
#                             set up and start containerd with that CNI network (default
#                             wasm; -dual: dual-stack, an IPv6 subnet beside the IPv4 one)
#   cri_stop                  tear everything down (idempotent, never fails)
#   cri ARGS...               tests/cri-client against this containerd
#
# Inputs: WASM_CNI_RUNNER, WASM_CNI_GUEST (default dist/...), CRI_CLIENT (default
# target/release/cri-client), CRI_SNAPSHOTTER (default overlayfs).

CRI_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CRI_RUNNER=${WASM_CNI_RUNNER:-$CRI_REPO/dist/bin/wasm-cni}
CRI_GUEST=${WASM_CNI_GUEST:-$CRI_REPO/dist/guests/default.wasm}
CRI_CLIENT=${CRI_CLIENT:-$CRI_REPO/target/release/cri-client}
CRI_PLUGINS=${CRI_PLUGINS:-/usr/lib/cni}
CRI_IMAGE=wasm-cni.test/pause:1
CRI_NETWORK=wasm-cni            # the CNI network name (both plugins' conflists use it)
CRI_SUBNET_PREFIX=200.200.1.    # myPodSubnet 200.200.1.0/24
CRI_SUBNET6=fd00:200:200:1::/64 # and its IPv6 companion in the -dual networks

cri_log() { echo "# $*" >&2; }

# cri_start [wasm|bridge|wasm-dual|bridge-dual]: exports CRI_DIR CRI_NODE CRI_SOCK CRI_PID CRI_STATE CRI_KV ...
cri_start() {
  local plugin=${1:-wasm} b
  for b in containerd ctr runc containerd-shim-runc-v2 nsenter findmnt jq; do
    command -v "$b" >/dev/null || { cri_log "cri: $b missing (scripts/setup.sh installs it)"; return 1; }
  done
  [ -x "$CRI_RUNNER" ] || { cri_log "cri: runner $CRI_RUNNER missing: run scripts/build.sh"; return 1; }
  [ -f "$CRI_GUEST" ] || { cri_log "cri: guest $CRI_GUEST missing: run scripts/build.sh"; return 1; }
  [ -x "$CRI_CLIENT" ] || { cri_log "cri: $CRI_CLIENT missing: cargo build --release --locked -p cri-client"; return 1; }
  [ -x "$CRI_PLUGINS/loopback" ] || { cri_log "cri: $CRI_PLUGINS/loopback missing (containernetworking-plugins)"; return 1; }

  # /run/containerd/s holds the shims' sockets (a path fixed in containerd 1.6): remember
  # whether /run/containerd was there so that cri_stop removes only what we made.
  if [ -e /run/containerd ]; then CRI_HAD_RUN_CONTAINERD=1; else CRI_HAD_RUN_CONTAINERD=0; fi
  # containerd 1.6's libcni keeps its result cache in /var/lib/cni (not configurable):
  # remember what was there, so that stop removes only what this run added.
  if [ -e /var/lib/cni ]; then CRI_HAD_VAR_LIB_CNI=1; else CRI_HAD_VAR_LIB_CNI=0; fi
  CRI_CNI_CACHE_BEFORE=$(cd /var/lib/cni/results 2>/dev/null && printf '%s ' ./* | sed 's|\./||g')
  CRI_DIR=$(mktemp -d /tmp/wccri.XXXXXX) || return 1
  CRI_NODE="wccri-$$-${CRI_DIR##*.}"
  CRI_SOCK=$CRI_DIR/containerd.sock
  CRI_STATE=$CRI_DIR/cni-state               # the runner's stateDir
  CRI_KV=$CRI_STATE/$CRI_NETWORK/kv          # its store for our network
  CRI_CNI_LOG=$CRI_DIR/wasm-cni.log          # its logFile
  CRI_PID=""
  export CRI_DIR CRI_NODE CRI_SOCK CRI_STATE CRI_KV CRI_CNI_LOG CRI_PID CRI_HAD_RUN_CONTAINERD
  export CRI_HAD_VAR_LIB_CNI CRI_CNI_CACHE_BEFORE
  # From here on, any failure must leave nothing behind: the caller's cri_stop covers it.

  ip netns add "$CRI_NODE" || return 1
  ip -n "$CRI_NODE" link set lo up || return 1

  mkdir -p "$CRI_DIR"/{root,state,tmp,opt,runc,pods,cni/bin,cni/net.d,guests,cache} || return 1
  # Copies, so that a rebuild by someone else during the run changes nothing here.
  cp "$CRI_RUNNER" "$CRI_DIR/cni/bin/wasm-cni" || return 1
  cp "$CRI_GUEST" "$CRI_DIR/guests/default.wasm" || return 1
  for b in loopback bridge host-local; do
    cp "$CRI_PLUGINS/$b" "$CRI_DIR/cni/bin/$b" || return 1
  done
  cri_write_conflist "$plugin" > "$CRI_DIR/cni/net.d/10-$CRI_NETWORK.conflist" || return 1

  "$CRI_REPO/tests/cri/pause-image.sh" "$CRI_DIR/pause.tar" "$CRI_IMAGE" || return 1
  cri_write_config > "$CRI_DIR/config.toml" || return 1

  # containerd in the node's network namespace, so its CNI calls (and its shims and the
  # stream server on 127.0.0.1) land there. Its own fds only: bats must not wait on it.
  nsenter --net="/run/netns/$CRI_NODE" containerd --config "$CRI_DIR/config.toml" \
    </dev/null >"$CRI_DIR/containerd.log" 2>&1 3>&- &
  CRI_PID=$!
  export CRI_PID
  echo "$CRI_PID" > "$CRI_DIR/containerd.pid"

  local i
  for ((i = 0; i < 300; i++)); do   # 30 s
    [ -S "$CRI_SOCK" ] && ctr -a "$CRI_SOCK" version >/dev/null 2>&1 && break
    kill -0 "$CRI_PID" 2>/dev/null || { cri_log "cri: containerd exited"; tail -20 "$CRI_DIR/containerd.log" >&2; return 1; }
    sleep 0.1
  done
  [ -S "$CRI_SOCK" ] || { cri_log "cri: no socket after 30 s"; tail -20 "$CRI_DIR/containerd.log" >&2; return 1; }

  ctr -a "$CRI_SOCK" -n k8s.io images import --snapshotter "${CRI_SNAPSHOTTER:-overlayfs}" \
    "$CRI_DIR/pause.tar" >/dev/null || { cri_log "cri: image import failed"; return 1; }

  for ((i = 0; i < 300; i++)); do   # RuntimeReady and NetworkReady, 30 s
    cri ready >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cri_log "cri: runtime not ready after 30 s: $(cri ready 2>&1)"
  tail -20 "$CRI_DIR/containerd.log" >&2
  return 1
}

# The first (and only) conflist in the CNI conf dir. The -dual networks add an IPv6
# subnet (the default guest's networks become lists, one CIDR per family; host-local
# gets a second range).
cri_write_conflist() {
  local dual=false
  case $1 in wasm-dual|bridge-dual) dual=true ;; esac
  case $1 in
    wasm|wasm-dual)
      jq -n --arg d "$CRI_DIR" --arg net "$CRI_NETWORK" --arg sub6 "$CRI_SUBNET6" --argjson dual "$dual" '{
        cniVersion: "1.0.0", name: $net,
        plugins: [{
          type: "wasm-cni", guest: ($d + "/guests/default.wasm"),
          cacheDir: ($d + "/cache"), stateDir: ($d + "/cni-state"), logFile: ($d + "/wasm-cni.log"),
          myHostNetwork: "10.0.0.0/16", myPodNetwork: "200.200.0.0/16", myPodSubnet: "200.200.1.0/24"
        } + if $dual then {
          myHostNetwork: ["10.0.0.0/16", "fd00:10:240::/64"],
          myPodNetwork: ["200.200.0.0/16", "fd00:200:200::/56"],
          myPodSubnet: ["200.200.1.0/24", $sub6]
        } else {} end]}' ;;
    bridge|bridge-dual)
      # The reference: the bridge plugin with host-local, same subnet, bridge and gateway.
      jq -n --arg d "$CRI_DIR" --arg net "$CRI_NETWORK" --arg sub6 "$CRI_SUBNET6" --argjson dual "$dual" '{
        cniVersion: "1.0.0", name: $net,
        plugins: [{
          type: "bridge", bridge: "cni0", isGateway: true, ipMasq: true,
          ipam: { type: "host-local", dataDir: ($d + "/cni-state/host-local"),
                  ranges: ([[{ subnet: "200.200.1.0/24" }]] + if $dual then [[{ subnet: $sub6 }]] else [] end),
                  routes: ([{ dst: "0.0.0.0/0" }] + if $dual then [{ dst: "::/0" }] else [] end) }
        }]}' ;;
    *) cri_log "cri: unknown plugin $1"; return 1 ;;
  esac
}

cri_write_config() {
  local d=$CRI_DIR
  cat <<EOF
version = 2
root = "$d/root"
state = "$d/state"
temp = "$d/tmp"

[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$CRI_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$d/cni/bin"
    conf_dir = "$d/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${CRI_SNAPSHOTTER:-overlayfs}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$d/runc"
EOF
}

# cri ARGS...: the CRI client against our containerd (each call bounded).
cri() { "$CRI_CLIENT" --socket "$CRI_SOCK" --timeout "${CRI_TIMEOUT:-60}" "$@"; }

# Processes that belong to this containerd: its shims (their -address names our socket).
cri_shim_pids() {
  [ -n "${CRI_SOCK:-}" ] || return 0
  pgrep -f -- "-address $CRI_SOCK( |\$)" || true
}

# The shims' sockets: containerd 1.6 puts them at /run/containerd/s/<sha256 of
# "<grpc address>/<namespace>/<id>">; a shim that is killed leaves its socket behind.
cri_shim_sockets() {
  local b id
  for b in "$CRI_DIR"/state/io.containerd.runtime.v2.task/k8s.io/*/; do
    [ -d "$b" ] || continue
    id=$(basename "$b")
    printf '/run/containerd/s/%s\n' "$(printf '%s' "$CRI_SOCK/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
  done
}

# Mount points under $CRI_DIR, deepest first.
cri_mounts() {
  [ -n "${CRI_DIR:-}" ] || return 0
  findmnt -rn -o TARGET | awk -v d="$CRI_DIR/" 'index($0, d) == 1' | awk '{ print length, $0 }' |
    sort -rn | cut -d' ' -f2-
}

# cri_stop: remove everything cri_start made. Safe to call twice and after a failed start.
cri_stop() {
  [ -n "${CRI_DIR:-}" ] || return 0
  local pid i m id socks
  # 1. The kubelet's way first: stop and remove every sandbox (runs CNI DEL).
  if [ -n "${CRI_PID:-}" ] && kill -0 "$CRI_PID" 2>/dev/null && [ -S "$CRI_SOCK" ]; then
    CRI_TIMEOUT=30 timeout 90 "$CRI_CLIENT" --socket "$CRI_SOCK" --timeout 30 cleanup >/dev/null 2>&1 || true
  fi
  # 2. containerd itself.
  if [ -n "${CRI_PID:-}" ] && kill -0 "$CRI_PID" 2>/dev/null; then
    kill -TERM "$CRI_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$CRI_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$CRI_PID" 2>/dev/null || true
    wait "$CRI_PID" 2>/dev/null || true
  fi
  # 3. Containers left behind (cleanup failed): runc by its private root, then the shims
  #    and their sockets.
  socks=$(cri_shim_sockets)
  if [ -d "$CRI_DIR/runc/k8s.io" ]; then
    for id in $(runc --root "$CRI_DIR/runc/k8s.io" list -q 2>/dev/null); do
      runc --root "$CRI_DIR/runc/k8s.io" delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  for pid in $(cri_shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do [ -z "$(cri_shim_pids)" ] && break; sleep 0.1; done
  for m in $socks; do if [ -S "$m" ]; then rm -f "$m"; fi; done
  # 4. Mounts: rootfs, sandbox shm, pod netns (nsfs) under the state dir.
  for ((i = 0; i < 3; i++)); do
    while read -r m; do
      [ -n "$m" ] && { umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
    done < <(cri_mounts)
    [ -z "$(cri_mounts)" ] && break
  done
  # 5. The node namespace (cni0 and host veths go with it), the files, /run/containerd if ours.
  ip netns del "$CRI_NODE" 2>/dev/null || true
  if [ -z "$(cri_mounts)" ]; then rm -rf "$CRI_DIR"; else cri_log "cri: mounts left under $CRI_DIR"; fi
  if [ "${CRI_HAD_RUN_CONTAINERD:-1}" = 0 ]; then
    rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  fi
  # 6. libcni's result cache entries of this run
  if [ "${CRI_HAD_VAR_LIB_CNI:-1}" = 0 ]; then
    rm -rf /var/lib/cni
  else
    for m in $(cri_cni_cache_added); do rm -f "/var/lib/cni/results/$m"; done
  fi
  return 0
}

# Entries of libcni's result cache that appeared since cri_start.
cri_cni_cache_added() {
  local f
  for f in /var/lib/cni/results/*; do
    [ -e "$f" ] || continue
    f=${f##*/}
    case " ${CRI_CNI_CACHE_BEFORE:-} " in *" $f "*) ;; *) echo "$f" ;; esac
  done
}

# cri_gone: true when nothing of cri_start's is left (the teardown check).
cri_gone() {
  local bad=0
  if [ -n "${CRI_PID:-}" ] && kill -0 "$CRI_PID" 2>/dev/null; then cri_log "containerd $CRI_PID still runs"; bad=1; fi
  if [ -n "$(cri_shim_pids)" ]; then cri_log "shims still run: $(cri_shim_pids | tr '\n' ' ')"; bad=1; fi
  if [ -n "$(cri_mounts)" ]; then cri_log "mounts left: $(cri_mounts | tr '\n' ' ')"; bad=1; fi
  if [ -e "$CRI_DIR" ]; then cri_log "$CRI_DIR still there"; bad=1; fi
  if ip netns list | grep -qw -- "$CRI_NODE"; then cri_log "namespace $CRI_NODE still there"; bad=1; fi
  if [ -n "$(cri_cni_cache_added)" ]; then cri_log "libcni cache entries left: $(cri_cni_cache_added | tr '\n' ' ')"; bad=1; fi
  if [ "${CRI_HAD_RUN_CONTAINERD:-1}" = 0 ] && [ -e /run/containerd ]; then
    cri_log "/run/containerd left: $(ls -A /run/containerd/s 2>/dev/null | tr '\n' ' ')"; bad=1
  fi
  return "$bad"
}

# --- helpers for the tests -------------------------------------------------------------

# Links in the node namespace (names only, no @peer).
cri_node_links() { ip -n "$CRI_NODE" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; }

# The runner's store keys for our network (URL-encoded file names).
cri_kv_keys() { ls "$CRI_KV" 2>/dev/null || true; }

# The address the runner's store holds for a sandbox's eth0.
cri_attach_ip() { cat "$CRI_KV/attach%2F$1%2Feth0" 2>/dev/null; }

# On failure, show what containerd and the runner said.
cri_diag() {
  echo "--- containerd.log (tail)"; tail -30 "$CRI_DIR/containerd.log" 2>/dev/null || true
  echo "--- wasm-cni.log (tail)"; tail -30 "$CRI_CNI_LOG" 2>/dev/null || true
}

# Expect the node to hold only lo and cni0 and the store no reservation at all.
cri_expect_clean_node() {
  local links keys i
  # A pod netns freed by the kernel takes its veth with it asynchronously: allow 2 s.
  for ((i = 0; i < 20; i++)); do
    links=$(cri_node_links | tr '\n' ' ')
    [ "$links" = "cni0 lo " ] && break
    sleep 0.1
  done
  [ "$links" = "cni0 lo " ] || { echo "node links: $links"; cri_diag; return 1; }
  keys=$(cri_kv_keys | grep -E '^(ip|attach6?)%2F' || true)
  [ -z "$keys" ] || { echo "store keys left: $keys"; cri_diag; return 1; }
}

# Is ADDR in fd00:200:200:1::/64 (CRI_SUBNET6; an address, not the subnet itself)?
cri_in_subnet6() {
  local host=${1#fd00:200:200:1:}
  [[ $1 == fd00:200:200:1:* && $host =~ ^(:?[0-9a-f]{1,4})(:[0-9a-f]{1,4}){0,3}$ && $1 != fd00:200:200:1:: ]]
}

# Is ADDR in 200.200.1.0/24 (a host address)?
cri_in_subnet() {
  local last=${1#"$CRI_SUBNET_PREFIX"}
  [[ $1 == "$CRI_SUBNET_PREFIX"* && $last =~ ^[0-9]+$ ]] && [ "$last" -ge 1 ] && [ "$last" -le 254 ]
}
