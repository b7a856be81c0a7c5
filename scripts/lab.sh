#!/usr/bin/env bash
# The course lab's 3-node cluster, built from network namespaces on one machine.
# Pods are run by podman through wasm-cni (or the reference plugins, LAB_PLUGIN=reference).
# See docs/lab.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$REPO/scripts/lab

LAB_DIR=${LAB_DIR:-/var/lib/wasm-cni-lab}
LAB_PREFIX=${LAB_PREFIX:-lab}
LAB_PLUGIN=${LAB_PLUGIN:-wasm-cni}
DIST_DIR=${DIST_DIR:-$REPO/dist}
# the guest the nodes use (a student's own component, checked first); `guest FILE`
# switches a running lab and remembers the choice in $LAB_DIR/guest
if [[ -z ${LAB_GUEST:-} ]]; then
    LAB_GUEST=$DIST_DIR/guests/default.wasm
    [[ -f $LAB_DIR/guest ]] && LAB_GUEST=$(cat "$LAB_DIR/guest")
fi
REF_CNI_DIR=${REF_CNI_DIR:-/usr/lib/cni}

NETWORK=wasm-cni                 # conflist name = podman network name
IMAGE=localhost/lab-busybox:latest
HOST_NET=10.0.0.0/16
POD_NET=200.200.0.0/16
ROUTER_VPC_IP=10.0.0.1
ROUTER_OUT_IP=192.0.2.1
OUTSIDE_IP=192.0.2.10
CGROUP_PARENT=/wasm-cni-$LAB_PREFIX
APT_PACKAGES=(containernetworking-plugins podman runc conmon busybox-static iproute2
              iputils-ping jq bats shellcheck nftables iptables uidmap)

NODES=(master worker-1 worker-2)
declare -A NODE_IP=([master]=10.0.0.2 [worker-1]=10.0.0.3 [worker-2]=10.0.0.4)
declare -A POD_CIDR=([master]=200.200.0.0/24 [worker-1]=200.200.1.0/24 [worker-2]=200.200.2.0/24)
# same placement as pods.yaml: two pods per worker, none on the master
PODS=(pod-1 pod-2 pod-3 pod-4)
declare -A POD_NODE=([pod-1]=worker-1 [pod-4]=worker-1 [pod-2]=worker-2 [pod-3]=worker-2)

say() { printf '%s\n' "$*"; }
die() { printf 'lab: %s\n' "$*" >&2; exit 1; }

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

# ---------------------------------------------------------------- topology

ensure_ns() {
    local n; n=$(ns_of "$1")
    if ns_exists "$1"; then say "  netns $n: already there"; else
        ip netns add "$n"; say "  netns $n: created"; fi
    ip -n "$n" link set lo up
}

# veth pair whose ends are created directly inside two lab namespaces
ensure_veth() {  # ns_a if_a ns_b if_b
    local a b; a=$(ns_of "$1"); b=$(ns_of "$3")
    if ip -n "$a" link show "$2" >/dev/null 2>&1; then
        say "  link $1/$2 <-> $3/$4: already there"; return 0; fi
    ip -n "$b" link del "$4" 2>/dev/null || true
    ip -n "$a" link add "$2" type veth peer name "$4" netns "$b"
    say "  link $1/$2 <-> $3/$4: created"
}

ensure_addr() {  # node ifname cidr
    local n; n=$(ns_of "$1")
    local have; have=$(ip -n "$n" -o addr show dev "$2")
    [[ $have == *"inet $3 "* ]] && return 0
    ip -n "$n" addr add "$3" dev "$2"
}

