#!/usr/bin/env bats
# End to end: the namespace lab (scripts/lab.sh) with podman running four pods through
# the plugin (LAB_PLUGIN, default wasm-cni; LAB_PLUGIN=reference for the reference
# bridge plugin). Needs root. Uses its own namespace prefix and lab dir, so a lab a
# student has up is left alone.

setup_file() {
    export LAB_PREFIX=labtest
    export LAB_DIR=/var/lib/wasm-cni-labtest
    export LAB_PLUGIN=${LAB_PLUGIN:-wasm-cni}
    LAB="$(cd "$BATS_TEST_DIRNAME/.." && pwd)/scripts/lab.sh"
    export LAB
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$BATS_FILE_TMPDIR/links.before"
}

teardown_file() {
    "$LAB" down >/dev/null 2>&1 || true
}

lab_namespaces() { ip netns list | awk '{print $1}' | grep "^$LAB_PREFIX-" || true; }

@test "usage for an unknown command" {
    run "$LAB" frobnicate
    [ "$status" -eq 2 ]
    [[ $output == *usage:* ]]
}

@test "up builds the lab" {
    run "$LAB" up
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(lab_namespaces | wc -l)" -eq 5 ]
    [ -f "$LAB_DIR/nodes/worker-1/net.d/10-wasm-cni.conflist" ]
    jq -e '.plugins[0] | (.myPodSubnet // .ipam.ranges[0][0].subnet) == "200.200.1.0/24"' \
        "$LAB_DIR/nodes/worker-1/net.d/10-wasm-cni.conflist"
}

@test "up a second time changes nothing" {
    run "$LAB" up
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"pod-1 on worker-1: already running"* ]]
    [[ $output != *created* && $output != *started* && $output != *added* ]]
}

@test "test with inter-node routes: everything passes" {
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"inter-node routes up"* ]]
    [[ $output != *MISMATCH* ]]
    [ "$(grep -c ' pass  *pass  *OK ' <<<"$output")" -eq 24 ]
}

@test "exec runs a command in a pod" {
    ip=$("$LAB" status | awk '/pod-2 ip:/ {print $3}')
    [ -n "$ip" ]
    run "$LAB" exec pod-1 ping -c 1 -W 1 "$ip"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "test without inter-node routes: cross-node checks fail, as expected" {
    run "$LAB" routes down
    [ "$status" -eq 0 ]
    run "$LAB" status
    [[ $output == *"inter-node routes: down"* ]]
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"inter-node routes down"* ]]
    # 4 pods -> pod on another node, 2 workers -> pod on another node
    [ "$(grep -cE ' pod-pod-other +FAIL +FAIL +OK ' <<<"$output")" -eq 4 ]
    [ "$(grep -cE ' node-pod-other +FAIL +FAIL +OK ' <<<"$output")" -eq 2 ]
    # the rest still works: same node, own node, outside (masqueraded by the node)
    [ "$(grep -cE ' pod-outside +pass +pass +OK ' <<<"$output")" -eq 4 ]
    [ "$(grep -cE ' (pod-pod-same|pod-node-own|node-pod-same) +pass +pass +OK ' <<<"$output")" -eq 10 ]
}

@test "routes up restores cross-node connectivity" {
    run "$LAB" routes up
    [ "$status" -eq 0 ]
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output != *FAIL* ]]
}

@test "guest routed: checked, swapped in without a runner rebuild, the test passes" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    runner_before=$(sha256sum "$LAB_DIR/nodes/worker-1/bin/wasm-cni")
    run "$LAB" guest "$dist/guests/routed.wasm"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"ok: $dist/guests/routed.wasm implements wasm-cni:plugin/cni-policy@0.1.0"* ]]
    [ "$(sha256sum "$LAB_DIR/nodes/worker-1/bin/wasm-cni")" = "$runner_before" ]
    # routed wiring: no bridge, the pod's address is a /32, the node routes to it
    run ip -n "$LAB_PREFIX-worker-1" link show cni0
    [ "$status" -ne 0 ]
    run "$LAB" exec pod-1 ip -4 -o addr show eth0
    [[ $output == *"/32 "* ]]
    run ip -n "$LAB_PREFIX-worker-1" route show 200.200.1.2
    [[ $output == *"dev wc"* ]]
    run "$LAB" status
    [[ $output == *"guest:   $dist/guests/routed.wasm"* ]]
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(grep -c ' pass  *pass  *OK ' <<<"$output")" -eq 24 ]
}

