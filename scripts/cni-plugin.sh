#!/usr/bin/env bash
# cni-plugin.sh up|down|guest: wasm-cni on every node of the kubeadm cluster.
#   up:          copies dist/bin/wasm-cni and dist/guests/default.wasm to every node and
#                writes each node's /etc/cni/net.d/10-wasm-cni.conflist with the node's
#                podCIDR (read from its Node object).
#   down:        removes those files. It does NOT undo what the plugin did on the
#                nodes (bridge, routes, the nftables table ip wasm_cni_<network>) stay until reboot.
#   guest FILE:  checks FILE.wasm locally ("$WASM_CNI_RUNNER guest check"), uploads it
#                as /opt/cni/wasm/<name>.wasm and points every node's conflist at it.
#   guest oci://REF: every node pulls REF itself (its runner's `guest pull`: digests
#                verified, the checks of `guest check`), installs it as
#                /opt/cni/wasm/<repository>-<12 hex of its sha256>.wasm, precompiles it
#                and points its conflist at it; the first node's digest is pinned for
#                the others (a tag that moves mid-rollout stops it). Registry options:
#                GUEST_REGISTRY_INSECURE=1 (plain HTTP), GUEST_REGISTRY_CA=PEM,
#                GUEST_REGISTRY_CONFIG=FILE (docker-style auths; copied to each node for
#                the pull only, in a 0700 staging directory removed afterwards).
#   guest default: points every node back at /opt/cni/wasm/default.wasm.
# Every conflist written pins its guest ("guestDigest": sha256 of the installed file).
# The node side is scripts/node/install-cni.sh. Every variable below can be
# overridden from the environment.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- settings -----------------------------------------------------------------
ZONE="${ZONE:-europe-west1-b}"
HOST_NETWORK="${HOST_NETWORK:-10.0.0.0/16}"   # myHostNetwork
POD_NETWORK="${POD_NETWORK:-200.200.0.0/16}"  # myPodNetwork
MASTER="${MASTER:-my-k8s-master}"
WORKERS="${WORKERS:-my-k8s-worker-1 my-k8s-worker-2}"
KUBE_CONTEXT="${KUBE_CONTEXT:-my-k8s}"
RUNNER_BIN="${RUNNER_BIN:-$repo/dist/bin/wasm-cni}"                # uploaded to the nodes
DEFAULT_GUEST_WASM="${DEFAULT_GUEST_WASM:-$repo/dist/guests/default.wasm}"
# what `wasm-cni guest pull` runs on a node: the one next to RUNNER_BIN (uploaded with it when present)
REGISTRY_BIN="${REGISTRY_BIN:-$(dirname "$RUNNER_BIN")/wasm-cni-registry}"
WASM_CNI_RUNNER="${WASM_CNI_RUNNER:-$repo/dist/bin/wasm-cni}"      # runs 'guest check' locally
REMOTE_DIR="${REMOTE_DIR:-wasm-cni-install}"  # staging dir in the remote user's home
# Pod MTU (the conflist's "mtu"). Empty: each node uses its uplink's MTU (1460 on GCP).
POD_MTU="${POD_MTU:-}"
# PODCIDR_RETRIES / PODCIDR_RETRY_SLEEP (30 / 5 s): the wait for every node's podCIDR.
# guest oci://REF: GUEST_REGISTRY_INSECURE=1, GUEST_REGISTRY_CA=PEM, GUEST_REGISTRY_CONFIG=FILE
GUEST_REGISTRY_INSECURE="${GUEST_REGISTRY_INSECURE:-}"
GUEST_REGISTRY_CA="${GUEST_REGISTRY_CA:-}"
GUEST_REGISTRY_CONFIG="${GUEST_REGISTRY_CONFIG:-}"
# -------------------------------------------------------------------------------

# shellcheck source=lib/common.sh
source "$repo/scripts/lib/common.sh"

usage() {
  usage_exit "usage: $SCRIPT_NAME up|down|guest FILE.wasm|guest oci://REF|guest default
  up             install wasm-cni + default guest and a conflist on $MASTER $WORKERS
  down           remove them (node settings made by the plugin stay until reboot)
  guest FILE     check FILE.wasm locally (wasm-cni guest check), upload it, point every node's conflist at it
  guest oci://REF  every node pulls REF (host[:port]/repository[:tag][@sha256:HEX]), checks, pins and
                 precompiles it (GUEST_REGISTRY_INSECURE=1, GUEST_REGISTRY_CA=PEM, GUEST_REGISTRY_CONFIG=FILE)
  guest default  point every node back at /opt/cni/wasm/default.wasm"
}

read -r -a NODES <<<"$MASTER $WORKERS"
NODE_SCRIPT="$repo/scripts/node/install-cni.sh"

