# shellcheck shell=bash
# shellcheck disable=SC2154 # the settings and helpers are scripts/lab.sh's
# The lab's pods: the image, podman run in the node namespaces, their addresses.
# Sourced by scripts/lab.sh, never run.

container_state() {  # node pod -> running|exited|...|absent
    pm "$1" container inspect -f '{{.State.Status}}' "$2" 2>/dev/null || printf 'absent'
}

pod_ip() {  # pod -> its address as podman recorded it
    local node=${POD_NODE[$1]}
    pm "$node" container inspect "$1" 2>/dev/null |
        jq -r --arg n "$NETWORK" '.[0].NetworkSettings.Networks[$n].IPAddress // empty'
}

pod_ip6() {  # pod -> its IPv6 address as podman recorded it (dual-stack)
    local node=${POD_NODE[$1]}
    pm "$node" container inspect "$1" 2>/dev/null |
        jq -r --arg n "$NETWORK" '.[0].NetworkSettings.Networks[$n].GlobalIPv6Address // empty'
}

pod_ips() {  # pod -> "ip" or, dual-stack, "ip, ip6"
    if dual_stack; then printf '%s, %s' "$(pod_ip "$1")" "$(pod_ip6 "$1")"; else pod_ip "$1"; fi
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
            running) say "  $pod on $node: already running ($(pod_ips "$pod"))"; continue ;;
            absent) ;;
            *) say "  $pod on $node: was $state, recreating"; pm "$node" rm -f -t 0 "$pod" >/dev/null ;;
        esac
        pm "$node" run -d --name "$pod" --hostname "$pod" --network "$NETWORK" \
            --pull never --cap-add NET_RAW --cgroup-parent "$CGROUP_PARENT" \
            "$IMAGE" sleep 2147483647 >/dev/null
        record_container "$node" "$pod"
        say "  $pod on $node: started ($(pod_ips "$pod"))"
    done
}
