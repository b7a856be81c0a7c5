# shellcheck shell=bash
# shellcheck disable=SC2154 # the settings and helpers are scripts/lab.sh's
# `lab.sh test`: the course's ping matrix, each result against its expectation.
# Sourced by scripts/lab.sh, never run.

# What the plugin masquerades (decides what works without inter-node routes):
#   reference: bridge ipMasq NATs everything from a pod that is not for its own subnet.
#   wasm-cni:  the course lab's rule: only traffic leaving the cluster (not for
#              myPodNetwork, not for myHostNetwork) is NATed.
masq_scope() {
    if [[ -n ${LAB_MASQ:-} ]]; then printf '%s' "$LAB_MASQ"; return 0; fi
    case $(current_plugin) in reference) printf 'all' ;; *) printf 'external' ;; esac
}

# What the guest does between nodes (decides what works without the router's routes):
#   none:    nothing; another node's podCIDR is reached through the router only.
#   host-gw: each node routes every peer's podCIDR via the peer's node IP on vpc0.
#   vxlan:   each node routes every peer's podCIDR through its VXLAN link (wcni.1),
#            encapsulated to the peer's node IP; traffic a node itself sends there
#            leaves from its VTEP address (the network address of its own podCIDR).
# From the guest's file name (host-gw*.wasm, vxlan*.wasm, as `guest host-gw|vxlan`
# and a pulled guests/<repository>-<hex>.wasm name them), or LAB_INTERNODE.
internode_policy() {
    if [[ -n ${LAB_INTERNODE:-} ]]; then printf '%s' "$LAB_INTERNODE"; return 0; fi
    [[ $(current_plugin) == wasm-cni ]] || { printf 'none'; return 0; }
    case $(node_guest_name) in
        host-gw*) printf 'host-gw' ;;
        vxlan*) printf 'vxlan' ;;
        *) printf 'none' ;;
    esac
}

# node_routes SRC DST: does node SRC's policy route DST's podCIDR itself? Every node's
# conflist lists the same peers (`lab.sh peers`); a node routes to the others listed,
# whether or not it is listed itself.
node_routes() {
    [[ $1 != "$2" && $(internode_policy) != none ]] && peer_nodes | grep -qxF "$2"
}

# reach SRC DST FAM -> 0 if traffic from node SRC reaches DST's podCIDR (of FAM): the
# router's route, or SRC's own policy. Sets REACH (why, or why not).
reach() {
    local src=$1 dst=$2 fam=$3 cidr; cidr=$(pod_cidr "$2" "$3")
    if node_routes "$src" "$dst"; then
        case $(internode_policy) in
            host-gw) REACH="$src routes $cidr via $(node_ip "$dst" "$fam")" ;;
            *) REACH="$src tunnels $cidr to $(node_ip "$dst" 4) ($(internode_policy))" ;;
        esac
    elif route_present "$dst" "$fam"; then REACH="router routes $cidr"
    elif [[ $(internode_policy) == none ]]; then REACH="router: no route to $cidr"; return 1
    else REACH="$dst is no peer of $src, router: no route to $cidr"; return 1; fi
}

# expect KIND SRC_NODE DST_NODE [FAM] -> sets EXP (pass|FAIL) and WHY. The same rules
# hold in both families: the router's route to a podCIDR of that family, or the
# source node's own inter-node policy, decides.
expect() {
    local kind=$1 src=$2 dst=$3 fam=${4:-4} masq; masq=$(masq_scope)
    local node_net=10.0.0.x
    [[ $fam == 6 ]] && node_net=${HOST_NET6%%::*}::x
    EXP=pass; WHY=""
    case $kind in
        pod-pod-same|pod-node-own|node-pod-same) WHY="same node" ;;
        pod-outside) WHY="masqueraded to the node's $node_net" ;;
        pod-pod-other)
            if ! reach "$src" "$dst" "$fam"; then EXP=FAIL; WHY=$REACH
            elif [[ $masq == all ]]; then WHY="$REACH (source NATed)"
            else
                WHY=$REACH
                reach "$dst" "$src" "$fam" || { EXP=FAIL; WHY="reply: $REACH"; }
            fi ;;
        pod-node-other)
            if [[ $masq == all ]]; then WHY="masqueraded, direct on the VPC"
            elif reach "$dst" "$src" "$fam"; then WHY="not NATed: reply: $REACH"
            else EXP=FAIL; WHY="not NATed: reply: $REACH"; fi ;;
        node-pod-other)
            if ! reach "$src" "$dst" "$fam"; then EXP=FAIL; WHY=$REACH
            else
                WHY=$REACH
                # sent from the VTEP address (in SRC's podCIDR): the reply needs a route too
                if [[ $(internode_policy) == vxlan ]] && node_routes "$src" "$dst"; then
                    reach "$dst" "$src" "$fam" || { EXP=FAIL; WHY="reply to the VTEP: $REACH"; }
                fi
            fi ;;
    esac
}