# need_runner_binary FILE: the nodes are x86-64 Linux (Ubuntu amd64): refuse anything
# else (a macOS or arm64 build, a script, a truncated file) before touching a node.
need_runner_binary() {
  local f=$1 head
  head="$(od -An -tx1 -N20 -- "$f" | tr -d ' \n')" || die "cannot read the runner '$f'."
  # ELF magic, 64-bit, little-endian, version 1, OS ABI System V or GNU/Linux ...
  [[ "${head:0:8}" == 7f454c46 ]] ||
    die "the runner '$f' is not an ELF binary (the nodes need a Linux x86-64 build: scripts/build.sh on Linux x86-64, or set RUNNER_BIN)."
  [[ "${head:8:6}" == 020101 && ("${head:14:2}" == 00 || "${head:14:2}" == 03) ]] ||
    die "the runner '$f' is not a 64-bit little-endian Linux ELF binary (the nodes are Linux x86-64)."
  # ... e_type executable or PIE (2 or 3), e_machine x86-64 (0x3e)
  [[ ("${head:32:4}" == 0200 || "${head:32:4}" == 0300) && "${head:36:4}" == 3e00 ]] ||
    die "the runner '$f' is not an x86-64 executable (e_type ${head:32:4}, e_machine ${head:36:4}; the nodes are Linux x86-64)."
}

# check_guest FILE: "$WASM_CNI_RUNNER guest check FILE" here, before any node is touched.
check_guest() {
  local file=$1 out rc=0
  [[ -x "$WASM_CNI_RUNNER" ]] ||
    die "cannot check '$file': runner '$WASM_CNI_RUNNER' not found or not executable. Build it (scripts/build.sh) or set WASM_CNI_RUNNER to a runner you can execute here."
  out="$("$WASM_CNI_RUNNER" guest check "$file" 2>&1)" || rc=$?
  ((rc == 0)) ||
    die "refusing '$file': it is not a component of the wasm-cni world (guest check exit $rc): $out"
  log "${out%%$'\n'*}"
}

# on_node NODE DESCRIPTION INSTALL_ARGS FILE...: stage FILE... and install-cni.sh in
# ~/$REMOTE_DIR (mode 0700: it may hold registry credentials) on NODE, run
# install-cni.sh with INSTALL_ARGS as root, clean up. With NODE_OUT set, what
# install-cni.sh prints is also written to the file NODE_OUT.
NODE_OUT=""
on_node() {
  local node=$1 desc=$2 args=$3
  shift 3
  run_step "$desc: preparing $REMOTE_DIR on $node" \
    gcloud_ssh "$node" "rm -rf $REMOTE_DIR && mkdir -m 700 $REMOTE_DIR"
  run_step "$desc: copying files to $node" \
    gcloud_scp "$@" "$NODE_SCRIPT" "$node:$REMOTE_DIR/"
  run_step "$desc on $node" \
    node_install "$node" "sudo bash $REMOTE_DIR/install-cni.sh $args; rc=\$?; rm -rf $REMOTE_DIR; exit \$rc"
}

node_install() { # NODE COMMAND
  if [[ -n "$NODE_OUT" ]]; then
    gcloud_ssh "$1" "$2" | tee "$NODE_OUT"
  else
    gcloud_ssh "$1" "$2"
  fi
}

networks() { # NODE_INDEX
  printf -- '--host-network %s --pod-network %s --pod-subnet %s' \
    "$HOST_NETWORK" "$POD_NETWORK" "${POD_CIDRS[$1]}"
  if [[ -n "$POD_MTU" ]]; then printf -- ' --mtu %s' "$POD_MTU"; fi
}

up() {
  need_file "$RUNNER_BIN" "the runner"
  need_file "$DEFAULT_GUEST_WASM" "the default guest"
  need_runner_binary "$RUNNER_BIN"
  local tool=() tool_arg=""
  if [[ -f "$REGISTRY_BIN" ]]; then
    need_runner_binary "$REGISTRY_BIN"
    tool=("$REGISTRY_BIN")
    tool_arg=" --registry-tool $REMOTE_DIR/$(basename "$REGISTRY_BIN")"
  else
    log "no $REGISTRY_BIN: the nodes get no registry client ('guest oci://REF' will not work; build it with scripts/build.sh)"
  fi
  check_guest "$DEFAULT_GUEST_WASM"
  need_project
  need_context
  wait_pod_cidrs "${NODES[@]}"
  local i node
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    log "$node: installing wasm-cni (pod subnet ${POD_CIDRS[i]})"
    on_node "$node" "installing wasm-cni" \
      "install --runner $REMOTE_DIR/$(basename "$RUNNER_BIN") --default-guest $REMOTE_DIR/$(basename "$DEFAULT_GUEST_WASM")$tool_arg $(networks "$i")" \
      "$RUNNER_BIN" "$DEFAULT_GUEST_WASM" "${tool[@]}"
  done
  log "wasm-cni is installed; nodes become Ready shortly. Next: scripts/inter-node-routes.sh up"
}