topology_up() {
    say "topology:"
    local node
    for node in router outside "${NODES[@]}"; do ensure_ns "$node"; done
    local r; r=$(ns_of router)

    # router: the VPC's L2 segment is a bridge inside the router namespace
    if ! ip -n "$r" link show vpc-br >/dev/null 2>&1; then
        ip -n "$r" link add vpc-br type bridge; say "  bridge router/vpc-br: created"
    else say "  bridge router/vpc-br: already there"; fi
    ensure_addr router vpc-br "$ROUTER_VPC_IP/16"
    ip -n "$r" link set vpc-br up
    in_ns router sysctl -qw net.ipv4.ip_forward=1
    # no ICMP redirects: a node that learnt "200.200.2.0/24 is at 10.0.0.4" from a
    # redirect would keep reaching it after `routes down`.
    in_ns router sysctl -qw net.ipv4.conf.all.send_redirects=0
    in_ns router sysctl -qw net.ipv4.conf.default.send_redirects=0
    in_ns router sysctl -qw net.ipv4.conf.vpc-br.send_redirects=0

    # router <-> outside host. The outside host only knows its own link subnet:
    # it has no route back to the pod network, so a pod reaching it proves the
    # node masqueraded the traffic.
    ensure_veth router out0 outside eth0
    ensure_addr router out0 "$ROUTER_OUT_IP/24"
    ip -n "$r" link set out0 up
    ensure_addr outside eth0 "$OUTSIDE_IP/24"
    ip -n "$(ns_of outside)" link set eth0 up
    # The router is also the VPC's NAT gateway (like a cloud NAT): node addresses
    # (10.0.0.0/16) leaving through out0 are masqueraded to 192.0.2.1. Pod addresses
    # are NOT: a pod packet only gets out if its node already rewrote it to 10.0.0.x.
    if in_ns router nft list table ip lab_nat >/dev/null 2>&1; then
        say "  router NAT (10.0.0.0/16 -> out0): already there"
    else
        in_ns router nft -f - <<EOF
table ip lab_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "out0" ip saddr $HOST_NET masquerade
    }
}
EOF
        say "  router NAT (10.0.0.0/16 -> out0): created"
    fi

    for node in "${NODES[@]}"; do
        local n; n=$(ns_of "$node")
        ensure_veth router "to-$node" "$node" vpc0
        ip -n "$r" link set "to-$node" master vpc-br
        ip -n "$r" link set "to-$node" up
        ensure_addr "$node" vpc0 "${NODE_IP[$node]}/16"
        ip -n "$n" link set vpc0 up
        ip -n "$n" route replace default via "$ROUTER_VPC_IP" dev vpc0
        # what kubeadm requires of a node; only inside the lab namespace
        in_ns "$node" sysctl -qw net.ipv4.ip_forward=1
        in_ns "$node" sysctl -qw net.ipv4.conf.all.accept_redirects=0
        in_ns "$node" sysctl -qw net.ipv4.conf.vpc0.accept_redirects=0
    done
}

# ---------------------------------------------------------------- inter-node routes

route_present() {  # node -> 0 if the router routes that node's podCIDR to it
    local r; r=$(ip -n "$(ns_of router)" route show "${POD_CIDR[$1]}" 2>/dev/null)
    [[ $r == *"via ${NODE_IP[$1]} "* ]]
}

