# shellcheck shell=bash
# shellcheck disable=SC2154 # the settings and helpers are scripts/lab.sh's
# A lab node's files ($LAB_DIR/nodes/NODE: runner, guest precompiled into the node's
# cache, conflist, podman settings), a guest pulled from a registry by each node in its
# own namespace (`lab.sh guest oci://REF`), and the policy state `lab.sh guest` clears.
# Sourced by scripts/lab.sh, never run.

# sha256_of FILE -> sha256:<hex> (what the conflist's guestDigest pins)
sha256_of() { local s; s=$(sha256sum <"$1") || return 1; printf 'sha256:%s\n' "${s%% *}"; }

# oci_name REF DIGEST -> the file name a pulled guest gets on a node, as install-cni.sh
# names it on a real one: the repository's last path segment and 12 hex digits of DIGEST
oci_name() {
    local repo=${1#oci://}; repo=${repo%%@*}
    local seg=${repo##*/}; seg=${seg%%:*}
    printf '%s-%s.wasm\n' "$seg" "${2:7:12}"
}

# the lab guest's file name on a node
node_guest_name() {
    if [[ $LAB_GUEST == oci://* ]]; then oci_name "$LAB_GUEST" "$LAB_GUEST_DIGEST"
    else basename "$LAB_GUEST"; fi
}

# node_bins NODE: the runner and its registry client (what `guest pull` runs) in the
# node's bin/, recopied only when dist/ has other bytes
node_bins() {
    local d changed=(); d=$(node_dir "$1")
    mkdir -p "$d"/{bin,guests,cache}
    copy_if_changed "$DIST_DIR/bin/wasm-cni" "$d/bin/wasm-cni" 0755 && changed+=(bin/wasm-cni)
    if [[ -f $DIST_DIR/bin/wasm-cni-registry ]]; then
        copy_if_changed "$DIST_DIR/bin/wasm-cni-registry" "$d/bin/wasm-cni-registry" 0755 &&
            changed+=(bin/wasm-cni-registry)
    fi
    printf '%s\n' "${changed[@]}"
}

# lab_pull NODE REF: the node's own runner pulls REF inside the node's namespace (so
# through the lab's VPC and router, as a cluster node would) into guests/, under its
# digest name. Sets PULLED (the file name) and PULLED_DIGEST; returns 1 (with the
# runner's reason on stderr, nothing left behind) when the pull fails.
lab_pull() {
    local node=$1 ref=${2#oci://} d tmp digest
    d=$(node_dir "$node")
    tmp=$(mktemp "$d/guests/.pull.XXXXXX")
    if ! digest=$(in_ns "$node" "$d/bin/wasm-cni" guest pull "$ref" -o "$tmp" "${LAB_PULL_OPTS[@]}"); then
        rm -f "$tmp"; return 1
    fi
    if [[ $digest != "$(sha256_of "$tmp")" ]]; then
        say "$node: wasm-cni guest pull said '$digest', but the file it wrote is $(sha256_of "$tmp")" >&2
        rm -f "$tmp"; return 1
    fi
    PULLED=$(oci_name "$ref" "$digest") PULLED_DIGEST=$digest
    chmod 0644 "$tmp"
    mv -f "$tmp" "$d/guests/$PULLED"   # a digest name: never a file in use with other bytes
}

# pull_everywhere oci://REF [DIGEST]: every node pulls REF; all must get the same bytes
# (DIGEST when given, else the first node's). Sets LAB_GUEST_DIGEST. On a failure, the
# files this pull added are removed and the lab keeps its guest.
pull_everywhere() {
    local ref=$1 want=${2:-} node added=() d f
    for node in "${NODES[@]}"; do
        d=$(node_dir "$node")
        local bins; bins=$(node_bins "$node")
        [[ -z $bins ]] || say "  $node: wrote $(tr '\n' ' ' <<<"$bins")"
        local before; before=$(ls -A "$d/guests")
        if ! lab_pull "$node" "$ref"; then
            for f in "${added[@]}"; do rm -f "$f"; done
            die "$node: pulling ${ref#oci://} failed (reason above); the lab keeps its current guest ($LAB_GUEST)"
        fi
        grep -qxF "$PULLED" <<<"$before" || added+=("$d/guests/$PULLED")
        if [[ -n $want && $PULLED_DIGEST != "$want" ]]; then
            for f in "${added[@]}"; do rm -f "$f"; done
            die "$node pulled $PULLED_DIGEST, not $want (${NODES[0]}'s, or the pin): did the tag move? Pull by @sha256:...; the lab keeps its current guest ($LAB_GUEST)"
        fi
        want=$PULLED_DIGEST
        say "  $node: pulled ${ref#oci://} ($PULLED_DIGEST) -> guests/$PULLED"
    done
    LAB_GUEST_DIGEST=$want
}

# The nodes the conflists list as "peers": every node, or those `lab.sh peers NODE...`
# kept (in $LAB_DIR/peers), in the lab's order
peer_nodes() {
    local node kept=" ${NODES[*]} "
    [[ -f $LAB_DIR/peers ]] && kept=" $(cat "$LAB_DIR/peers") "
    for node in "${NODES[@]}"; do [[ $kept == *" $node "* ]] && printf '%s\n' "$node"; done
    return 0
}

# peers_json: the conflists' "peers", as scripts/cni-plugin.sh writes them from
# `kubectl get nodes`: name, nodeIP (a list of both families in dual-stack) and podCIDRs
peers_json() {
    local node entries=()
    for node in $(peer_nodes); do
        if dual_stack; then
            entries+=("$(jq -cn --arg n "$node" --arg i4 "${NODE_IP[$node]}" --arg i6 "${NODE_IP6[$node]}" \
                --arg c4 "${POD_CIDR[$node]}" --arg c6 "${POD_CIDR6[$node]}" \
                '{name: $n, nodeIP: [$i4, $i6], podCIDRs: [$c4, $c6]}')")
        else
            entries+=("$(jq -cn --arg n "$node" --arg i4 "${NODE_IP[$node]}" --arg c4 "${POD_CIDR[$node]}" \
                '{name: $n, nodeIP: $i4, podCIDRs: [$c4]}')")
        fi
    done
    printf '%s\n' "${entries[@]}" | jq -cs .
}

# node_ips NODE: its IP(s) as install-cni.sh's --node-ip takes them (IPv4,IPv6)
node_ips() {
    local fam out=""
    for fam in "${FAMILIES[@]}"; do out+=${out:+,}$(node_ip "$1" "$fam"); done
    printf '%s' "$out"
}

# The node's conflist, on stdout. wasm-cni's is written by the cluster's writer
# (scripts/node/install-cni.sh, what scripts/cni-plugin.sh runs on every node), with
# the runner's cacheDir, stateDir and logFile in the node's directory and the pods'
# MTU from the node's uplink (vpc0), as install-cni.sh takes it on a real node; the
# cluster as every node's conflist carries it: this node's nodeIP and the peers (all
# nodes, this one included; the runner drops its own entry).
write_conflist() {  # node plugin
    local node=$1 plugin=$2 d; d=$(node_dir "$node")
    if [[ $plugin == wasm-cni ]]; then
        local mtu g; mtu=$(ip -n "$(ns_of "$node")" -j link show vpc0 | jq '.[0].mtu')
        g=$d/guests/$(node_guest_name)
        # pinned to the bytes on the node (the runner refuses others, code 7)
        local nets=(--host-network "$HOST_NET" --pod-network "$POD_NET" --pod-subnet "${POD_CIDR[$node]}")
        # dual-stack: both families' networks (lists in the conflist), and IPv6 pod
        # traffic leaving the cluster masqueraded as IPv4's is (the outside host has
        # no route to the pod network in either family)
        dual_stack && nets=(--host-network "$HOST_NET,$HOST_NET6" --pod-network "$POD_NET,$POD_NET6"
                            --pod-subnet "${POD_CIDR[$node]},${POD_CIDR6[$node]}" --ip-masq6)
        "$REPO/scripts/node/install-cni.sh" conflist --guest "$g" --guest-digest "$(sha256_of "$g")" \
            "${nets[@]}" --node-ip "$(node_ips "$node")" --peers "$(peers_json)" \
            --mtu "$mtu" --cache-dir "$d/cache" --state-dir "$d/state" --log-file "$d/log/wasm-cni.log"
    else
        local sub6=""
        dual_stack && sub6=${POD_CIDR6[$node]}
        jq -n --arg name "$NETWORK" --arg sub "${POD_CIDR[$node]}" --arg sub6 "$sub6" --arg data "$d/ipam" '
            {cniVersion: "1.0.0", name: $name, plugins: [{
                type: "bridge", bridge: "cni0", isGateway: true, ipMasq: true,
                ipam: {type: "host-local",
                       ranges: ([[{subnet: $sub}]] + if $sub6 == "" then [] else [[{subnet: $sub6}]] end),
                       routes: ([{dst: "0.0.0.0/0"}] + if $sub6 == "" then [] else [{dst: "::/0"}] end),
                       dataDir: $data}}]}'
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
        local bins; bins=$(node_bins "$node")
        [[ -z $bins ]] || mapfile -t -O "${#changed[@]}" changed <<<"$bins"
        local g report
        if [[ $LAB_GUEST == oci://* ]]; then
            # pulled by `guest oci://` (or here, by an `up` of a lab whose nodes lack it)
            g=$(node_guest_name)
            if [[ ! -f $d/guests/$g || $(sha256_of "$d/guests/$g") != "$LAB_GUEST_DIGEST" ]]; then
                lab_pull "$node" "$LAB_GUEST" || die "$node: pulling ${LAB_GUEST#oci://} failed (reason above)"
                [[ $PULLED_DIGEST == "$LAB_GUEST_DIGEST" ]] ||
                    die "$node: ${LAB_GUEST#oci://} is now $PULLED_DIGEST, not the lab's $LAB_GUEST_DIGEST (the tag moved)"
                changed+=("guests/$g (pulled)")
            fi
        else
            g=$(basename "$LAB_GUEST")
            copy_if_changed "$LAB_GUEST" "$d/guests/$g" 0644 && changed+=("guests/$g")
        fi
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


# reconcile_node NODE: the node's runner brings the node in line with its conflist
# (`wasm-cni reconcile -c`, in the node's namespace, as scripts/cni-plugin.sh does on a
# real node after rewriting it): a host-gw or VXLAN guest's routes, VXLAN link, FDB and
# neighbour entries for the peers, those of departed peers removed. The master, which
# runs no pod (no ADD to do it lazily), gets its routes only this way.
reconcile_node() {
    local node=$1 d out
    d=$(node_dir "$node")
    out=$(in_ns "$node" "$d/bin/wasm-cni" reconcile -c "$d/net.d/10-wasm-cni.conflist" 2>&1) ||
        die "$node: wasm-cni reconcile failed: $out"
    say "  $node: ${out//$'\n'/ }"
}

# What a policy set up on a node that the next policy must not find: the default
# policy's bridge, links of ours a failed DEL left (and the VXLAN link, wcni.1, with its
# routes, FDB and neighbour entries), host-gw's routes through the uplink (vpc0), the
# network's nftables table, and the store (addresses, node setup fingerprint).
reset_node_policy() {  # node
    local node=$1 n l t fam r
    n=$(ns_of "$node")
    for l in $(ip -n "$n" -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}'); do
        [[ $l == cni0 || $l == wc* ]] && ip -n "$n" link del "$l" 2>/dev/null || true
    done
    # the lab puts only its default route and the VPC's on vpc0: any other route with a
    # gateway there is a host-gw policy's
    for fam in 4 6; do
        while read -r r; do
            [[ -n $r ]] && ip -n "$n" -"$fam" route del "${r%% *}" via "$(awk '{for (i = 1; i < NF; i++) if ($i == "via") print $(i + 1)}' <<<"$r")" dev vpc0
        done < <(ip -n "$n" -"$fam" route show dev vpc0 2>/dev/null | awk '$1 != "default" && / via /')
    done
    # the network's tables of both families (ip, and ip6 for IPv6 rules)
    for fam in ip ip6; do
        for t in $(in_ns "$node" nft list tables "$fam" 2>/dev/null | awk '$3 ~ /^wasm_cni_/ {print $3}'); do
            in_ns "$node" nft delete table "$fam" "$t"
        done
    done
    rm -rf "$(node_dir "$node")/state"
    mkdir -p "$(node_dir "$node")/state"
}