down() {
  need_project
  local node
  for node in "${NODES[@]}"; do
    log "$node: removing wasm-cni"
    on_node "$node" "removing wasm-cni" "uninstall"
  done
  log "removed the wasm-cni files. Note: this does not undo the settings the plugin made"
  log "on the nodes (bridge cni0, routes, the nftables table ip wasm_cni_<network>); they stay until the nodes reboot."
}

# ref_guest [oci://]REF: every node pulls REF itself; the first node's digest is pinned
# for the others.
ref_guest() {
  local ref=${1#oci://} opts="" files=() f done_nodes=() i node digest=""
  [[ "$ref" =~ ^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$ ]] ||
    die "refusing '$1': not a registry reference (oci://host[:port]/repository[:tag][@sha256:<hex>])."
  case "$GUEST_REGISTRY_INSECURE" in
    "" | 0) ;;
    1) opts+=" --insecure" ;;
    *) die "GUEST_REGISTRY_INSECURE='$GUEST_REGISTRY_INSECURE' must be 1 or empty." ;;
  esac
  for f in CA CONFIG; do
    local var="GUEST_REGISTRY_$f" path
    path=${!var}
    [[ -n "$path" ]] || continue
    [[ -f "$path" ]] || die "$var='$path': no such file."
    [[ "$(basename "$path")" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ && "$(basename "$path")" != install-cni.sh ]] ||
      die "$var='$path': the file name must match [A-Za-z0-9._-]*."
    files+=("$path")
    if [[ "$f" == CA ]]; then opts+=" --ca-file"; else opts+=" --registry-config"; fi
    opts+=" $REMOTE_DIR/$(basename "$path")"
  done
  need_project
  need_context
  wait_pod_cidrs "${NODES[@]}"
  NODE_OUT="$(mktemp "${TMPDIR:-/tmp}/cni-plugin-node.XXXXXX")"
  # shellcheck disable=SC2064 # the file is known now
  trap "rm -f -- '$NODE_OUT'" EXIT
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    log "$node: pulling $ref${digest:+ (pinned: $digest)}"
    on_node "$node" "pulling $ref (nodes already switched: ${done_nodes[*]:-none})" \
      "guest --ref $ref${digest:+ --guest-digest $digest}$opts $(networks "$i")" "${files[@]}"
    if [[ -z "$digest" ]]; then
      digest="$(tr -d '\r' <"$NODE_OUT" | sed -n "s#^==> pulled .*: \(sha256:[0-9a-f]\{64\}\)\$#\1#p" | tail -1)"
      [[ -n "$digest" ]] ||
        die "$node did not report the digest it pulled (is install-cni.sh current?); nodes switched: $node."
    fi
    done_nodes+=("$node")
  done
  log "every node now uses $ref ($digest, pinned in its conflist) for new CNI calls"
}

guest() {
  local file=$1 name="" done_nodes=() i node args
  if [[ "$file" == oci://* ]]; then
    ref_guest "$file"
    return
  fi
  if [[ "$file" != default ]]; then
    [[ -f "$file" ]] || die "refusing '$file': no such file."
    name="$(basename "$file")"
    [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*\.wasm$ ]] ||
      die "refusing '$file': the file name must match [A-Za-z0-9._-]*.wasm."
    [[ "$name" != default.wasm ]] ||
      die "refusing '$file': default.wasm would replace the default guest; rename it."
    check_guest "$file"
  fi
  need_project
  need_context
  wait_pod_cidrs "${NODES[@]}"
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    if [[ -n "$name" ]]; then
      log "$node: switching to guest /opt/cni/wasm/$name"
      args="guest --file $REMOTE_DIR/$name $(networks "$i")"
      on_node "$node" "switching to $name (nodes already switched: ${done_nodes[*]:-none})" "$args" "$file"
    else
      log "$node: switching back to the default guest"
      args="guest --default $(networks "$i")"
      on_node "$node" "switching to default.wasm (nodes already switched: ${done_nodes[*]:-none})" "$args"
    fi
    done_nodes+=("$node")
  done
  log "every node now uses ${name:-default.wasm} for new CNI calls"
}

need_file() {
  [[ -f "$1" ]] || die "$2 '$1' is missing. Build it with scripts/build.sh."
}

main() {
  case "${1:-}" in
    up | down) [[ $# -eq 1 ]] || usage ;;
    guest) [[ $# -eq 2 && -n "$2" ]] || usage ;;
    *) usage ;;
  esac
  need_gcloud
  [[ "$1" == down ]] || need_kubectl
  need_cidr HOST_NETWORK "$HOST_NETWORK"
  need_cidr POD_NETWORK "$POD_NETWORK"
  [[ -z "$POD_MTU" || "$POD_MTU" =~ ^[1-9][0-9]{2,4}$ ]] || die "POD_MTU='$POD_MTU' must be a number (e.g. 1460)."
  [[ -f "$NODE_SCRIPT" ]] || die "missing $NODE_SCRIPT."
  "$1" "${@:2}"
}

main "$@"
