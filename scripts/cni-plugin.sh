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
#   guest host-gw|vxlan: as guest FILE with the built-in host-gw or VXLAN policy
#                (dist/guests/host-gw.wasm, vxlan.wasm), installed as /opt/cni/wasm/<name>.wasm.
#   guest default: points every node back at /opt/cni/wasm/default.wasm.
#   peers:       rewrites every node's peers list (nodes joined or left), keeping its guest.
# guest FILE|host-gw|vxlan|oci://REF and peers write into every node's conflist the
# cluster's nodes ("peers": name, InternalIPs, podCIDRs of each, from `kubectl get
# nodes -o json`; this node included, the runner drops its own entry) and this node's
# "nodeIP", then run `wasm-cni reconcile -c <conflist>` on the node, so that a node-level
# policy (routes to the other nodes, the VXLAN link and its entries) follows at once.
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
HOST_GW_GUEST_WASM="${HOST_GW_GUEST_WASM:-$repo/dist/guests/host-gw.wasm}"  # 'guest host-gw'
VXLAN_GUEST_WASM="${VXLAN_GUEST_WASM:-$repo/dist/guests/vxlan.wasm}"        # 'guest vxlan'
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
  usage_exit "usage: $SCRIPT_NAME up|down|guest FILE.wasm|guest oci://REF|guest host-gw|guest vxlan|guest default|peers
  up             install wasm-cni + default guest and a conflist on $MASTER $WORKERS
  down           remove them (node settings made by the plugin stay until reboot)
  guest FILE     check FILE.wasm locally (wasm-cni guest check), upload it, point every node's conflist at it
  guest oci://REF  every node pulls REF (host[:port]/repository[:tag][@sha256:HEX]), checks, pins and
                 precompiles it (GUEST_REGISTRY_INSECURE=1, GUEST_REGISTRY_CA=PEM, GUEST_REGISTRY_CONFIG=FILE)
  guest host-gw  the built-in host-gw policy ($HOST_GW_GUEST_WASM), as guest FILE
  guest vxlan    the built-in VXLAN policy ($VXLAN_GUEST_WASM), as guest FILE
  guest default  point every node back at /opt/cni/wasm/default.wasm
  peers          rewrite every node's peers list from the cluster's nodes (after nodes join or leave)
  guest FILE|oci://REF|host-gw|vxlan and peers write the peers list (kubectl get nodes) into
  every conflist, then run 'wasm-cni reconcile' on each node"
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

# work_dir: WORK, this run's temporary directory (the peers list, a node's output),
# removed when the script exits.
WORK=""
work_dir() {
  [[ -z "$WORK" ]] || return 0
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/cni-plugin.XXXXXX")"
  # shellcheck disable=SC2064 # the directory is known now
  trap "rm -rf -- '$WORK'" EXIT
}

CONFLIST=/etc/cni/net.d/10-wasm-cni.conflist # where install-cni.sh writes it on a node
NODE_RUNNER=/opt/cni/bin/wasm-cni