ROWS=()
MTU_ROWS=()
DNS_ROWS=()
MISMATCHES=0
# The table: single-stack as the course prints it; dual-stack with a family column
# (and room for IPv6 addresses).
row_format() {
    if dual_stack; then printf '%s' '%-24s %-24s %-4s %-15s %-8s %-6s %-8s %s'
    else printf '%s' '%-22s %-24s %-15s %-8s %-6s %-8s %s'; fi
}
check() {  # fam src_label dst_label dst_ip kind src_node dst_node -- command...
    local fam=$1 src=$2 dst=$3 ip=$4 kind=$5 sn=$6 dn=$7; shift 8
    expect "$kind" "$sn" "$dn" "$fam"
    local res=FAIL status=OK ping=(ping -c 1 -W 1)
    [[ $fam == 6 ]] && ping=(ping -6 -c 1 -W 1)
    if [[ -n $ip ]] && "$@" "${ping[@]}" "$ip" >/dev/null 2>&1; then res=pass; fi
    [[ $res == "$EXP" ]] || { status=MISMATCH; MISMATCHES=$((MISMATCHES + 1)); }
    local fmt; fmt=$(row_format)
    if dual_stack; then
        # shellcheck disable=SC2059 # the format is ours
        ROWS+=("$(printf "$fmt" "$src" "$dst" "IPv$fam" "$kind" "$EXP" "$res" "$status" "$WHY")")
    else
        # shellcheck disable=SC2059
        ROWS+=("$(printf "$fmt" "$src" "$dst" "$kind" "$EXP" "$res" "$status" "$WHY")")
    fi
}

# pod_mtu_check FAM SRC_POD DST_POD DST_IP: a ping of the largest packet the pod's MTU
# allows (payload MTU - 28, IPv6 MTU - 48), with "don't fragment" (iputils' ping -M do,
# run in the pod's network namespace: busybox's ping cannot forbid fragmenting). It
# passes only if every hop between the pods carries that packet whole: a pod MTU above
# what a VXLAN tunnel carries fails here. Expected as the pod-pod-other row.
pod_mtu_check() {  # fam src_pod src_ip dst_pod dst_ip
    local fam=$1 src=$2 sip=$3 dst=$4 ip=$5 sn dn sb mtu payload res=FAIL status=OK
    sn=${POD_NODE[$src]} dn=${POD_NODE[$dst]}
    expect pod-pod-other "$sn" "$dn" "$fam"
    sb=$(pm "$sn" container inspect -f '{{.NetworkSettings.SandboxKey}}' "$src" 2>/dev/null) || sb=""
    mtu=""
    [[ -n $sb ]] && mtu=$(nsenter --net="$sb" ip -o link show dev eth0 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "mtu") print $(i + 1)}')
    if [[ -n $mtu && -n $ip ]]; then
        payload=$((mtu - (fam == 6 ? 48 : 28)))
        nsenter --net="$sb" ping -"$fam" -M "do" -s "$payload" -c 1 -W 1 "$ip" >/dev/null 2>&1 && res=pass
        WHY="MTU $mtu: $payload bytes + DF; $WHY"
    else
        WHY="cannot read $src's eth0 MTU (sandbox '${sb:-?}')"
    fi
    [[ $res == "$EXP" ]] || { status=MISMATCH; MISMATCHES=$((MISMATCHES + 1)); }
    local fmt; fmt=$(row_format)
    if dual_stack; then
        # shellcheck disable=SC2059 # the format is ours
        MTU_ROWS+=("$(printf "$fmt" "$src($sip)" "$dst($ip)" "IPv$fam" pod-pod-mtu "$EXP" "$res" "$status" "$WHY")")
    else
        # shellcheck disable=SC2059
        MTU_ROWS+=("$(printf "$fmt" "$src($sip)" "$dst($ip)" pod-pod-mtu "$EXP" "$res" "$status" "$WHY")")
    fi
}

