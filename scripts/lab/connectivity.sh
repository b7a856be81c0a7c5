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
