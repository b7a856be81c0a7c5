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

ensure_addr() {  # node ifname cidr (IPv4 or IPv6)
    local n; n=$(ns_of "$1")
    local have; have=$(ip -n "$n" -o addr show dev "$2")
    if [[ $3 == *:* ]]; then
        [[ $have == *"inet6 $3 "* ]] && return 0
        # nodad: the lab's own addresses are unique by plan, and usable at once (no
        # second of "tentative" during which the node neither answers nor sends from them)
        ip -n "$n" addr add "$3" dev "$2" nodad
    else
        [[ $have == *"inet $3 "* ]] && return 0
        ip -n "$n" addr add "$3" dev "$2"
    fi
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
    dual_stack && ensure_addr router vpc-br "$ROUTER_VPC_IP6/64"
    ip -n "$r" link set vpc-br up
    in_ns router sysctl -qw net.ipv4.ip_forward=1
    # (IPv6 has no send_redirects switch: the nodes forward, so they ignore redirects)
    dual_stack && in_ns router sysctl -qw net.ipv6.conf.all.forwarding=1
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
    if dual_stack; then
        ensure_addr router out0 "$ROUTER_OUT_IP6/64"
        ensure_addr outside eth0 "$OUTSIDE_IP6/64"
    fi
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
    # the same in IPv6: the VPC's ULA addresses are masqueraded to 2001:db8::1, pod
    # addresses are not (the outside host has no route to fd00:200:200::/56 either)
    if ! dual_stack; then :
    elif in_ns router nft list table ip6 lab_nat6 >/dev/null 2>&1; then
        say "  router NAT ($HOST_NET6 -> out0): already there"
    else
        in_ns router nft -f - <<EOF
table ip6 lab_nat6 {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "out0" ip6 saddr $HOST_NET6 masquerade
    }
}
EOF
        say "  router NAT ($HOST_NET6 -> out0): created"
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
        if dual_stack; then
            ensure_addr "$node" vpc0 "${NODE_IP6[$node]}/64"
            ip -n "$n" -6 route replace default via "$ROUTER_VPC_IP6" dev vpc0
            in_ns "$node" sysctl -qw net.ipv6.conf.all.forwarding=1
            in_ns "$node" sysctl -qw net.ipv6.conf.all.accept_redirects=0
            in_ns "$node" sysctl -qw net.ipv6.conf.vpc0.accept_redirects=0
        fi
    done
}

# ---------------------------------------------------------------- DNS

# dns_pid: the pid of the lab's resolver, if it runs (the pid file's, and that process
# is dns.py: a recycled pid is never taken for it)
dns_pid() {
    local pid
    [[ -f $LAB_DIR/dns.pid ]] || return 1
    pid=$(cat "$LAB_DIR/dns.pid")
    [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$HERE/dns.py" || return 1
    printf '%s' "$pid"
}

dns_up() {
    local addrs=("$(node_ip "$DNS_NODE" 4)") answer=$OUTSIDE_IP where listen=() a
    if dual_stack; then addrs+=("$(node_ip "$DNS_NODE" 6)") answer+=,$OUTSIDE_IP6; fi
    for a in "${addrs[@]}"; do listen+=(--listen "$a"); done
    where="$DNS_NODE, port 53 of ${addrs[*]}, $DNS_NAME -> $answer"
    if dns_pid >/dev/null; then say "  resolver ($where): already running"; return 0; fi
    mkdir -p "$LAB_DIR"
    # its own session, every descriptor elsewhere (a caller reading our output, bats'
    # fd 3, must not wait for it); `down` stops it. `ip netns exec`, not in_ns: $! must
    # be the resolver (ip and setsid exec it), not a subshell.
    ip netns exec "$(ns_of "$DNS_NODE")" setsid python3 "$HERE/dns.py" "${listen[@]}" --name "$DNS_NAME=$answer" \
        </dev/null >"$LAB_DIR/dns.log" 2>&1 3>&- &
    printf '%s\n' "$!" >"$LAB_DIR/dns.pid"
    local i
    for i in $(seq 50); do
        in_ns "$DNS_NODE" ss -Hlun "sport = :53" | grep -q . && break
        kill -0 "$!" 2>/dev/null || die "the resolver did not start: $(cat "$LAB_DIR/dns.log")"
        sleep 0.1
    done
    ((i < 50)) || die "the resolver does not listen on port 53: $(cat "$LAB_DIR/dns.log")"
    say "  resolver ($where): started"
}

dns_down() {
    local pid
    if pid=$(dns_pid); then
        kill "$pid"
        local i
        for i in $(seq 50); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
        say "  resolver on $DNS_NODE: stopped"
    fi
    rm -f "$LAB_DIR/dns.pid"
}

# ---------------------------------------------------------------- inter-node routes

route_present() {  # node [4|6] -> 0 if the router routes that node's podCIDR to it
    local fam=${2:-4} r
    r=$(ip -n "$(ns_of router)" -"$fam" route show "$(pod_cidr "$1" "$fam")" 2>/dev/null)
    [[ $r == *"via $(node_ip "$1" "$fam") "* ]]
}

routes_state() {  # over every family of the lab
    ns_exists router || { printf 'absent'; return 0; }
    local node fam up=0 all=0
    for fam in "${FAMILIES[@]}"; do
        for node in "${NODES[@]}"; do
            all=$((all + 1))
            route_present "$node" "$fam" && up=$((up + 1))
        done
    done
    if ((up == all)); then printf 'up'
    elif ((up == 0)); then printf 'down'
    else printf 'partial'; fi
}

routes_up() {
    ns_exists router || die "no router namespace: run '$0 up' first"
    local node fam cidr via
    for fam in "${FAMILIES[@]}"; do
        for node in "${NODES[@]}"; do
            cidr=$(pod_cidr "$node" "$fam") via=$(node_ip "$node" "$fam")
            if route_present "$node" "$fam"; then say "  route $cidr via $via: already there"
            else
                ip -n "$(ns_of router)" -"$fam" route replace "$cidr" via "$via" dev vpc-br
                say "  route $cidr via $via: added"
            fi
        done
    done
}

routes_down() {
    ns_exists router || { say "  no router namespace: no routes"; return 0; }
    local node fam cidr
    for fam in "${FAMILIES[@]}"; do
        for node in "${NODES[@]}"; do
            cidr=$(pod_cidr "$node" "$fam")
            if route_present "$node" "$fam"; then
                ip -n "$(ns_of router)" -"$fam" route del "$cidr"
                say "  route $cidr via $(node_ip "$node" "$fam"): removed"
            else say "  route $cidr: already absent"; fi
        done
    done
}