# pod_dns_check FAM SRC_POD SRC_IP: the pod resolves DNS_NAME (A, or AAAA for IPv6)
# with the lab's resolver on DNS_NODE's address of that family (busybox nslookup, at
# most 2 s). Its queries are not masqueraded (the resolver is in myHostNetwork), so the
# answer needs the way back from DNS_NODE to the pod's podCIDR: expected as the pod ->
# other node row towards DNS_NODE.
pod_dns_check() {
    local fam=$1 src=$2 sip=$3 sn server want out res=FAIL status=OK type=a
    sn=${POD_NODE[$src]}
    server=$(node_ip "$DNS_NODE" "$fam") want=$OUTSIDE_IP
    [[ $fam == 6 ]] && type=aaaa want=$OUTSIDE_IP6
    expect pod-node-other "$sn" "$DNS_NODE" "$fam"
    out=$(pm "$sn" exec "$src" timeout 2 nslookup -type="$type" "$DNS_NAME" "$server" 2>&1) || true
    # (the answer section, not the "Server:"/"Address:" lines naming the resolver)
    sed -n '/^Name:/,$p' <<<"$out" | grep -qF "$want" && res=pass
    [[ $res == "$EXP" ]] || { status=MISMATCH; MISMATCHES=$((MISMATCHES + 1)); }
    WHY="$DNS_NAME -> $want; $WHY"
    local fmt; fmt=$(row_format)
    if dual_stack; then
        # shellcheck disable=SC2059 # the format is ours
        DNS_ROWS+=("$(printf "$fmt" "$src($sip)" "$DNS_NODE($server):53" "IPv$fam" pod-dns "$EXP" "$res" "$status" "$WHY")")
    else
        # shellcheck disable=SC2059
        DNS_ROWS+=("$(printf "$fmt" "$src($sip)" "$DNS_NODE($server):53" pod-dns "$EXP" "$res" "$status" "$WHY")")
    fi
}

other_worker() { [[ $1 == worker-1 ]] && echo worker-2 || echo worker-1; }