# read_peers: $WORK/peers.json = the peers list of every conflist: each node of the
# cluster (kubectl get nodes -o json) with its name, InternalIP(s) (one per family) and
# podCIDRs; NODE_IPS[i] = the InternalIP(s) of NODES[i] ("IPV4" or "IPV4,IPV6"), its
# conflist's nodeIP. Checked here as the runner checks it (it refuses, code 7, the whole
# configuration otherwise), before any node is touched: every podCIDR of a family that
# POD_NETWORK has lies inside it, every InternalIP of a family that HOST_NETWORK has
# lies inside it (the runner allows routes and VXLAN remotes only there), no two nodes
# share an address or overlapping podCIDRs, one podCIDR per family, at most 1024 nodes.
# A podCIDR of a family POD_NETWORK lacks (the IPv6 one of a dual-stack node: these
# scripts' networks are IPv4) is left out, said so: the runner would refuse it. A node's
# addresses of both families go into the list; its nodeIP takes those of the families
# HOST_NETWORK has (install-cni.sh wants each inside it).
NODE_IPS=()
read_peers() {
  need_cmd python3 "The peers list is built with python3 (3.7 or later); install it."
  work_dir
  local rc=0 line name ips i
  local -A ips_of=()
  log "reading the cluster's nodes (kubectl get nodes) for the peers list"
  kubectl --context="$KUBE_CONTEXT" get nodes -o json >"$WORK/nodes.json" 2>"$WORK/err" || rc=$?
  ((rc == 0)) ||
    die "reading the cluster's nodes failed (kubectl get nodes, context $KUBE_CONTEXT, exit $rc): $(tail -n 3 "$WORK/err"); no node was changed."
  python3 - "$WORK/nodes.json" "$POD_NETWORK" "$HOST_NETWORK" "$WORK/peers.json" >"$WORK/ips" 2>"$WORK/err" <<'PY' || rc=$?
import ipaddress, json, re, sys

nodes_file, pod_networks, host_networks, out = sys.argv[1:5]


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def odd_shape(kind, value, tb):  # a field of an unexpected type: one line, no traceback
    print("kubectl's answer has an unexpected shape (%s: %s)" % (kind.__name__, value), file=sys.stderr)


sys.excepthook = odd_shape
try:
    with open(nodes_file) as f:
        doc = json.load(f)
except ValueError as e:
    fail("kubectl's answer is not JSON (%s)" % e)
items = doc.get("items") if isinstance(doc, dict) else None
if not isinstance(items, list) or not items:
    fail("kubectl's answer lists no nodes")
if len(items) > 1024:
    fail("the cluster has %d nodes: a peers list holds at most 1024" % len(items))
pods = [ipaddress.ip_network(n) for n in pod_networks.split(",")]
hosts = [ipaddress.ip_network(n) for n in host_networks.split(",")]
peers, seen_ips, seen_cidrs = [], {}, []
for item in items:
    item = item if isinstance(item, dict) else {}
    name = (item.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
        fail("a node has no usable name (%r)" % (name,))
    ips = {}
    for a in (item.get("status") or {}).get("addresses") or []:
        if not isinstance(a, dict) or a.get("type") != "InternalIP":
            continue
        try:
            ip = ipaddress.ip_address(a.get("address"))
        except ValueError:
            fail("node %s: InternalIP %r is not an IP address" % (name, a.get("address")))
        if ip.version in ips:
            fail("node %s has two IPv%d InternalIPs (%s, %s): a peer has one per family" % (name, ip.version, ips[ip.version], ip))
        same = [h for h in hosts if h.version == ip.version]
        if same and not any(ip in h for h in same):
            fail("node %s: InternalIP %s is outside HOST_NETWORK %s (the runner allows routes and VXLAN remotes only inside the host network)" % (name, ip, host_networks))
        if ip in seen_ips:
            fail("nodes %s and %s have the same InternalIP %s" % (seen_ips[ip], name, ip))
        seen_ips[ip] = name
        ips[ip.version] = ip
    own = [str(ips[v]) for v in sorted(ips) if any(h.version == v for h in hosts)]
    if not own:
        fail("node %s has no InternalIP address in HOST_NETWORK %s (status.addresses)" % (name, host_networks))
    spec = item.get("spec") or {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    kept = []
    for c in cidrs:
        try:
            net = ipaddress.ip_network(c)
        except (TypeError, ValueError):
            fail("node %s: podCIDR %r is not a CIDR (a network: no host bits set)" % (name, c))
        if any(ipaddress.ip_network(k).version == net.version for k in kept):
            fail("node %s has two IPv%d podCIDRs (%s): a peer has one per family" % (name, net.version, ", ".join(cidrs)))
        same = [p for p in pods if p.version == net.version]
        if not same:
            print("note: node %s: podCIDR %s left out of the peers list (POD_NETWORK %s has no IPv%d network)" % (name, net, pod_networks, net.version), file=sys.stderr)
            continue
        if not any(net.subnet_of(p) for p in same):
            fail("node %s: podCIDR %s is not inside POD_NETWORK %s" % (name, net, pod_networks))
        for other, owner in seen_cidrs:
            if net.overlaps(other):
                fail("node %s's podCIDR %s overlaps node %s's %s" % (name, net, owner, other))
        seen_cidrs.append((net, name))
        kept.append(str(net))
    if not kept:
        fail("node %s has no podCIDR in POD_NETWORK %s yet (spec.podCIDRs: %s)" % (name, pod_networks, cidrs or "none"))
    addrs = [str(ips[v]) for v in sorted(ips)]
    kept.sort(key=lambda k: ipaddress.ip_network(k).version)
    peers.append({"name": name, "nodeIP": addrs[0] if len(addrs) == 1 else addrs, "podCIDRs": kept})
    print("%s\t%s" % (name, ",".join(own)))
peers.sort(key=lambda p: p["name"])
with open(out, "w") as f:
    json.dump(peers, f)
    f.write("\n")
PY
  ((rc == 0)) || die "cannot build the peers list from the cluster's nodes: $(grep -v '^note: ' "$WORK/err"); no node was changed."
  while IFS= read -r line; do log "${line#note: }"; done <"$WORK/err"
  while IFS=$'\t' read -r name ips; do ips_of[$name]=$ips; done <"$WORK/ips"
  NODE_IPS=()
  for i in "${!NODES[@]}"; do
    [[ -n "${ips_of[${NODES[i]}]:-}" ]] ||
      die "${NODES[i]} (MASTER/WORKERS) is not a node of the cluster (kubectl get nodes): if it left, drop it from WORKERS; no node was changed."
    NODE_IPS+=("${ips_of[${NODES[i]}]}")
    unset "ips_of[${NODES[i]}]"
  done
  for name in "${!ips_of[@]}"; do
    warn "node $name is in the peers list but not in MASTER/WORKERS: this script does not write its conflist (add it to WORKERS)."
  done
  log "peers list: $(wc -l <"$WORK/ips" | tr -d ' ') nodes"
}

# peer_args NODE_INDEX: install-cni.sh's options for the peers list (staged as
# $REMOTE_DIR/peers.json) and the node's own address(es) (its "nodeIP": the runner
# drops the peers entry that holds it).
peer_args() {
  printf -- ' --peers %s/peers.json --node-ip %s' "$REMOTE_DIR" "${NODE_IPS[$1]}"
}

# reconcile_on NODE DONE_NODES: the node's runner brings its node-level state (routes
# to the other nodes, VXLAN link, FDB and neighbour entries) in line with the conflist
# just written; a guest without a node-level part has nothing to do.
reconcile_on() {
  run_step "wasm-cni reconcile on $1 (its conflist is already rewritten; nodes done before it: ${2:-none})" \
    gcloud_ssh "$1" "sudo $NODE_RUNNER reconcile -c $CONFLIST"
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
    [[ "$(basename "$path")" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ && "$(basename "$path")" != install-cni.sh &&
      "$(basename "$path")" != peers.json ]] ||
      die "$var='$path': the file name must match [A-Za-z0-9._-]* (and not be install-cni.sh or peers.json, staged next to it)."
    files+=("$path")
    if [[ "$f" == CA ]]; then opts+=" --ca-file"; else opts+=" --registry-config"; fi
    opts+=" $REMOTE_DIR/$(basename "$path")"
  done
  need_project
  need_context
  wait_pod_cidrs "${NODES[@]}"
  read_peers
  NODE_OUT="$WORK/node-out"
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    log "$node: pulling $ref${digest:+ (pinned: $digest)}"
    on_node "$node" "pulling $ref (nodes already switched: ${done_nodes[*]:-none})" \
      "guest --ref $ref${digest:+ --guest-digest $digest}$opts $(networks "$i")$(peer_args "$i")" \
      "${files[@]}" "$WORK/peers.json"
    if [[ -z "$digest" ]]; then
      digest="$(tr -d '\r' <"$NODE_OUT" | sed -n "s#^==> pulled .*: \(sha256:[0-9a-f]\{64\}\)\$#\1#p" | tail -1)"
      [[ -n "$digest" ]] ||
        die "$node did not report the digest it pulled (is install-cni.sh current?); nodes switched: $node."
    fi
    reconcile_on "$node" "${done_nodes[*]:-}"
    done_nodes+=("$node")
  done
  log "every node now uses $ref ($digest, pinned in its conflist) for new CNI calls"
}

guest() {
  local what=$1 file="" name="" done_nodes=() i node args
  case "$what" in
    oci://*)
      ref_guest "$what"
      return
      ;;
    default) ;;
    host-gw | vxlan)
      # the built-in ones: uploaded at each switch, so a node always runs this build's
      file=$HOST_GW_GUEST_WASM
      [[ "$what" == host-gw ]] || file=$VXLAN_GUEST_WASM
      need_file "$file" "the $what guest"
      name="$what.wasm"
      ;;
    *)
      file=$what
      if [[ ! -f "$file" && "$file" != */* && "$file" != *.wasm ]]; then
        die "refusing '$file': not a guest name (host-gw, vxlan, default), a .wasm file or an oci:// reference."
      fi
      [[ -f "$file" ]] || die "refusing '$file': no such file."
      name="$(basename "$file")"
      [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*\.wasm$ ]] ||
        die "refusing '$file': the file name must match [A-Za-z0-9._-]*.wasm."
      [[ "$name" != default.wasm ]] ||
        die "refusing '$file': default.wasm would replace the default guest; rename it."
      [[ "$name" != host-gw.wasm && "$name" != vxlan.wasm ]] ||
        die "refusing '$file': $name is a built-in guest's name ('guest ${name%.wasm}'); rename it."
      ;;
  esac
  [[ -z "$file" ]] || check_guest "$file"
  need_project
  need_context
  wait_pod_cidrs "${NODES[@]}"
  # the default guest has no node-level part: its conflist gets no peers list
  [[ -z "$name" ]] || read_peers
  if [[ "$what" == host-gw || "$what" == vxlan ]] && [[ "$(basename "$file")" != "$name" ]]; then
    # HOST_GW_GUEST_WASM / VXLAN_GUEST_WASM may name another file: staged as NAME
    cp -- "$file" "$WORK/$name"
    file="$WORK/$name"
  fi
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    if [[ -n "$name" ]]; then
      log "$node: switching to guest /opt/cni/wasm/$name"
      args="guest --file $REMOTE_DIR/$name $(networks "$i")$(peer_args "$i")"
      on_node "$node" "switching to $name (nodes already switched: ${done_nodes[*]:-none})" "$args" \
        "$file" "$WORK/peers.json"
      reconcile_on "$node" "${done_nodes[*]:-}"
    else
      log "$node: switching back to the default guest"
      args="guest --default $(networks "$i")"
      on_node "$node" "switching to default.wasm (nodes already switched: ${done_nodes[*]:-none})" "$args"
    fi
    done_nodes+=("$node")
  done
  log "every node now uses ${name:-default.wasm} for new CNI calls"
}

# peers: every node's conflist gets the cluster's current peers list (its guest kept),
# then the node reconciles.
peers() {
  need_project
  need_context
  wait_pod_cidrs "${NODES[@]}"
  read_peers
  local i node done_nodes=()
  for i in "${!NODES[@]}"; do
    node=${NODES[i]}
    log "$node: new peers list"
    # install-cni.sh peers: only the conflist's "peers" and "nodeIP" change (its guest,
    # pin and networks stay), then it runs the node's `wasm-cni reconcile`
    on_node "$node" "writing the peers list and reconciling (nodes already done: ${done_nodes[*]:-none})" \
      "peers$(peer_args "$i")" "$WORK/peers.json"
    done_nodes+=("$node")
  done
  log "every node has the new peers list and has reconciled"
}

need_file() {
  [[ -f "$1" ]] || die "$2 '$1' is missing. Build it with scripts/build.sh."
}

main() {
  case "${1:-}" in
    up | down | peers) [[ $# -eq 1 ]] || usage ;;
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
