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

# expect KIND SRC_NODE DST_NODE [FAM] -> sets EXP (pass|FAIL) and WHY. The same rules
# hold in both families: the router's route to a podCIDR of that family decides.
expect() {
    local kind=$1 src=$2 dst=$3 fam=${4:-4} masq; masq=$(masq_scope)
    local node_net=10.0.0.x
    [[ $fam == 6 ]] && node_net=${HOST_NET6%%::*}::x
    EXP=pass; WHY=""
    case $kind in
        pod-pod-same|pod-node-own|node-pod-same) WHY="same node" ;;
        pod-outside) WHY="masqueraded to the node's $node_net" ;;
        pod-pod-other)
            if ! route_present "$dst" "$fam"; then EXP=FAIL; WHY="router: no route to $(pod_cidr "$dst" "$fam")"
            elif [[ $masq != all ]] && ! route_present "$src" "$fam"; then EXP=FAIL; WHY="reply: router has no route to $(pod_cidr "$src" "$fam")"
            elif [[ $masq == all ]]; then WHY="via router (source NATed)"
            else WHY="via router"; fi ;;
        pod-node-other)
            if [[ $masq == all ]]; then WHY="masqueraded, direct on the VPC"
            elif route_present "$src" "$fam"; then WHY="not NATed: reply via router route"
            else EXP=FAIL; WHY="not NATed: reply to $(pod_cidr "$src" "$fam") has no route at the router"; fi ;;
        node-pod-other)
            if route_present "$dst" "$fam"; then WHY="via router"
            else EXP=FAIL; WHY="router: no route to $(pod_cidr "$dst" "$fam")"; fi ;;
    esac
}

ROWS=()
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
    say "lab test: plugin $(current_plugin), masquerade scope $(masq_scope), inter-node routes $state$fams"
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
    done
    local fmt; fmt=$(row_format)
    # shellcheck disable=SC2059
    if dual_stack; then printf "$fmt\n" SOURCE TARGET FAM CHECK EXPECTED RESULT STATUS WHY
    else printf "$fmt\n" SOURCE TARGET CHECK EXPECTED RESULT STATUS WHY; fi
    printf '%s\n' "${ROWS[@]}"
    if [[ $state != up ]]; then
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
    say "RESULT: all ${#ROWS[@]} checks as expected"
}