cmd_test() {
    local node pod fam
    for node in router outside "${NODES[@]}"; do ns_exists "$node" || die "netns $(ns_of "$node") missing: run '$0 up'"; done
    declare -A IP=()   # "FAM/POD" -> the pod's address in that family
    for pod in "${PODS[@]}"; do
        IP[4/$pod]=$(pod_ip "$pod")
        [[ -n ${IP[4/$pod]} ]] || say "warning: $pod has no address (not running?)"
        if dual_stack; then
            IP[6/$pod]=$(pod_ip6 "$pod")
            [[ -n ${IP[6/$pod]} ]] || say "warning: $pod has no IPv6 address"
        fi
    done
    local state; state=$(routes_state)
    local fams=""
    dual_stack && fams=", families 4,6"
    local policy=""
    [[ $(current_plugin) == wasm-cni ]] && policy=", guest $(node_guest_name) (inter-node: $(internode_policy), peers: $(peer_nodes | tr '\n' ' ' | sed 's/ $//'))"
    say "lab test: plugin $(current_plugin)$policy, masquerade scope $(masq_scope), inter-node routes $state$fams"
    for fam in "${FAMILIES[@]}"; do
        local outside=$OUTSIDE_IP
        [[ $fam == 6 ]] && outside=$OUTSIDE_IP6
        for pod in "${PODS[@]}"; do
            node=${POD_NODE[$pod]}
            local other peer remote
            other=$(other_worker "$node")
            peer=$(first_pod_on "$node" "$pod")
            remote=$(first_pod_on "$other")
            local src="$pod(${IP[$fam/$pod]:-?})" own oth
            own=$(node_ip "$node" "$fam") oth=$(node_ip "$other" "$fam")
            local -a run=(pm "$node" exec "$pod")
            check "$fam" "$src" "$peer(${IP[$fam/$peer]:-?})" "${IP[$fam/$peer]}" pod-pod-same "$node" "$node" -- "${run[@]}"
            check "$fam" "$src" "$remote(${IP[$fam/$remote]:-?})" "${IP[$fam/$remote]}" pod-pod-other "$node" "$other" -- "${run[@]}"
            check "$fam" "$src" "$node($own)" "$own" pod-node-own "$node" "$node" -- "${run[@]}"
            check "$fam" "$src" "$other($oth)" "$oth" pod-node-other "$node" "$other" -- "${run[@]}"
            check "$fam" "$src" "outside($outside)" "$outside" pod-outside "$node" outside -- "${run[@]}"
        done
        for node in $(workers); do
            local other local_pod remote own
            other=$(other_worker "$node")
            local_pod=$(first_pod_on "$node")
            remote=$(first_pod_on "$other")
            own=$(node_ip "$node" "$fam")
            local -a run=(in_ns "$node")
            check "$fam" "$node($own)" "$local_pod(${IP[$fam/$local_pod]:-?})" "${IP[$fam/$local_pod]}" node-pod-same "$node" "$node" -- "${run[@]}"
            check "$fam" "$node($own)" "$remote(${IP[$fam/$remote]:-?})" "${IP[$fam/$remote]}" node-pod-other "$node" "$other" -- "${run[@]}"
        done
        for pod in "${PODS[@]}"; do
            local remote; remote=$(first_pod_on "$(other_worker "${POD_NODE[$pod]}")")
            pod_mtu_check "$fam" "$pod" "${IP[$fam/$pod]:-?}" "$remote" "${IP[$fam/$remote]}"
        done
        for pod in "${PODS[@]}"; do pod_dns_check "$fam" "$pod" "${IP[$fam/$pod]:-?}"; done
    done
    local fmt; fmt=$(row_format)
    # shellcheck disable=SC2059
    if dual_stack; then printf "$fmt\n" SOURCE TARGET FAM CHECK EXPECTED RESULT STATUS WHY
    else printf "$fmt\n" SOURCE TARGET CHECK EXPECTED RESULT STATUS WHY; fi
    printf '%s\n' "${ROWS[@]}"
    say "path MTU (pod to a pod on the other node, the largest packet the pod's MTU allows, don't fragment):"
    printf '%s\n' "${MTU_ROWS[@]}"
    say "DNS (the cluster's resolver on $DNS_NODE, scripts/lab/dns.py, asked for $DNS_NAME):"
    printf '%s\n' "${DNS_ROWS[@]}"
    if [[ $state != up && $(internode_policy) != none ]]; then
        say "note: without the router's inter-node routes, the $(internode_policy) guest routes between the"
        say "      nodes listed as peers itself (lab.sh peers shows them)."
    elif [[ $state != up ]]; then
        say "note: without inter-node routes the router cannot deliver to another node's pod"
        say "      subnet, so pod->pod and node->pod across nodes fail. A pod still reaches the"
        say "      outside host (and, if the plugin masquerades host-network traffic, other"
        if dual_stack; then
            say "      nodes) because the node rewrites its source to the node's 10.0.0.x"
            say "      (IPv6: ${HOST_NET6%%::*}::x) address."
        else
            say "      nodes) because the node rewrites its source to the node's 10.0.0.x address."
        fi
    fi
    if ((MISMATCHES)); then say "RESULT: $MISMATCHES mismatch(es)"; return 1; fi
    say "RESULT: all ${#ROWS[@]} checks as expected (and the ${#MTU_ROWS[@]} path MTU checks, the ${#DNS_ROWS[@]} DNS checks)"
}
