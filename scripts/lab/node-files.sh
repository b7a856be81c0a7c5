# shellcheck shell=bash
# shellcheck disable=SC2154 # the settings and helpers are scripts/lab.sh's
# A lab node's files ($LAB_DIR/nodes/NODE: runner, guest precompiled into the node's
# cache, conflist, podman settings), and the policy state `lab.sh guest` clears.
# Sourced by scripts/lab.sh, never run.

# The node's conflist, on stdout. wasm-cni's is written by the cluster's writer
# (scripts/node/install-cni.sh, what scripts/cni-plugin.sh runs on every node), with
# the runner's cacheDir, stateDir and logFile in the node's directory and the pods'
# MTU from the node's uplink (vpc0), as install-cni.sh takes it on a real node.
write_conflist() {  # node plugin
    local node=$1 plugin=$2 d; d=$(node_dir "$node")
    if [[ $plugin == wasm-cni ]]; then
        local mtu; mtu=$(ip -n "$(ns_of "$node")" -j link show vpc0 | jq '.[0].mtu')
        "$REPO/scripts/node/install-cni.sh" conflist --guest "$d/guests/$(basename "$LAB_GUEST")" \
            --host-network "$HOST_NET" --pod-network "$POD_NET" --pod-subnet "${POD_CIDR[$node]}" \
            --mtu "$mtu" --cache-dir "$d/cache" --state-dir "$d/state" --log-file "$d/log/wasm-cni.log"
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
