# shellcheck shell=bash
# shellcheck disable=SC2154 # the settings and helpers are scripts/lab.sh's
# The lab's topology: the namespaces, the VPC bridge, the router's NAT and the
# inter-node routes (`lab.sh routes up|down`). Sourced by scripts/lab.sh, never run.

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