routes_state() {
    ns_exists router || { printf 'absent'; return 0; }
    local node up=0
    for node in "${NODES[@]}"; do route_present "$node" && up=$((up + 1)); done
    if ((up == ${#NODES[@]})); then printf 'up'
    elif ((up == 0)); then printf 'down'
    else printf 'partial'; fi
}

routes_up() {
    ns_exists router || die "no router namespace: run '$0 up' first"
    local node
    for node in "${NODES[@]}"; do
        if route_present "$node"; then say "  route ${POD_CIDR[$node]} via ${NODE_IP[$node]}: already there"
        else
            ip -n "$(ns_of router)" route replace "${POD_CIDR[$node]}" via "${NODE_IP[$node]}" dev vpc-br
            say "  route ${POD_CIDR[$node]} via ${NODE_IP[$node]}: added"
        fi
    done
}

routes_down() {
    ns_exists router || { say "  no router namespace: no routes"; return 0; }
    local node
    for node in "${NODES[@]}"; do
        if route_present "$node"; then
            ip -n "$(ns_of router)" route del "${POD_CIDR[$node]}"
            say "  route ${POD_CIDR[$node]} via ${NODE_IP[$node]}: removed"
        else say "  route ${POD_CIDR[$node]}: already absent"; fi
    done
}

# ---------------------------------------------------------------- node files

write_conflist() {  # node plugin
    local node=$1 plugin=$2 d; d=$(node_dir "$node")
    if [[ $plugin == wasm-cni ]]; then
        jq -n --arg name "$NETWORK" --arg guest "$d/guests/$(basename "$LAB_GUEST")" \
              --arg host "$HOST_NET" --arg podnet "$POD_NET" --arg sub "${POD_CIDR[$node]}" \
              --arg cache "$d/cache" --arg state "$d/state" --arg log "$d/log/wasm-cni.log" '
            {cniVersion: "1.0.0", name: $name, plugins: [{
                type: "wasm-cni", guest: $guest,
                myHostNetwork: $host, myPodNetwork: $podnet, myPodSubnet: $sub,
                cacheDir: $cache, stateDir: $state, logFile: $log }]}'
    else
        jq -n --arg name "$NETWORK" --arg sub "${POD_CIDR[$node]}" --arg data "$d/ipam" '
            {cniVersion: "1.0.0", name: $name, plugins: [{
                type: "bridge", bridge: "cni0", isGateway: true, ipMasq: true,
                ipam: {type: "host-local", ranges: [[{subnet: $sub}]],
                       routes: [{dst: "0.0.0.0/0"}], dataDir: $data}}]}'
    fi
}

copy_if_changed() {  # src dst mode
    if [[ -f $2 ]] && cmp -s "$1" "$2"; then return 1; fi
    # aside and rename: the runner mmaps binaries and guests, never rewrite one in place
    install -m "$3" "$1" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
}

node_files() {  # node plugin
    local node=$1 plugin=$2 d f changed=()
    d=$(node_dir "$node")
    mkdir -p "$d"/{bin,guests,net.d,cache,state,log,ipam} "$d"/podman/{tmp,root,runroot,volumes}
    if [[ $plugin == wasm-cni ]]; then
        copy_if_changed "$DIST_DIR/bin/wasm-cni" "$d/bin/wasm-cni" 0755 && changed+=(bin/wasm-cni)
        local g report; g=$(basename "$LAB_GUEST")
        copy_if_changed "$LAB_GUEST" "$d/guests/$g" 0644 && changed+=("guests/$g")
        # precompile into the node's cacheDir, as installing on a real node does
        # (scripts/node/install-cni.sh): no pod's ADD pays the compile (seconds for a
        # Python guest); a hit costs milliseconds
        report=$("$d/bin/wasm-cni" guest check --cache-dir "$d/cache" "$d/guests/$g" 2>&1) ||
            die "$node: the runner refuses $g: $report"
        [[ $report == *"already compiled in"* ]] || changed+=("cache/ ($g precompiled)")
    else
        copy_if_changed "$REF_CNI_DIR/bridge" "$d/bin/bridge" 0755 && changed+=(bin/bridge)
    fi
    # reference plugins a node's /opt/cni/bin normally holds too
    for f in loopback host-local; do
        copy_if_changed "$REF_CNI_DIR/$f" "$d/bin/$f" 0755 && changed+=("bin/$f")
    done
    local conf; conf=$(write_conflist "$node" "$plugin")
    if [[ ! -f $d/net.d/10-wasm-cni.conflist ]] || [[ $(cat "$d/net.d/10-wasm-cni.conflist") != "$conf" ]]; then
        printf '%s\n' "$conf" >"$d/net.d/10-wasm-cni.conflist"; changed+=(net.d/10-wasm-cni.conflist)
    fi
    for f in containers.conf storage.conf; do
        local out; out=$(sed -e "s|@NODE_DIR@|$d|g" -e "s|@NETWORK@|$NETWORK|g" "$HERE/$f.in")
        if [[ ! -f $d/podman/$f ]] || [[ $(cat "$d/podman/$f") != "$out" ]]; then
            printf '%s\n' "$out" >"$d/podman/$f"; changed+=("podman/$f")
        fi
    done
    if ((${#changed[@]})); then say "  $node: wrote ${changed[*]}"
    else say "  $node: files already there"; fi
}

# ---------------------------------------------------------------- pods

container_state() {  # node pod -> running|exited|...|absent
    pm "$1" container inspect -f '{{.State.Status}}' "$2" 2>/dev/null || printf 'absent'
}

pod_ip() {  # pod -> its address as podman recorded it
    local node=${POD_NODE[$1]}
    pm "$node" container inspect "$1" 2>/dev/null |
        jq -r --arg n "$NETWORK" '.[0].NetworkSettings.Networks[$n].IPAddress // empty'
}

record_container() {  # node pod: remember id + netns so `down` can clean up after a failed DEL
    local node=$1 pod=$2 line
    line=$(pm "$node" container inspect -f '{{.Id}} {{.NetworkSettings.SandboxKey}}' "$pod")
    grep -qxF "$line" "$LAB_DIR/containers" 2>/dev/null || printf '%s\n' "$line" >>"$LAB_DIR/containers"
}

# podman validates every conflist (VERSION to each plugin) and silently drops one a
# plugin denies; catch that here with the reason instead of a vague "network not found".
network_check() {  # node
    local node=$1 d out
    d=$(node_dir "$node")
    out=$(pm "$node" network ls --format '{{.Name}}' 2>&1) || die "$node: podman network ls failed: $out"
    grep -qx "$NETWORK" <<<"$out" && return 0
    local conf=$d/net.d/10-wasm-cni.conflist type version
    type=$(jq -r '.plugins[0].type' "$conf")
    version=$(jq -c '{cniVersion, name} + .plugins[0]' "$conf" |
        CNI_COMMAND=VERSION CNI_PATH=$d/bin "$d/bin/$type" 2>&1) || true
    die "$node: podman did not load $conf.
podman said: $out
'$type' VERSION answered: $version"
}

pods_up() {
    local node pod
    for node in $(workers); do
        network_check "$node"
        if pm "$node" image exists "$IMAGE"; then say "  $node: image $IMAGE already there"
        else
            "$HERE/build-image.sh" "$LAB_DIR/busybox-rootfs.tar"
            pm "$node" import --quiet --change 'CMD ["/bin/sh"]' "$LAB_DIR/busybox-rootfs.tar" "$IMAGE" >/dev/null
            say "  $node: image $IMAGE imported"
        fi
    done
    rm -f "$LAB_DIR/busybox-rootfs.tar"
    for pod in "${PODS[@]}"; do
        node=${POD_NODE[$pod]}
        local state; state=$(container_state "$node" "$pod")
        case $state in
            running) say "  $pod on $node: already running ($(pod_ip "$pod"))"; continue ;;
            absent) ;;
            *) say "  $pod on $node: was $state, recreating"; pm "$node" rm -f -t 0 "$pod" >/dev/null ;;
        esac
        pm "$node" run -d --name "$pod" --hostname "$pod" --network "$NETWORK" \
            --pull never --cap-add NET_RAW --cgroup-parent "$CGROUP_PARENT" \
            "$IMAGE" sleep 2147483647 >/dev/null
        record_container "$node" "$pod"
        say "  $pod on $node: started ($(pod_ip "$pod"))"
    done
}

# ---------------------------------------------------------------- up / down / status

check_prereqs() {
    local c
    for c in ip nsenter podman runc conmon jq; do
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
            # a student's guest must fit the runner's world before any node uses it
            "$DIST_DIR/bin/wasm-cni" guest check "$LAB_GUEST" >/dev/null ||
                die "LAB_GUEST=$LAB_GUEST is not a wasm-cni guest (see the reason above)"
            LAB_GUEST=$(realpath "$LAB_GUEST")
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
    say "lab up (plugin: $plugin, lab dir: $LAB_DIR)"
    mkdir -p "$LAB_DIR"
    printf '%s\n' "$plugin" >"$LAB_DIR/plugin"
    [[ $plugin == wasm-cni ]] && printf '%s\n' "$LAB_GUEST" >"$LAB_DIR/guest"
    # podman's libcni keeps its result cache in /var/lib/cni; remember whether it was ours
    [[ -e /var/lib/cni || -e $LAB_DIR/created-var-lib-cni ]] || touch "$LAB_DIR/created-var-lib-cni"
    topology_up
    say "inter-node routes (router):"
    routes_up
    say "node files ($LAB_DIR/nodes/*):"
    local node
    for node in "${NODES[@]}"; do node_files "$node" "$plugin"; done
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

# What a policy set up on a node that the next policy must not find: the default
# policy's bridge, links of ours a failed DEL left, the network's nftables table, and
# the store (addresses, node setup fingerprint).
reset_node_policy() {  # node
    local node=$1 n l t
    n=$(ns_of "$node")
    for l in $(ip -n "$n" -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}'); do
        [[ $l == cni0 || $l == wc* ]] && ip -n "$n" link del "$l" 2>/dev/null || true
    done
    for t in $(in_ns "$node" nft list tables ip 2>/dev/null | awk '$3 ~ /^wasm_cni_/ {print $3}'); do
        in_ns "$node" nft delete table ip "$t"
    done
    rm -rf "$(node_dir "$node")/state"
    mkdir -p "$(node_dir "$node")/state"
}

cmd_guest() {  # FILE.wasm|default
    (($# == 1)) || die "usage: $0 guest FILE.wasm|default"
    [[ -f $LAB_DIR/plugin && $(cat "$LAB_DIR/plugin") == wasm-cni ]] ||
        die "the lab is not up with wasm-cni: run '$0 up' first"
    local file=$1 node pod
    [[ $file == default ]] && file=$DIST_DIR/guests/default.wasm
    [[ -f $file ]] || die "$file: no such file"
    file=$(realpath "$file")
    say "guest check:"
    local report
    # (into the first node's cache: that node then need not compile it again)
    report=$("$DIST_DIR/bin/wasm-cni" guest check --cache-dir "$(node_dir "${NODES[0]}")/cache" "$file" 2>&1) ||
        die "$file does not fit: ${report#wasm-cni guest check: }
the lab keeps its current guest ($LAB_GUEST)"
    say "${report%%$'\n'*}"
    say "pods: removing them with the current guest ($(basename "$LAB_GUEST"))"
    for node in $(workers); do
        for pod in $(pods_on "$node"); do
            [[ $(container_state "$node" "$pod") == absent ]] || pm "$node" rm -f -t 0 "$pod" >/dev/null
        done
        reset_node_policy "$node"
    done
    say "nodes: old policy state removed (bridge, links, nftables table, store)"
    LAB_GUEST=$file
    printf '%s\n' "$file" >"$LAB_DIR/guest"
    say "node files:"
    for node in "${NODES[@]}"; do node_files "$node" wasm-cni; done
    say "pods:"
    pods_up
    say "lab: the nodes now run $(basename "$file"); '$0 test' checks connectivity"
}

cmd_status() {
    say "lab dir: $LAB_DIR ($( [[ -d $LAB_DIR ]] && echo present || echo absent))"
    say "plugin:  $( [[ -f $LAB_DIR/plugin ]] && cat "$LAB_DIR/plugin" || echo "- (LAB_PLUGIN=$LAB_PLUGIN)")"
    [[ $(cat "$LAB_DIR/plugin" 2>/dev/null) == wasm-cni ]] && say "guest:   $LAB_GUEST"
    say "inter-node routes: $(routes_state)"
    local node
    for node in router outside "${NODES[@]}"; do
        local n; n=$(ns_of "$node")
        if ns_exists "$node"; then
            say "netns $n: $(ip -n "$n" -o -4 addr show scope global | awk '{printf "%s=%s ", $2, $4}')"
        else say "netns $n: absent"; fi
    done
    if ns_exists router; then
        say "router routes:"; ip -n "$(ns_of router)" route show | sed 's/^/  /'
        if in_ns router nft list table ip lab_nat >/dev/null 2>&1; then
            say "router NAT: $HOST_NET -> out0 masquerade"; else say "router NAT: absent"; fi
    fi
    for node in $(workers); do
        if ns_exists "$node" && [[ -f $(node_dir "$node")/podman/containers.conf ]]; then
            say "pods on $node:"
            pm "$node" ps -a --format '  {{.Names}}  {{.Status}}  {{.ID}}' 2>&1 || true
            local pod
            for pod in $(pods_on "$node"); do
                [[ $(container_state "$node" "$pod") == running ]] && say "  $pod ip: $(pod_ip "$pod")"
            done
        fi
    done
}

# ---------------------------------------------------------------- test

# What the plugin masquerades (decides what works without inter-node routes):
#   reference: bridge ipMasq NATs everything from a pod that is not for its own subnet.
#   wasm-cni:  the course lab's rule: only traffic leaving the cluster (not for
#              myPodNetwork, not for myHostNetwork) is NATed.
masq_scope() {
    if [[ -n ${LAB_MASQ:-} ]]; then printf '%s' "$LAB_MASQ"; return 0; fi
    case $(current_plugin) in reference) printf 'all' ;; *) printf 'external' ;; esac
}

# expect KIND SRC_NODE DST_NODE -> sets EXP (pass|FAIL) and WHY
expect() {
    local kind=$1 src=$2 dst=$3 masq; masq=$(masq_scope)
    EXP=pass; WHY=""
    case $kind in
        pod-pod-same|pod-node-own|node-pod-same) WHY="same node" ;;
        pod-outside) WHY="masqueraded to the node's 10.0.0.x" ;;
        pod-pod-other)
            if ! route_present "$dst"; then EXP=FAIL; WHY="router: no route to ${POD_CIDR[$dst]}"
            elif [[ $masq != all ]] && ! route_present "$src"; then EXP=FAIL; WHY="reply: router has no route to ${POD_CIDR[$src]}"
            elif [[ $masq == all ]]; then WHY="via router (source NATed)"
            else WHY="via router"; fi ;;
        pod-node-other)
            if [[ $masq == all ]]; then WHY="masqueraded, direct on the VPC"
            elif route_present "$src"; then WHY="not NATed: reply via router route"
            else EXP=FAIL; WHY="not NATed: reply to ${POD_CIDR[$src]} has no route at the router"; fi ;;
        node-pod-other)
            if route_present "$dst"; then WHY="via router"
            else EXP=FAIL; WHY="router: no route to ${POD_CIDR[$dst]}"; fi ;;
    esac
}