@test "guest refuses a misfit and the lab keeps its guest and pods" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    run "$LAB" guest "$dist/test/misfits/no-del.wasm"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"exports add, check, gc, status but not del"* ]]
    [[ $output == *"the lab keeps its current guest"* ]]
    run "$LAB" status
    [[ $output == *"guest:   $dist/guests/routed.wasm"* ]]
    [[ $output == *"pod-1 ip: 200.200.1."* ]]
}

@test "guest js-bridge: the JavaScript guest passes the same test" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    run "$LAB" guest "$dist/guests/js-bridge.wasm"
    echo "$output"
    [ "$status" -eq 0 ]
    ip -n "$LAB_PREFIX-worker-1" link show cni0
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(grep -c ' pass  *pass  *OK ' <<<"$output")" -eq 24 ]
}

@test "guest c-bridge: the C guest passes the same test" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    run "$LAB" guest "$dist/guests/c-bridge.wasm"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"cache/ (c-bridge.wasm precompiled)"* ]]
    ip -n "$LAB_PREFIX-worker-1" link show cni0
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(grep -c ' pass  *pass  *OK ' <<<"$output")" -eq 24 ]
}

@test "guest py-routed: the Python guest passes the same test, precompiled when installed" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    run "$LAB" guest "$dist/guests/py-routed.wasm"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"cache/ (py-routed.wasm precompiled)"* ]]
    # routed wiring: no bridge, the pod's address is a /32
    ! ip -n "$LAB_PREFIX-worker-1" link show cni0 2>/dev/null || false
    run "$LAB" exec pod-1 ip -4 -o addr show eth0
    [[ $output == *"/32 "* ]]
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(grep -c ' pass  *pass  *OK ' <<<"$output")" -eq 24 ]
    # every guest was precompiled when it was put on a node: no CNI call compiled one
    cat "$LAB_DIR"/nodes/*/log/wasm-cni.log > "$BATS_TEST_TMPDIR/calls.log"
    [ "$(grep -c 'cache=Some(Hit)' "$BATS_TEST_TMPDIR/calls.log")" -gt 20 ]
    run grep -c 'cache=Some(\(Miss\|Rebuilt\|Uncached\))' "$BATS_TEST_TMPDIR/calls.log"
    [ "$output" = 0 ]
}

@test "guest default: back to the default guest" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    run "$LAB" guest default
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"now run default.wasm"* ]]
    run "$LAB" test
    [ "$status" -eq 0 ]
    [ "$(grep -c ' pass  *pass  *OK ' <<<"$output")" -eq 24 ]
    # `up` with another guest would strand the pods the running one wired
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    LAB_GUEST=$dist/guests/routed.wasm run "$LAB" up
    [ "$status" -eq 1 ]
    [[ $output == *"switch with '$LAB guest $dist/guests/routed.wasm'"* ]]
    run "$LAB" up
    [ "$status" -eq 0 ]
    [[ $output == *"pod-1 on worker-1: already running"* ]]
}

@test "down removes everything" {
    ids=$(awk '{print $1}' "$LAB_DIR/containers")
    sandboxes=$(awk '{print $2}' "$LAB_DIR/containers")
    [ -n "$ids" ]
    run "$LAB" down
    echo "$output"
    [ "$status" -eq 0 ]
    [ -z "$(lab_namespaces)" ]
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$BATS_FILE_TMPDIR/links.after"
    diff "$BATS_FILE_TMPDIR/links.before" "$BATS_FILE_TMPDIR/links.after"
    [ ! -e "$LAB_DIR" ]
    for id in $ids; do
        [ ! -e "/run/runc/$id" ]
        [ -z "$(compgen -G "/var/lib/cni/results/*-$id-*")" ]
        [ "$(grep -c "$id" /proc/self/mountinfo)" -eq 0 ]
    done
    for sb in $sandboxes; do [ ! -e "$sb" ]; done
    [ -z "$(compgen -G "/sys/fs/cgroup/*/wasm-cni-$LAB_PREFIX")" ]
    run "$LAB" down
    [ "$status" -eq 0 ]
}

@test "down cleans up a half-built lab" {
    ip netns add "$LAB_PREFIX-router"
    ip netns add "$LAB_PREFIX-worker-1"
    ip -n "$LAB_PREFIX-router" link add to-worker-1 type veth peer name vpc0 netns "$LAB_PREFIX-worker-1"
    mkdir -p "$LAB_DIR/nodes/worker-1/bin"
    run "$LAB" down
    echo "$output"
    [ "$status" -eq 0 ]
    [ -z "$(lab_namespaces)" ]
    [ ! -e "$LAB_DIR" ]
}
