#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The course lab's 3-node cluster, built from network namespaces on one machine.
# Pods are run by podman through wasm-cni (or the reference plugins, LAB_PLUGIN=reference).
# See docs/lab.md.
#
# This file holds the settings, the shared helpers and the commands; the rest is in
# scripts/lab/: topology.sh (namespaces, VPC, router, inter-node routes), node-files.sh
# (a node's files; its conflist comes from scripts/node/install-cni.sh, the cluster's
# writer), pods.sh (image, pods, addresses), connectivity.sh (the `test` table).
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" # die, REPO_ROOT
REPO=$REPO_ROOT
HERE=$REPO/scripts/lab

LAB_DIR=${LAB_DIR:-/var/lib/wasm-cni-lab}
LAB_PREFIX=${LAB_PREFIX:-lab}
LAB_PLUGIN=${LAB_PLUGIN:-wasm-cni}
DIST_DIR=${DIST_DIR:-$REPO/dist}
# the guest the nodes use (a student's own component, checked first, or oci://REF,
# pulled by every node); `guest FILE|oci://REF` switches a running lab and remembers
# the choice in $LAB_DIR/guest (a pulled guest's digest in $LAB_DIR/guest-digest)
if [[ -z ${LAB_GUEST:-} ]]; then
    LAB_GUEST=$DIST_DIR/guests/default.wasm
    [[ -f $LAB_DIR/guest ]] && LAB_GUEST=$(cat "$LAB_DIR/guest")
fi
LAB_GUEST_DIGEST=""
if [[ $LAB_GUEST == oci://* && -f $LAB_DIR/guest-digest && $(cat "$LAB_DIR/guest" 2>/dev/null) == "$LAB_GUEST" ]]; then
    LAB_GUEST_DIGEST=$(cat "$LAB_DIR/guest-digest")
fi
# how nodes reach the registry of an oci:// guest (also flags of `guest oci://REF`)
LAB_PULL_OPTS=()
[[ ${LAB_REGISTRY_INSECURE:-} == 1 ]] && LAB_PULL_OPTS+=(--insecure)
[[ -n ${LAB_REGISTRY_CA:-} ]] && LAB_PULL_OPTS+=(--ca-file "$LAB_REGISTRY_CA")
[[ -n ${LAB_REGISTRY_CONFIG:-} ]] && LAB_PULL_OPTS+=(--registry-config "$LAB_REGISTRY_CONFIG")
REF_CNI_DIR=${REF_CNI_DIR:-/usr/lib/cni}
# address families: 4 (IPv4 only, the course lab) or 4,6 (dual-stack: every node, pod,
# route and check in both). `up` remembers it in $LAB_DIR/families; a running lab keeps
# its families until `down`.
LAB_FAMILIES_ASKED=${LAB_FAMILIES:-}
if [[ -z ${LAB_FAMILIES:-} ]]; then
    LAB_FAMILIES=4
    [[ -f $LAB_DIR/families ]] && LAB_FAMILIES=$(cat "$LAB_DIR/families")
fi

# The lab's network and its placement (some are used only by scripts/lab/*.sh)
# shellcheck disable=SC2034
{
    NETWORK=wasm-cni                 # conflist name (install-cni.sh's) = podman network name
    IMAGE=localhost/lab-busybox:latest
    HOST_NET=10.0.0.0/16
    POD_NET=200.200.0.0/16
    ROUTER_VPC_IP=10.0.0.1
    ROUTER_OUT_IP=192.0.2.1
    OUTSIDE_IP=192.0.2.10
    CGROUP_PARENT=/wasm-cni-$LAB_PREFIX
    APT_PACKAGES=(containernetworking-plugins podman runc conmon busybox-static iproute2
                  iputils-ping jq bats shellcheck nftables iptables uidmap python3)
    # the cluster's DNS: a resolver (scripts/lab/dns.py) on the master's node IP, as
    # cluster DNS runs on a node of the course's cluster; it answers DNS_NAME with the
    # outside host's address(es)
    DNS_NODE=master
    DNS_NAME=outside.lab

    NODES=(master worker-1 worker-2)
    declare -A NODE_IP=([master]=10.0.0.2 [worker-1]=10.0.0.3 [worker-2]=10.0.0.4)
    declare -A POD_CIDR=([master]=200.200.0.0/24 [worker-1]=200.200.1.0/24 [worker-2]=200.200.2.0/24)
    # dual-stack (LAB_FAMILIES=4,6): the same plan in IPv6. The VPC and the pod network
    # in ULA prefixes (node N's podCIDR is fd00:200:200:N::/64, as 200.200.N.0/24), the
    # outside link in the documentation prefix 2001:db8::/64 (as 192.0.2.0/24).
    HOST_NET6=fd00:10:240::/64
    POD_NET6=fd00:200:200::/56
    ROUTER_VPC_IP6=fd00:10:240::1
    ROUTER_OUT_IP6=2001:db8::1
    OUTSIDE_IP6=2001:db8::10
    declare -A NODE_IP6=([master]=fd00:10:240::2 [worker-1]=fd00:10:240::3 [worker-2]=fd00:10:240::4)
    declare -A POD_CIDR6=([master]=fd00:200:200::/64 [worker-1]=fd00:200:200:1::/64 [worker-2]=fd00:200:200:2::/64)
    # same placement as pods.yaml: two pods per worker, none on the master
    PODS=(pod-1 pod-2 pod-3 pod-4)
    declare -A POD_NODE=([pod-1]=worker-1 [pod-4]=worker-1 [pod-2]=worker-2 [pod-3]=worker-2)
}

say() { printf '%s\n' "$*"; }

# FAMILIES is read by the sourced scripts/lab/*.sh (shellcheck sees that only with -x)
# shellcheck disable=SC2034
case $LAB_FAMILIES in
    4) FAMILIES=(4) ;;
    4,6) FAMILIES=(4 6) ;;
    *) die "LAB_FAMILIES must be 4 or 4,6, not '$LAB_FAMILIES'" ;;