ROWS=()
MISMATCHES=0
check() {  # src_label dst_label dst_ip kind src_node dst_node -- command...
    local src=$1 dst=$2 ip=$3 kind=$4 sn=$5 dn=$6; shift 7
    expect "$kind" "$sn" "$dn"
    local res=FAIL status=OK
    if [[ -n $ip ]] && "$@" ping -c 1 -W 1 "$ip" >/dev/null 2>&1; then res=pass; fi
    [[ $res == "$EXP" ]] || { status=MISMATCH; MISMATCHES=$((MISMATCHES + 1)); }
    ROWS+=("$(printf '%-22s %-24s %-15s %-8s %-6s %-8s %s' "$src" "$dst" "$kind" "$EXP" "$res" "$status" "$WHY")")
}

other_worker() { [[ $1 == worker-1 ]] && echo worker-2 || echo worker-1; }

cmd_test() {
    local node pod
    for node in router outside "${NODES[@]}"; do ns_exists "$node" || die "netns $(ns_of "$node") missing: run '$0 up'"; done
    declare -A IP=()
    for pod in "${PODS[@]}"; do
        IP[$pod]=$(pod_ip "$pod")
        [[ -n ${IP[$pod]} ]] || say "warning: $pod has no address (not running?)"
    done
    local state; state=$(routes_state)
    say "lab test: plugin $(current_plugin), masquerade scope $(masq_scope), inter-node routes $state"
    for pod in "${PODS[@]}"; do
        node=${POD_NODE[$pod]}
        local other peer remote
        other=$(other_worker "$node")
        peer=$(first_pod_on "$node" "$pod")
        remote=$(first_pod_on "$other")
        local src="$pod(${IP[$pod]:-?})"
        local -a run=(pm "$node" exec "$pod")
        check "$src" "$peer(${IP[$peer]:-?})" "${IP[$peer]}" pod-pod-same "$node" "$node" -- "${run[@]}"
        check "$src" "$remote(${IP[$remote]:-?})" "${IP[$remote]}" pod-pod-other "$node" "$other" -- "${run[@]}"
        check "$src" "$node(${NODE_IP[$node]})" "${NODE_IP[$node]}" pod-node-own "$node" "$node" -- "${run[@]}"
        check "$src" "$other(${NODE_IP[$other]})" "${NODE_IP[$other]}" pod-node-other "$node" "$other" -- "${run[@]}"
        check "$src" "outside($OUTSIDE_IP)" "$OUTSIDE_IP" pod-outside "$node" outside -- "${run[@]}"
    done
    for node in $(workers); do
        local other local_pod remote
        other=$(other_worker "$node")
        local_pod=$(first_pod_on "$node")
        remote=$(first_pod_on "$other")
        local -a run=(in_ns "$node")
        check "$node(${NODE_IP[$node]})" "$local_pod(${IP[$local_pod]:-?})" "${IP[$local_pod]}" node-pod-same "$node" "$node" -- "${run[@]}"
        check "$node(${NODE_IP[$node]})" "$remote(${IP[$remote]:-?})" "${IP[$remote]}" node-pod-other "$node" "$other" -- "${run[@]}"
    done
    printf '%-22s %-24s %-15s %-8s %-6s %-8s %s\n' SOURCE TARGET CHECK EXPECTED RESULT STATUS WHY
    printf '%s\n' "${ROWS[@]}"
    if [[ $state != up ]]; then
        say "note: without inter-node routes the router cannot deliver to another node's pod"
        say "      subnet, so pod->pod and node->pod across nodes fail. A pod still reaches the"
        say "      outside host (and, if the plugin masquerades host-network traffic, other"
        say "      nodes) because the node rewrites its source to the node's 10.0.0.x address."
    fi
    if ((MISMATCHES)); then say "RESULT: $MISMATCHES mismatch(es)"; return 1; fi
    say "RESULT: all ${#ROWS[@]} checks as expected"
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
  guest FILE|default     check FILE (wasm-cni guest check), then re-create the pods
                   under it: no runner rebuild ('default': dist/guests/default.wasm)
  down             remove everything (containers, podman storage, namespaces, lab files)
environment: LAB_PLUGIN=wasm-cni|reference (default wasm-cni), LAB_GUEST (the guest
  for 'up', default dist/guests/default.wasm), LAB_DIR (default
  /var/lib/wasm-cni-lab), LAB_PREFIX (namespace prefix, default lab), DIST_DIR,
  LAB_MASQ=all|external (override the expected masquerade scope)
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
        up|run) set -E; trap on_up_error ERR ;;
    esac
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        test) cmd_test ;;
        status) cmd_status ;;
        run) cmd_run ;;
        exec) cmd_exec "$@" ;;
        guest) set -E; trap on_guest_error ERR; cmd_guest "$@" ;;
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