esac
dual_stack() { [[ $LAB_FAMILIES == 4,6 ]]; }
# a running lab keeps the families it was built with
check_families() {
    if [[ -n $LAB_FAMILIES_ASKED && -f $LAB_DIR/families && $(cat "$LAB_DIR/families") != "$LAB_FAMILIES_ASKED" ]]; then
        die "the lab is up with LAB_FAMILIES=$(cat "$LAB_DIR/families"); run '$0 down' first"
    fi
    return 0
}
# per family: the node's address, its podCIDR, the router's VPC address (fam 4|6)
node_ip() { if [[ $2 == 6 ]]; then printf '%s' "${NODE_IP6[$1]}"; else printf '%s' "${NODE_IP[$1]}"; fi; }
pod_cidr() { if [[ $2 == 6 ]]; then printf '%s' "${POD_CIDR6[$1]}"; else printf '%s' "${POD_CIDR[$1]}"; fi; }
router_vpc_ip() { if [[ $1 == 6 ]]; then printf '%s' "$ROUTER_VPC_IP6"; else printf '%s' "$ROUTER_VPC_IP"; fi; }

ns_of() { printf '%s-%s' "$LAB_PREFIX" "$1"; }
ns_exists() { [[ -e /run/netns/$(ns_of "$1") ]]; }
node_dir() { printf '%s/nodes/%s' "$LAB_DIR" "$1"; }
in_ns() { local n; n=$(ns_of "$1"); shift; ip netns exec "$n" "$@"; }
workers() { printf '%s\n' worker-1 worker-2; }
pods_on() { local p; for p in "${PODS[@]}"; do [[ ${POD_NODE[$p]} == "$1" ]] && printf '%s\n' "$p"; done; return 0; }
first_pod_on() {  # node [except] -> first pod placed on node (other than except)
    local p; for p in "${PODS[@]}"; do
        [[ ${POD_NODE[$p]} == "$1" && $p != "${2:-}" ]] && { printf '%s' "$p"; return 0; }
    done; return 0
}

# podman for one node: run inside the node's network namespace (nsenter, not
# `ip netns exec`, which remounts /sys and hides the cgroup mounts) with the
# node's lab-local configuration and storage.
pm() {
    local node=$1; shift
    local d; d=$(node_dir "$node")
    CONTAINERS_CONF=$d/podman/containers.conf \
    CONTAINERS_STORAGE_CONF=$d/podman/storage.conf \
    TMPDIR=$d/podman/tmp \
        nsenter --net="/run/netns/$(ns_of "$node")" podman "$@"
}

current_plugin() {
    if [[ -f $LAB_DIR/plugin ]]; then cat "$LAB_DIR/plugin"; else printf '%s' "$LAB_PLUGIN"; fi
}

# shellcheck source=lab/topology.sh
source "$HERE/topology.sh"
# shellcheck source=lab/node-files.sh
source "$HERE/node-files.sh"
# shellcheck source=lab/pods.sh
source "$HERE/pods.sh"
# shellcheck source=lab/connectivity.sh
source "$HERE/connectivity.sh"

# ---------------------------------------------------------------- up / down / status

check_prereqs() {
    local c
    for c in ip nsenter podman runc conmon jq python3; do
        command -v "$c" >/dev/null || die "$c missing: run '$0 run' (bootstrap) or apt-get install ${APT_PACKAGES[*]}"
    done
    [[ -x $REF_CNI_DIR/loopback ]] || die "$REF_CNI_DIR/loopback missing: apt-get install containernetworking-plugins"
    [[ -x /bin/busybox ]] || die "/bin/busybox missing: apt-get install busybox-static"
    [[ $(id -u) == 0 ]] || die "must run as root (network namespaces, podman)"
}

cmd_up() {
    check_prereqs
    local plugin=$LAB_PLUGIN
    case $plugin in
        wasm-cni)
            [[ -x $DIST_DIR/bin/wasm-cni && -f $DIST_DIR/guests/default.wasm ]] ||
                die "$DIST_DIR/bin/wasm-cni or $DIST_DIR/guests/default.wasm missing: run scripts/build.sh (or LAB_PLUGIN=reference)"
            if [[ $LAB_GUEST == oci://* ]]; then
                need_ref "$LAB_GUEST"   # pulled (and checked) by every node below
            else
                # a student's guest must fit the runner's world before any node uses it
                local report
                report=$("$DIST_DIR/bin/wasm-cni" guest check "$LAB_GUEST") ||
                    die "LAB_GUEST=$LAB_GUEST is not a wasm-cni guest (see the reason above)"
                ipv4_only_guest "$report" &&
                    die "LAB_GUEST=$LAB_GUEST implements the 0.1.0 contract, which knows IPv4 only: use it with LAB_FAMILIES=4"
                LAB_GUEST=$(realpath "$LAB_GUEST")
            fi
            # pods wired by one guest must be removed by the same guest: switching a
            # running lab is `guest FILE`'s job
            if [[ -f $LAB_DIR/guest && $(cat "$LAB_DIR/guest") != "$LAB_GUEST" ]]; then
                die "the lab runs $(cat "$LAB_DIR/guest"); switch with '$0 guest $LAB_GUEST'"
            fi ;;
        reference) [[ -x $REF_CNI_DIR/bridge ]] || die "$REF_CNI_DIR/bridge missing" ;;
        *) die "LAB_PLUGIN must be wasm-cni or reference, not '$plugin'" ;;
    esac
    if [[ -f $LAB_DIR/plugin && $(cat "$LAB_DIR/plugin") != "$plugin" ]]; then
        die "the lab is up with LAB_PLUGIN=$(cat "$LAB_DIR/plugin"); run '$0 down' first"
    fi
    say "lab up (plugin: $plugin, families: $LAB_FAMILIES, lab dir: $LAB_DIR)"
    mkdir -p "$LAB_DIR"
    printf '%s\n' "$plugin" >"$LAB_DIR/plugin"
    printf '%s\n' "$LAB_FAMILIES" >"$LAB_DIR/families"
    [[ $plugin == wasm-cni ]] && printf '%s\n' "$LAB_GUEST" >"$LAB_DIR/guest"
    # podman's libcni keeps its result cache in /var/lib/cni; remember whether it was ours
    [[ -e /var/lib/cni || -e $LAB_DIR/created-var-lib-cni ]] || touch "$LAB_DIR/created-var-lib-cni"
    topology_up
    dns_up
    say "inter-node routes (router):"
    routes_up
    if [[ $plugin == wasm-cni && $LAB_GUEST == oci://* && -z $LAB_GUEST_DIGEST ]]; then
        say "guest pull (every node, in its own namespace):"
        pull_everywhere "$LAB_GUEST"
        printf '%s\n' "$LAB_GUEST_DIGEST" >"$LAB_DIR/guest-digest"
    fi
    say "node files ($LAB_DIR/nodes/*):"
    local node
    for node in "${NODES[@]}"; do node_files "$node" "$plugin"; done
    if [[ $plugin == wasm-cni ]]; then
        say "reconcile (every node, its conflist's peers):"
        for node in "${NODES[@]}"; do reconcile_node "$node"; done
    fi
    say "pods:"
    pods_up
    say "lab is up: '$0 test' checks connectivity, '$0 down' removes everything"
}

unmount_under() {  # unmount everything mounted below a directory, deepest first
    local dir=$1 m
    [[ -d $dir ]] || return 0
    awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

cmd_down() {
    say "lab down (lab dir: $LAB_DIR)"
    local node tmp_ns
    for node in "${NODES[@]}"; do
        local d; d=$(node_dir "$node")
        [[ -f $d/podman/containers.conf ]] || continue
        tmp_ns=0
        # podman must run in the node namespace: its DEL runs there
        if ! ns_exists "$node"; then ip netns add "$(ns_of "$node")"; tmp_ns=1; fi
        if [[ -n $(pm "$node" ps -aq 2>/dev/null) ]]; then
            pm "$node" rm -f -a -t 0 >/dev/null || say "  $node: podman rm reported errors"
            say "  $node: containers removed"
        fi
        pm "$node" ps -aq >/dev/null 2>&1 || true
        ((tmp_ns)) && ip netns del "$(ns_of "$node")"
    done
    # container namespaces / CNI cache entries left behind by a failed DEL
    if [[ -f $LAB_DIR/containers ]]; then
        local id sbox
        while read -r id sbox; do
            if [[ -n $sbox && -e $sbox && $sbox == /run/netns/* ]]; then
                ip netns del "${sbox#/run/netns/}" 2>/dev/null && say "  removed leftover netns $sbox"
            fi
            rm -f /var/lib/cni/results/"$NETWORK-$id"-* 2>/dev/null || true
        done <"$LAB_DIR/containers"
    fi
    dns_down
    for node in outside router "${NODES[@]}"; do
        if ns_exists "$node"; then ip netns del "$(ns_of "$node")"; say "  netns $(ns_of "$node"): removed"; fi
    done
    if [[ -d $LAB_DIR ]]; then
        if [[ -f $LAB_DIR/created-var-lib-cni && -d /var/lib/cni ]]; then
            find /var/lib/cni -depth -type d -empty -delete 2>/dev/null || true
        fi
        unmount_under "$LAB_DIR"
        if ! rm -rf "$LAB_DIR" 2>/dev/null; then
            chattr -R -i "$LAB_DIR" 2>/dev/null || true
            rm -rf "$LAB_DIR"
        fi
        say "  $LAB_DIR: removed"
    fi
    local cg
    for cg in /sys/fs/cgroup/*"$CGROUP_PARENT"; do
        [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    say "lab is down"
}

# need_ref oci://REF: a registry reference install-cni.sh would take
need_ref() {
    [[ ${1#oci://} =~ ^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$ ]] ||
        die "'$1' is not a registry reference (oci://host[:port]/repository[:tag][@sha256:<hex>])"
}

# ipv4_only_guest REPORT: in a dual-stack lab, is REPORT (guest check's) that of a
# 0.1.0 guest (IPv4 only; its ADD would refuse the conflist's lists)?
ipv4_only_guest() {
    dual_stack && [[ ${1%%$'\n'*} == *@0.1.0 ]]
}

# the guests `guest NAME` names: dist/guests/NAME.wasm
SHIPPED_GUESTS=(default host-gw vxlan)

cmd_guest() {  # FILE.wasm|default|host-gw|vxlan|oci://REF [--insecure] [--ca-file PEM] [--registry-config FILE]
    local file="" a
    while (($#)); do
        a=$1; shift
        case $a in
            --insecure) LAB_PULL_OPTS+=(--insecure) ;;
            --ca-file|--registry-config)
                (($#)) || die "usage: $0 guest FILE.wasm|default|host-gw|vxlan|oci://REF [--insecure] [--ca-file PEM] [--registry-config FILE]"
                LAB_PULL_OPTS+=("$a" "$1"); shift ;;
            *) [[ -z $file ]] || die "usage: $0 guest FILE.wasm|default|host-gw|vxlan|oci://REF [--insecure] [--ca-file PEM] [--registry-config FILE]"
               file=$a ;;
        esac
    done
    [[ -n $file ]] || die "usage: $0 guest FILE.wasm|default|host-gw|vxlan|oci://REF [--insecure] [--ca-file PEM] [--registry-config FILE]"
    [[ $file == oci://* || ${#LAB_PULL_OPTS[@]} -eq 0 || -n ${LAB_REGISTRY_INSECURE:-}${LAB_REGISTRY_CA:-}${LAB_REGISTRY_CONFIG:-} ]] ||
        die "--insecure, --ca-file and --registry-config are for 'guest oci://REF'"
    [[ -f $LAB_DIR/plugin && $(cat "$LAB_DIR/plugin") == wasm-cni ]] ||
        die "the lab is not up with wasm-cni: run '$0 up' first"
    local node pod digest=""
    if [[ $file == oci://* ]]; then
        need_ref "$file"
        # every node pulls it in its own namespace (the pull runs guest check's checks);
        # any failure: the lab keeps its guest and pods
        say "guest pull (every node, in its own namespace):"
        local current=$LAB_GUEST_DIGEST
        pull_everywhere "$file"
        digest=$LAB_GUEST_DIGEST LAB_GUEST_DIGEST=$current
    else
        [[ " ${SHIPPED_GUESTS[*]} " == *" $file "* && ! -e $file ]] && file=$DIST_DIR/guests/$file.wasm
        [[ -f $file ]] || die "$file: no such file"
        file=$(realpath "$file")
        say "guest check:"
        local report
        # (into the first node's cache: that node then need not compile it again)
        report=$("$DIST_DIR/bin/wasm-cni" guest check --cache-dir "$(node_dir "${NODES[0]}")/cache" "$file" 2>&1) ||
            die "$file does not fit: ${report#wasm-cni guest check: }
the lab keeps its current guest ($LAB_GUEST)"
        say "${report%%$'\n'*}"
        ipv4_only_guest "$report" &&
            die "$file implements the 0.1.0 contract, which knows IPv4 only, and this lab is dual-stack (LAB_FAMILIES=4,6): use it in a lab with LAB_FAMILIES=4
the lab keeps its current guest ($LAB_GUEST)"
    fi
    say "pods: removing them with the current guest ($(node_guest_name))"
    for node in $(workers); do
        for pod in $(pods_on "$node"); do
            [[ $(container_state "$node" "$pod") == absent ]] || pm "$node" rm -f -t 0 "$pod" >/dev/null
        done
    done
    # every node, the master too: an inter-node policy's links and routes are there too
    for node in "${NODES[@]}"; do reset_node_policy "$node"; done
    say "nodes: old policy state removed (bridge, links, uplink routes, nftables table, store)"
    LAB_GUEST=$file LAB_GUEST_DIGEST=$digest
    printf '%s\n' "$file" >"$LAB_DIR/guest"
    if [[ -n $digest ]]; then printf '%s\n' "$digest" >"$LAB_DIR/guest-digest"
    else rm -f "$LAB_DIR/guest-digest"; fi
    say "node files:"
    for node in "${NODES[@]}"; do node_files "$node" wasm-cni; done
    say "reconcile (every node, its conflist's peers):"
    for node in "${NODES[@]}"; do reconcile_node "$node"; done
    say "pods:"
    pods_up
    say "lab: the nodes now run $(node_guest_name)${digest:+ (${file#oci://}, pinned $digest)}; '$0 test' checks connectivity"
}

# peers [all | none | NODE...]: the nodes every conflist lists as peers (the cluster as
# `kubectl get nodes` would show it after nodes leave or join), then reconcile on every
# node: a departed node's routes, FDB and neighbour entries go. No argument: show them.
cmd_peers() {
    [[ -f $LAB_DIR/plugin && $(cat "$LAB_DIR/plugin") == wasm-cni ]] ||
        die "the lab is not up with wasm-cni: run '$0 up' first (peers are wasm-cni's)"
    if (($# == 0)); then say "peers: $(peer_nodes | tr '\n' ' ')"; return 0; fi
    local node kept=()
    case $* in
        all) rm -f "$LAB_DIR/peers" ;;
        none) : >"$LAB_DIR/peers" ;;
        *)
            for node in "$@"; do
                [[ -n ${NODE_IP[$node]:-} ]] || die "unknown node '$node' (nodes: ${NODES[*]}; or all, none)"
                kept+=("$node")
            done
            printf '%s\n' "${kept[*]}" >"$LAB_DIR/peers" ;;
    esac
    say "peers: $(peer_nodes | tr '\n' ' ')"
    say "node files:"
    for node in "${NODES[@]}"; do node_files "$node" wasm-cni; done
    say "reconcile (every node, its conflist's peers):"
    for node in "${NODES[@]}"; do reconcile_node "$node"; done
}

cmd_status() {
    say "lab dir: $LAB_DIR ($( [[ -d $LAB_DIR ]] && echo present || echo absent))"
    say "plugin:  $( [[ -f $LAB_DIR/plugin ]] && cat "$LAB_DIR/plugin" || echo "- (LAB_PLUGIN=$LAB_PLUGIN)")"
    if [[ $(cat "$LAB_DIR/plugin" 2>/dev/null) == wasm-cni ]]; then
        say "guest:   $LAB_GUEST${LAB_GUEST_DIGEST:+ ($LAB_GUEST_DIGEST)}"
        say "inter-node policy: $(internode_policy); peers: $(peer_nodes | tr '\n' ' ')"
    fi
    say "families: $LAB_FAMILIES"
    say "inter-node routes: $(routes_state)"
    local dpid
    if dpid=$(dns_pid); then say "resolver: on $DNS_NODE, $DNS_NAME (pid $dpid, log $LAB_DIR/dns.log)"
    else say "resolver: not running"; fi
    local node fam_opt=-4
    dual_stack && fam_opt=""
    for node in router outside "${NODES[@]}"; do
        local n; n=$(ns_of "$node")
        if ns_exists "$node"; then
            # shellcheck disable=SC2086 # no option at all in dual-stack: both families
            say "netns $n: $(ip -n "$n" -o $fam_opt addr show scope global | awk '{printf "%s=%s ", $2, $4}')"
        else say "netns $n: absent"; fi
    done
    if ns_exists router; then
        say "router routes:"; ip -n "$(ns_of router)" route show | sed 's/^/  /'
        dual_stack && ip -n "$(ns_of router)" -6 route show | grep -v '^fe80::' | sed 's/^/  /'
        if in_ns router nft list table ip lab_nat >/dev/null 2>&1; then
            say "router NAT: $HOST_NET -> out0 masquerade"; else say "router NAT: absent"; fi
        if dual_stack; then
            if in_ns router nft list table ip6 lab_nat6 >/dev/null 2>&1; then
                say "router NAT: $HOST_NET6 -> out0 masquerade"; else say "router NAT (IPv6): absent"; fi
        fi
    fi
    for node in $(workers); do
        if ns_exists "$node" && [[ -f $(node_dir "$node")/podman/containers.conf ]]; then
            say "pods on $node:"
            pm "$node" ps -a --format '  {{.Names}}  {{.Status}}  {{.ID}}' 2>&1 || true
            local pod
            for pod in $(pods_on "$node"); do
                [[ $(container_state "$node" "$pod") == running ]] || continue
                say "  $pod ip: $(pod_ip "$pod")"
                dual_stack && say "  $pod ip6: $(pod_ip6 "$pod")"
            done
        fi
    done
}

# ---------------------------------------------------------------- exec / run

cmd_exec() {
    (($# >= 2)) || die "usage: $0 exec POD|NODE CMD..."
    local target=$1; shift
    if [[ -n ${POD_NODE[$target]:-} ]]; then
        pm "${POD_NODE[$target]}" exec "$target" "$@"
    elif [[ $target == router || $target == outside || -n ${NODE_IP[$target]:-} ]]; then
        ns_exists "$target" || die "netns $(ns_of "$target") missing"
        in_ns "$target" "$@"
    else die "unknown pod or node '$target' (pods: ${PODS[*]}; nodes: ${NODES[*]} router outside)"; fi
}

cmd_podman() {  # NODE ARGS...: podman as the node runs it (its namespace, files, storage)
    (($# >= 1)) || die "usage: $0 podman NODE ARGS..."
    local node=$1; shift
    [[ -n ${NODE_IP[$node]:-} ]] || die "unknown node '$node' (nodes: ${NODES[*]})"
    ns_exists "$node" && [[ -f $(node_dir "$node")/podman/containers.conf ]] ||
        die "node $node is not up: run '$0 up'"
    pm "$node" "$@"
}

cmd_run() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        say "bootstrap: installing ${missing[*]}"
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    else say "bootstrap: packages already installed"; fi
    if [[ $LAB_PLUGIN == wasm-cni ]]; then
        if [[ -x $DIST_DIR/bin/wasm-cni && -f $DIST_DIR/guests/default.wasm ]]; then
            say "bootstrap: $DIST_DIR already built"
        else
            [[ -x $REPO/scripts/build.sh ]] || die "scripts/build.sh missing: cannot build $DIST_DIR (or use LAB_PLUGIN=reference)"
            say "bootstrap: building (scripts/build.sh)"
            "$REPO/scripts/build.sh"
        fi
    fi
    cmd_up
    trap - ERR
    cmd_test
}

usage() {
    cat <<EOF
usage: $0 COMMAND
  run              bootstrap (apt packages, scripts/build.sh if dist/ is missing), up, test
  up               build the 3-node lab and start pod-1..pod-4 (idempotent)
  test             ping matrix from every pod and worker node; exit 1 on any mismatch
  status           what exists: namespaces, addresses, routes, pods
  routes up|down   add/remove the router's inter-node routes (podCIDR via node)
  exec POD|NODE CMD...   run a command in a pod (podman exec) or a lab namespace
  podman NODE ARGS...    podman as that node runs it (e.g. 'podman worker-1 ps -a')
  guest FILE|default|host-gw|vxlan
                   check FILE (wasm-cni guest check), then re-create the pods
                   under it, every node reconciled: no runner rebuild (a name:
                   dist/guests/NAME.wasm; host-gw and vxlan route between nodes
                   themselves, so cross-node checks pass with routes down)
  guest oci://REF [--insecure] [--ca-file PEM] [--registry-config FILE]
                   every node pulls REF in its own namespace (checked, pinned,
                   precompiled), then the pods are re-created under it
  peers [all|none|NODE...]  the nodes every conflist lists as peers (no argument:
                   show them), then 'wasm-cni reconcile' on every node
  down             remove everything (containers, podman storage, namespaces, lab files)
environment: LAB_PLUGIN=wasm-cni|reference (default wasm-cni), LAB_FAMILIES=4|4,6
  (IPv4 only, default, or dual-stack; kept by 'up' until 'down'), LAB_GUEST (the guest
  for 'up', default dist/guests/default.wasm), LAB_DIR (default
  /var/lib/wasm-cni-lab), LAB_PREFIX (namespace prefix, default lab), DIST_DIR,
  LAB_MASQ=all|external (override the expected masquerade scope),
  LAB_INTERNODE=none|host-gw|vxlan (override the guest's expected inter-node policy),
  LAB_REGISTRY_INSECURE=1, LAB_REGISTRY_CA=PEM, LAB_REGISTRY_CONFIG=FILE (oci:// guests)
EOF
}

UP_FAILED=0
on_up_error() {
    ((UP_FAILED)) && return 0
    UP_FAILED=1
    say "lab up failed (the lab is left half-built for inspection)." >&2
    say "  plugin logs: $LAB_DIR/nodes/*/log/wasm-cni.log, podman events: $LAB_DIR/nodes/*/podman/events.log" >&2
    say "  '$0 status' shows what exists, '$0 down' removes it." >&2
}

on_guest_error() {
    ((UP_FAILED)) && return 0
    UP_FAILED=1
    say "lab guest failed: pods may be missing (plugin logs: $LAB_DIR/nodes/*/log/wasm-cni.log)." >&2
    say "  '$0 guest default' goes back to the default guest; '$0 down' removes the lab." >&2
}

main() {
    local cmd=${1:-}; shift || true
    case $cmd in
        down|status|help|-h|--help|"") ;;
        *) check_families ;;
    esac
    case $cmd in
        up|run) set -E; trap on_up_error ERR ;;
    esac
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        test) cmd_test ;;
        status) cmd_status ;;
        run) cmd_run ;;
        exec) cmd_exec "$@" ;;
        podman) cmd_podman "$@" ;;
        guest) set -E; trap on_guest_error ERR; cmd_guest "$@" ;;
        peers) cmd_peers "$@" ;;
        routes)
            case ${1:-} in
                up) say "inter-node routes (router):"; routes_up ;;
                down) say "inter-node routes (router):"; routes_down ;;
                *) usage >&2; exit 2 ;;
            esac ;;
        -h|--help|help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
