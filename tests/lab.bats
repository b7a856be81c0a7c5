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
    # DIST_DIR: the runner the lab installs (and its registry client); the guests are dist/'s
    export DIST_DIR=${DIST_DIR:-$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist}
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$BATS_FILE_TMPDIR/links.before"
}

# The pods the podman tests start by hand go with their test, also when it fails.
teardown() {
    [[ $BATS_TEST_DESCRIPTION == *podman* ]] || return 0
    local node name
    for node in worker-1 worker-2; do
        for name in pinned misplaced pinned6 misplaced6; do
            "$LAB" podman "$node" rm -f -t 0 "$name" >/dev/null 2>&1 || true
        done
    done
}

teardown_file() {
    registry_stop
    ip netns del "$LAB_PREFIX-pinpod" 2>/dev/null || true
    "$LAB" down >/dev/null 2>&1 || true
}

# The registry of the oci:// tests: Debian's docker-registry (distribution 2.8) in the
# lab's outside namespace (192.0.2.10, which every node reaches through the router's
# NAT, as a cluster node reaches a registry on the internet), plain HTTP on port 5000,
# its storage in a directory of its own. registry_stop (teardown_file too) removes both.
REGISTRY=192.0.2.10:5000
registry_start() {
    command -v docker-registry >/dev/null || { echo "docker-registry missing: run scripts/setup.sh" >&2; return 1; }
    local dir
    dir=$(mktemp -d /tmp/wasm-cni-labtest-registry.XXXXXX)
    printf '%s\n' "$dir" >"$BATS_FILE_TMPDIR/registry.dir"
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n  secret: wasm-cni-labtest\n' \
        "$dir/storage" "$REGISTRY" >"$dir/registry.yml"
    ip netns exec "$LAB_PREFIX-outside" docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 3>&- &
    printf '%s\n' "$!" >"$BATS_FILE_TMPDIR/registry.pid"
    for _ in $(seq 100); do
        ip netns exec "$LAB_PREFIX-outside" bash -c "exec 3<>/dev/tcp/${REGISTRY%:*}/${REGISTRY#*:}" 2>/dev/null && return 0
        kill -0 "$(cat "$BATS_FILE_TMPDIR/registry.pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "the registry did not start:" >&2
    cat "$dir/registry.log" >&2
    return 1
}

registry_stop() {
    local pid
    if [[ -f $BATS_FILE_TMPDIR/registry.pid ]]; then
        pid=$(cat "$BATS_FILE_TMPDIR/registry.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$BATS_FILE_TMPDIR/registry.pid"
    fi
    if [[ -f $BATS_FILE_TMPDIR/registry.dir ]]; then
        rm -rf "$(cat "$BATS_FILE_TMPDIR/registry.dir")"
        rm -f "$BATS_FILE_TMPDIR/registry.dir"
    fi
}

# node_state NODE: what a CNI call may change on a node (links, addresses, routes, the
# firewall, the store)
node_state() {
    local n=$LAB_PREFIX-$1
    ip -n "$n" -br link show | awk '{print $1, $3}'
    ip -n "$n" -br addr show
    ip -n "$n" route show table all
    ip netns exec "$n" nft list ruleset
    (cd "$LAB_DIR/nodes/$1/state" && find . -type f -print0 | sort -z | xargs -0r sha256sum)
}

# lab_test_all_pass [ROWS]: `lab.sh test` exits 0 with all ROWS rows (default 24, the
# single-stack table) passing, as expected, and the path MTU and DNS checks (one per
# pod and family each: ROWS/6) too
lab_test_all_pass() {
    local rows=${1:-24}
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(grep -c ' pass  *pass  *OK ' <<<"$output")" -eq $((rows + 2 * rows / 6)) ]
    [ "$(grep -cE ' pod-pod-mtu +pass +pass +OK ' <<<"$output")" -eq $((rows / 6)) ]
    [ "$(grep -cE ' pod-dns +pass +pass +OK ' <<<"$output")" -eq $((rows / 6)) ]
    [[ $output == *"RESULT: all $rows checks as expected (and the $((rows / 6)) path MTU checks, the $((rows / 6)) DNS checks)"* ]]
}

# node_net NODE: what an inter-node policy sets up on a node: its routes (both
# families, without the kernel's link-local and multicast ones), and the VXLAN link's
# FDB and permanent neighbour entries
node_net() {
    local n=$LAB_PREFIX-$1
    ip -n "$n" -4 route show
    ip -n "$n" -6 route show | grep -vE '^(fe80::|ff00::|multicast )' || true
    if ip -n "$n" link show wcni.1 >/dev/null 2>&1; then
        bridge -n "$n" fdb show dev wcni.1
        ip -n "$n" neigh show dev wcni.1 nud permanent
    fi
}

# lab_guest GUEST [SAYS]: `lab.sh guest GUEST` succeeds (and prints SAYS, if given)
lab_guest() {
    run "$LAB" guest "$1"
    echo "$output"
    [ "$status" -eq 0 ]
    if [ $# -gt 1 ]; then
        [[ $output == *"$2"* ]]
    fi
}

# uplink_routes NODE: NODE's routes through the uplink with a gateway, but the default
# route (the inter-node routes host-gw makes; none with another guest)
uplink_routes() {
    ip -n "$LAB_PREFIX-$1" route show dev vpc0 | grep ' via ' | grep -v '^default'
}

# departed NODE_NET_FILE: the lines of a node_net that are worker-2's (its podCIDRs,
# its VTEP addresses and MAC 0e:cc:0a:00:00:04, routes via its node IPs)
departed() {
    grep -E '(^| )(200\.200\.2\.0|fd00:200:200:2::)( |/)|0e:cc:0a:00:00:04|via (10\.0\.0\.4|fd00:10:240::4) ' "$1" || true
}

# peers_leave_and_return: `peers master worker-1` (worker-2 leaves the cluster): on
# master and worker-1 exactly worker-2's routes, FDB and neighbour entries go, nothing
# else changes, worker-2 is unchanged (it still lists the others); the test table is
# as expected for that cluster; `peers all` puts every node back as it was
peers_leave_and_return() {
    local node
    for node in master worker-1 worker-2; do node_net "$node" | sort >"$BATS_TEST_TMPDIR/$node.before"; done
    [ -n "$(departed "$BATS_TEST_TMPDIR/master.before")" ]
    run "$LAB" peers master worker-1
    echo "$output"
    [ "$status" -eq 0 ]
    for node in master worker-1 worker-2; do
        jq -e '[.plugins[0].peers[].name] == ["master", "worker-1"]' "$LAB_DIR/nodes/$node/net.d/10-wasm-cni.conflist"
        node_net "$node" | sort >"$BATS_TEST_TMPDIR/$node.after"
        echo "$node removed:"; comm -23 "$BATS_TEST_TMPDIR/$node.before" "$BATS_TEST_TMPDIR/$node.after"
        echo "$node added:"; comm -13 "$BATS_TEST_TMPDIR/$node.before" "$BATS_TEST_TMPDIR/$node.after"
        [ -z "$(comm -13 "$BATS_TEST_TMPDIR/$node.before" "$BATS_TEST_TMPDIR/$node.after")" ]
    done
    for node in master worker-1; do
        [ "$(comm -23 "$BATS_TEST_TMPDIR/$node.before" "$BATS_TEST_TMPDIR/$node.after")" = \
          "$(departed "$BATS_TEST_TMPDIR/$node.before")" ]
    done
    cmp "$BATS_TEST_TMPDIR/worker-2.before" "$BATS_TEST_TMPDIR/worker-2.after"
    # worker-1 and worker-2 now disagree: the table says which way traffic still works
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"peers: master worker-1)"* ]]
    [ "$(grep -cE ' pod-pod-other +FAIL +FAIL +OK ' <<<"$output")" -eq "$1" ]
    run "$LAB" peers all
    echo "$output"
    [ "$status" -eq 0 ]
    for node in master worker-1 worker-2; do
        diff "$BATS_TEST_TMPDIR/$node.before" <(node_net "$node" | sort)
    done
}

# pod_run NODE NAME PODMAN-RUN-OPTIONS...: a lab pod started by hand as lab.sh starts
# its own (the lab's image and cgroup parent, so that `down` finds everything)
pod_run() {
    local node=$1 name=$2; shift 2
    "$LAB" podman "$node" run -d --name "$name" --network wasm-cni --pull never --cap-add NET_RAW \
        --cgroup-parent "/wasm-cni-$LAB_PREFIX" "$@" localhost/lab-busybox:latest sleep 2147483647
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
    [[ $output == *"resolver (master, port 53 of 10.0.0.2, outside.lab -> 192.0.2.10): already running"* ]]
    [[ $output != *created* && $output != *started* && $output != *added* ]]
}

@test "test with inter-node routes: everything passes" {
    lab_test_all_pass
    [[ $output == *"inter-node routes up"* ]]
    [[ $output != *MISMATCH* ]]
    # every node's conflist lists the cluster: all three nodes, and the node's own IP
    for node in master worker-1 worker-2; do
        jq -e --arg me "$node" '.plugins[0] | .peers == [
            {name: "master", nodeIP: "10.0.0.2", podCIDRs: ["200.200.0.0/24"]},
            {name: "worker-1", nodeIP: "10.0.0.3", podCIDRs: ["200.200.1.0/24"]},
            {name: "worker-2", nodeIP: "10.0.0.4", podCIDRs: ["200.200.2.0/24"]}]
          and .nodeIP == (.peers[] | select(.name == $me) | .nodeIP)
          and .myHostNetwork == "10.0.0.0/16"' "$LAB_DIR/nodes/$node/net.d/10-wasm-cni.conflist"
    done
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
    [ "$(grep -cE ' pod-pod-mtu +FAIL +FAIL +OK ' <<<"$output")" -eq 4 ]
    # the cluster's DNS on the master answers, but the answer finds no way back
    [ "$(grep -cE ' pod-dns +FAIL +FAIL +OK ' <<<"$output")" -eq 4 ]
}

@test "routes up restores cross-node connectivity" {
    run "$LAB" routes up
    [ "$status" -eq 0 ]
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output != *FAIL* ]]
}

@test "podman --ip/--mac-address: the pod gets exactly that address and MAC" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "the reference conflist declares no ips/mac capability"
    jq -e '.plugins[0].capabilities == {ips: true, mac: true}' "$LAB_DIR/nodes/worker-1/net.d/10-wasm-cni.conflist"
    run pod_run worker-1 pinned --ip 200.200.1.77 --mac-address 02:00:c8:c8:01:4d
    echo "$output"
    [ "$status" -eq 0 ]
    run "$LAB" podman worker-1 exec pinned ip -o addr show dev eth0
    echo "$output"
    [[ $output == *"inet 200.200.1.77/24 "* ]]
    [ "$(grep -c ' inet ' <<<"$output")" -eq 1 ]
    run "$LAB" podman worker-1 exec pinned cat /sys/class/net/eth0/address
    [ "$output" = 02:00:c8:c8:01:4d ]
    # podman recorded what the runner answered
    run "$LAB" podman worker-1 container inspect pinned
    [ "$(jq -r '.[0].NetworkSettings.Networks["wasm-cni"] | "\(.IPAddress) \(.MacAddress)"' <<<"$output")" = "200.200.1.77 02:00:c8:c8:01:4d" ]
    # and it is wired like any pod: reachable from another node's pod
    run "$LAB" exec pod-2 ping -c 1 -W 1 200.200.1.77
    [ "$status" -eq 0 ]
    run "$LAB" podman worker-1 rm -f -t 0 pinned
    [ "$status" -eq 0 ]
    [ ! -e "$LAB_DIR/nodes/worker-1/state/wasm-cni/kv/ip%2F200.200.1.77" ]
}

@test "podman --ip outside the node's subnet, or taken: a clear error, nothing left behind" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "the reference conflist declares no ips/mac capability"
    taken=$("$LAB" status | awk '/pod-1 ip:/ {print $3}')
    [[ $taken == 200.200.1.* ]]
    before=$(node_state worker-1)
    for ip in 200.200.2.77 10.0.0.77 "$taken"; do
        run pod_run worker-1 misplaced --ip "$ip"
        echo "$output"
        [ "$status" -ne 0 ]
        [[ $output == *"$ip"* ]]
        if [ "$ip" = "$taken" ]; then [[ $output == *"in use"* || $output == *taken* ]]
        else [[ $output == *200.200.1.0/24* ]]; fi
        "$LAB" podman worker-1 rm -f -t 0 misplaced >/dev/null 2>&1 || true
        [ "$(node_state worker-1)" = "$before" ]
    done
    run "$LAB" podman worker-1 ps -a --format '{{.Names}}'
    [ "$(sort <<<"$output" | tr '\n' ' ')" = "pod-1 pod-4 " ]
    lab_test_all_pass
}

@test "guest default-0.1.0: the frozen 0.1.0 default guest runs unchanged and passes the same test" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    fixture=$(cd "$BATS_TEST_DIRNAME" && pwd)/guests/fixtures/default-0.1.0.wasm
    run "$LAB" guest "$fixture"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"ok: $fixture implements wasm-cni:plugin/cni-policy@0.1.0"* ]]
    ip -n "$LAB_PREFIX-worker-1" link show cni0
    lab_test_all_pass
}

@test "guest routed: checked, swapped in without a runner rebuild, the test passes" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    runner_before=$(sha256sum "$LAB_DIR/nodes/worker-1/bin/wasm-cni")
    run "$LAB" guest "$dist/guests/routed.wasm"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"ok: $dist/guests/routed.wasm implements wasm-cni:plugin/cni-policy@0.2.0"* ]]
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
    lab_test_all_pass
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

@test "guest js-bridge: the JavaScript guest (contract 0.1.0) passes the same test" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    run "$LAB" guest "$dist/guests/js-bridge.wasm"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"ok: $dist/guests/js-bridge.wasm implements wasm-cni:plugin/cni-policy@0.1.0"* ]]
    ip -n "$LAB_PREFIX-worker-1" link show cni0
    lab_test_all_pass
}

@test "guest c-bridge: the C guest passes the same test" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    run "$LAB" guest "$dist/guests/c-bridge.wasm"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"cache/ (c-bridge.wasm precompiled)"* ]]
    ip -n "$LAB_PREFIX-worker-1" link show cni0
    lab_test_all_pass
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
    lab_test_all_pass
    # every guest was precompiled when it was put on a node: no CNI call compiled one
    cat "$LAB_DIR"/nodes/*/log/wasm-cni.log > "$BATS_TEST_TMPDIR/calls.log"
    [ "$(grep -c 'cache=Some(Hit)' "$BATS_TEST_TMPDIR/calls.log")" -gt 20 ]
    run grep -c 'cache=Some(\(Miss\|Rebuilt\|Uncached\))' "$BATS_TEST_TMPDIR/calls.log"
    [ "$output" = 0 ]
}

@test "guest oci://: pushed from one node, pulled by every node in its namespace, pinned, the test passes" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    [ -x "$DIST_DIR/bin/wasm-cni-registry" ] ||
        { echo "$DIST_DIR/bin/wasm-cni-registry missing: run scripts/build.sh" >&2; return 1; }
    registry_start
    # a student pushes once (here from worker-1's namespace, through the router)
    run ip netns exec "$LAB_PREFIX-worker-1" "$DIST_DIR/bin/wasm-cni" guest push "$dist/guests/routed.wasm" "$REGISTRY/guests/routed:v1" --insecure
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"$REGISTRY/guests/routed:v1@sha256:"* ]]
    pin="sha256:$(sha256sum "$dist/guests/routed.wasm" | cut -d' ' -f1)"
    name="routed-${pin:7:12}.wasm"
    run "$LAB" guest "oci://$REGISTRY/guests/routed:v1" --insecure
    echo "$output"
    [ "$status" -eq 0 ]
    swapped=$output
    for node in master worker-1 worker-2; do
        [[ $swapped == *"$node: pulled $REGISTRY/guests/routed:v1 ($pin) -> guests/$name"* ]]
        d=$LAB_DIR/nodes/$node
        cmp "$dist/guests/routed.wasm" "$d/guests/$name"
        # the conflist points at the pulled file and pins its bytes
        run jq -r '.plugins[0] | "\(.guest) \(.guestDigest)"' "$d/net.d/10-wasm-cni.conflist"
        [ "$output" = "$d/guests/$name sha256:$(sha256sum "$d/guests/$name" | cut -d' ' -f1)" ]
        [ "${output#* }" = "$pin" ]
        [ -z "$(find "$d/guests" -name '.pull.*')" ]
    done
    run "$LAB" status
    [[ $output == *"guest:   oci://$REGISTRY/guests/routed:v1 ($pin)"* ]]
    # routed wiring: the pod's address is a /32
    run "$LAB" exec pod-1 ip -4 -o addr show eth0
    [[ $output == *"/32 "* ]]
    lab_test_all_pass
    # `up` again: the nodes have the pinned file; nothing is pulled or changed
    run "$LAB" up
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output != *pulled* && $output != *"wrote "* ]]
}

@test "a pinned guest changed on a node: its ADD is refused with code 7 and changes nothing" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    d=$LAB_DIR/nodes/worker-2
    conf=$d/net.d/10-wasm-cni.conflist
    guest=$(jq -r '.plugins[0].guest' "$conf")
    pin=$(jq -r '.plugins[0].guestDigest' "$conf")
    [[ $pin == sha256:* ]]
    # someone replaces the node's guest file with another (valid) guest
    cp "$guest" "$BATS_FILE_TMPDIR/pinned.wasm"
    cp "$dist/guests/default.wasm" "$guest.new" && mv -f "$guest.new" "$guest"
    other="sha256:$(sha256sum "$guest" | cut -d' ' -f1)"
    before=$(node_state worker-2)
    ip netns add "$LAB_PREFIX-pinpod"
    jq -c '{cniVersion, name} + .plugins[0]' "$conf" >"$BATS_FILE_TMPDIR/net.json"
    run ip netns exec "$LAB_PREFIX-worker-2" env CNI_COMMAND=ADD CNI_CONTAINERID=pin-test \
        CNI_NETNS="/run/netns/$LAB_PREFIX-pinpod" CNI_IFNAME=eth0 CNI_PATH="$d/bin" "$d/bin/wasm-cni" <"$BATS_FILE_TMPDIR/net.json"
    echo "$output"
    [ "$status" -ne 0 ]
    [ "$(jq -r .code <<<"$output")" = 7 ]
    [[ $output == *"$pin"* && $output == *"$other"* ]]
    # nothing half-configured: the node as it was, the pod's namespace empty
    [ "$(node_state worker-2)" = "$before" ]
    [ "$(ip -n "$LAB_PREFIX-pinpod" -br link show | awk '{print $1}')" = lo ]
    ip netns del "$LAB_PREFIX-pinpod"
    # the file put back: the pin holds again (the next test's DELs run this guest)
    cp "$BATS_FILE_TMPDIR/pinned.wasm" "$guest.new" && mv -f "$guest.new" "$guest"
    [ "sha256:$(sha256sum "$guest" | cut -d' ' -f1)" = "$pin" ]
}

@test "guest oci:// that cannot be pulled (unknown tag, registry down): the lab keeps its guest and pods" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    guests_before=$(ls -A "$LAB_DIR"/nodes/*/guests)
    conf_before=$(cat "$LAB_DIR"/nodes/*/net.d/10-wasm-cni.conflist)
    run "$LAB" guest "oci://$REGISTRY/guests/routed:v9" --insecure
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"master: pulling $REGISTRY/guests/routed:v9 failed (reason above); the lab keeps its current guest (oci://$REGISTRY/guests/routed:v1)"* ]]
    registry_stop
    run "$LAB" guest "oci://$REGISTRY/guests/routed:v1" --insecure
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"the lab keeps its current guest"* ]]
    [ "$(ls -A "$LAB_DIR"/nodes/*/guests)" = "$guests_before" ]
    [ "$(cat "$LAB_DIR"/nodes/*/net.d/10-wasm-cni.conflist)" = "$conf_before" ]
    run "$LAB" status
    [[ $output == *"guest:   oci://$REGISTRY/guests/routed:v1 (sha256:"* ]]
    [[ $output == *"pod-1 ip: 200.200.1."* ]]
}

@test "guest default: back to the default guest" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    lab_guest default "now run default.wasm"
    for node in master worker-1 worker-2; do
        d=$LAB_DIR/nodes/$node
        run jq -r '.plugins[0] | "\(.guest) \(.guestDigest)"' "$d/net.d/10-wasm-cni.conflist"
        [ "$output" = "$d/guests/default.wasm sha256:$(sha256sum "$d/guests/default.wasm" | cut -d' ' -f1)" ]
    done
    lab_test_all_pass
    # `up` with another guest would strand the pods the running one wired
    dist=$(cd "$BATS_TEST_DIRNAME/.." && pwd)/dist
    LAB_GUEST=$dist/guests/routed.wasm run "$LAB" up
    [ "$status" -eq 1 ]
    [[ $output == *"switch with '$LAB guest $dist/guests/routed.wasm'"* ]]
    run "$LAB" up
    [ "$status" -eq 0 ]
    [[ $output == *"pod-1 on worker-1: already running"* ]]
}

@test "guest host-gw, routes down: every node routes the others' podCIDRs itself, all 24 checks pass" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    run "$LAB" routes down
    [ "$status" -eq 0 ]
    lab_guest host-gw "now run host-gw.wasm"
    # reconciled on every node, the master (no pod, no ADD) included
    for node in master worker-1 worker-2; do
        [[ $output == *"reconcile (every node"*"  $node: "* ]]
    done
    run ip -n "$LAB_PREFIX-master" route show 200.200.2.0/24
    [[ $output == "200.200.2.0/24 via 10.0.0.4 dev vpc0"* ]]
    run ip -n "$LAB_PREFIX-worker-1" route show 200.200.2.0/24
    [[ $output == "200.200.2.0/24 via 10.0.0.4 dev vpc0"* ]]
    run ip -n "$LAB_PREFIX-worker-1" route show 200.200.0.0/24
    [[ $output == "200.200.0.0/24 via 10.0.0.2 dev vpc0"* ]]
    # not its own podCIDR through the uplink
    [ -z "$(ip -n "$LAB_PREFIX-worker-1" route show 200.200.1.0/24 dev vpc0)" ]
    lab_test_all_pass
    [[ $output == *"inter-node routes down"* && $output == *"inter-node: host-gw"* ]]
}

@test "guest host-gw: worker-2 leaves the peers, reconcile removes exactly its routes; back again" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    # pod-pod-other fails both ways: worker-1 has no route to worker-2's pods
    peers_leave_and_return 4
    lab_test_all_pass
}

@test "guest vxlan, routes down: the overlay carries every cross-node check, MTU 1450 end to end" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    lab_guest vxlan "now run vxlan.wasm"
    # host-gw's routes through the uplink are gone with its policy
    [ -z "$(uplink_routes worker-1)" ]
    for node in master worker-1 worker-2; do
        run ip -n "$LAB_PREFIX-$node" -d link show wcni.1
        echo "$output"
        [ "$status" -eq 0 ]
        [[ $output == *" mtu 1450 "* && $output == *"vxlan id 1 "* && $output == *"dstport 8472 "* && $output == *nolearning* ]]
    done
    run ip -n "$LAB_PREFIX-worker-1" -d link show wcni.1
    [[ $output == *"link/ether 0e:cc:0a:00:00:03 "* && $output == *"local 10.0.0.3 "* ]]
    run bridge -n "$LAB_PREFIX-worker-1" fdb show dev wcni.1
    echo "$output"
    [[ $output == *"0e:cc:0a:00:00:04 dst 10.0.0.4 "* && $output == *"0e:cc:0a:00:00:02 dst 10.0.0.2 "* ]]
    run ip -n "$LAB_PREFIX-worker-1" neigh show dev wcni.1 nud permanent
    [[ $output == *"200.200.2.0 lladdr 0e:cc:0a:00:00:04 "* ]]
    run ip -n "$LAB_PREFIX-worker-1" route show 200.200.2.0/24
    [[ $output == "200.200.2.0/24 via 200.200.2.0 dev wcni.1"* ]]
    # the pods' MTU leaves room for the VXLAN header
    run "$LAB" exec pod-1 cat /sys/class/net/eth0/mtu
    [ "$output" = 1450 ]
    lab_test_all_pass
    [[ $output == *"inter-node routes down"* && $output == *"inter-node: vxlan"* ]]
    [ "$(grep -cE ' pod-pod-mtu +pass +pass +OK +MTU 1450: 1422 bytes \+ DF' <<<"$output")" -eq 4 ]
}

@test "guest vxlan: worker-2 leaves the peers, reconcile removes exactly its routes, FDB and neighbour entries; back again" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    peers_leave_and_return 4
    lab_test_all_pass
}

@test "guest default, routes down: the course's expected failures again, no inter-node state left" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    lab_guest default "nothing to reconcile"
    for node in master worker-1 worker-2; do
        ! ip -n "$LAB_PREFIX-$node" link show wcni.1 2>/dev/null || false
        [ -z "$(uplink_routes "$node")" ]
    done
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"inter-node routes down"* && $output == *"inter-node: none"* ]]
    [ "$(grep -cE ' pod-pod-other +FAIL +FAIL +OK ' <<<"$output")" -eq 4 ]
    [ "$(grep -cE ' pod-node-other +FAIL +FAIL +OK ' <<<"$output")" -eq 4 ]
    [ "$(grep -cE ' node-pod-other +FAIL +FAIL +OK ' <<<"$output")" -eq 2 ]
    [ "$(grep -cE ' pod-pod-mtu +FAIL +FAIL +OK ' <<<"$output")" -eq 4 ]
    [ "$(grep -cE ' pod-dns +FAIL +FAIL +OK ' <<<"$output")" -eq 4 ]
    [[ $output == *"RESULT: all 24 checks as expected"* ]]
    run "$LAB" routes up
    [ "$status" -eq 0 ]
    lab_test_all_pass
}

@test "dual-stack: LAB_FAMILIES=4,6 up gives every pod both families; test prints 48 rows, all as expected" {
    run "$LAB" down
    [ "$status" -eq 0 ]
    LAB_FAMILIES=4,6 run "$LAB" up
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"families: 4,6"* ]]
    conf=$LAB_DIR/nodes/worker-1/net.d/10-wasm-cni.conflist
    jq -e '.plugins[0] | ((.myPodSubnet // [.ipam.ranges[][0].subnet]) == ["200.200.1.0/24", "fd00:200:200:1::/64"])' "$conf"
    # the lab remembers: a plain `up` keeps it, another LAB_FAMILIES is refused until `down`
    LAB_FAMILIES=4 run "$LAB" up
    [ "$status" -eq 1 ]
    [[ $output == *"the lab is up with LAB_FAMILIES=4,6"* ]]
    run "$LAB" up
    [ "$status" -eq 0 ]
    [[ $output == *"pod-1 on worker-1: already running (200.200.1."*", fd00:200:200:1::"* ]]
    # each pod: one address of each family on eth0, default routes of both families
    run "$LAB" exec pod-1 ip -o addr show dev eth0 scope global
    echo "$output"
    [[ $output == *"inet 200.200.1."*"/24 "* ]]
    [[ $output == *"inet6 fd00:200:200:1::"*"/64 "* ]]
    [[ $output != *tentative* ]]
    run ip -n "$LAB_PREFIX-worker-1" -6 addr show dev cni0 scope global
    [[ $output == *"inet6 fd00:200:200:1::1/64 "* && $output != *tentative* ]]
    run "$LAB" exec pod-1 ip -6 route show default
    [[ $output == *"via fd00:200:200:1::1 "* ]]
    run "$LAB" status
    [[ $output == *"pod-1 ip6: fd00:200:200:1::"* ]]
    # no sleep: the test runs right after up
    lab_test_all_pass 48
    [[ $output == *"families 4,6"* ]]
    # (the 24 IPv6 rows of the matrix; the path MTU and DNS tables have 4 each)
    [ "$(grep -E ' IPv6 +[a-z-]+ +pass +pass +OK ' <<<"$output" | grep -cvE ' (pod-pod-mtu|pod-dns) ')" -eq 24 ]
}

@test "dual-stack: routes down: the cross-node checks fail, as expected, in both families; routes up restores them" {
    run "$LAB" routes down
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"route fd00:200:200:2::/64 via fd00:10:240::4: removed"* ]]
    run "$LAB" status
    [[ $output == *"inter-node routes: down"* ]]
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    for fam in IPv4 IPv6; do
        [ "$(grep -cE " $fam +pod-pod-other +FAIL +FAIL +OK " <<<"$output")" -eq 4 ]
        [ "$(grep -cE " $fam +node-pod-other +FAIL +FAIL +OK " <<<"$output")" -eq 2 ]
        [ "$(grep -cE " $fam +pod-outside +pass +pass +OK " <<<"$output")" -eq 4 ]
        [ "$(grep -cE " $fam +(pod-pod-same|pod-node-own|node-pod-same) +pass +pass +OK " <<<"$output")" -eq 10 ]
    done
    [[ $output == *"RESULT: all 48 checks as expected"* ]]
    run "$LAB" routes up
    [ "$status" -eq 0 ]
    lab_test_all_pass 48
}

@test "dual-stack: host-gw and vxlan with routes down pass all 48 checks (IPv6 too: over IPv6 node IPs, in the IPv4 tunnel); default fails as expected again" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    conf=$LAB_DIR/nodes/worker-1/net.d/10-wasm-cni.conflist
    jq -e '.plugins[0] | .nodeIP == ["10.0.0.3", "fd00:10:240::3"]
        and .peers[2] == {name: "worker-2", nodeIP: ["10.0.0.4", "fd00:10:240::4"], podCIDRs: ["200.200.2.0/24", "fd00:200:200:2::/64"]}' "$conf"
    run "$LAB" routes down
    [ "$status" -eq 0 ]
    lab_guest host-gw
    run ip -n "$LAB_PREFIX-worker-1" -6 route show fd00:200:200:2::/64
    [[ $output == "fd00:200:200:2::/64 via fd00:10:240::4 dev vpc0"* ]]
    lab_test_all_pass 48
    peers_leave_and_return 8
    lab_guest vxlan
    run ip -n "$LAB_PREFIX-worker-1" -6 route show fd00:200:200:2::/64
    [[ $output == "fd00:200:200:2::/64 via fd00:200:200:2:: dev wcni.1"* ]]
    lab_test_all_pass 48
    [ "$(grep -cE ' IPv6 +pod-pod-mtu +pass +pass +OK +MTU 1450: 1402 bytes \+ DF' <<<"$output")" -eq 4 ]
    peers_leave_and_return 8
    lab_guest default
    run "$LAB" test
    echo "$output"
    [ "$status" -eq 0 ]
    for fam in IPv4 IPv6; do
        [ "$(grep -cE " $fam +pod-pod-other +FAIL +FAIL +OK " <<<"$output")" -eq 4 ]
        [ "$(grep -cE " $fam +node-pod-other +FAIL +FAIL +OK " <<<"$output")" -eq 2 ]
    done
    [[ $output == *"RESULT: all 48 checks as expected"* ]]
    run "$LAB" routes up
    [ "$status" -eq 0 ]
}

@test "dual-stack: a 0.1.0 guest (IPv4 only) is refused, the lab keeps its guest and pods" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "guests are wasm-cni's"
    fixture=$(cd "$BATS_TEST_DIRNAME" && pwd)/guests/fixtures/default-0.1.0.wasm
    conf_before=$(cat "$LAB_DIR"/nodes/*/net.d/10-wasm-cni.conflist)
    run "$LAB" guest "$fixture"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ $output == *"implements the 0.1.0 contract, which knows IPv4 only"* ]]
    [[ $output == *"the lab keeps its current guest"* ]]
    [ "$(cat "$LAB_DIR"/nodes/*/net.d/10-wasm-cni.conflist)" = "$conf_before" ]
    run "$LAB" status
    [[ $output == *"pod-1 ip6: fd00:200:200:1::"* ]]
}

@test "dual-stack: podman --ip, --ip6 and --mac-address give the pod exactly those" {
    [ "$LAB_PLUGIN" = wasm-cni ] || skip "the reference conflist declares no ips/mac capability"
    run pod_run worker-2 pinned6 --ip 200.200.2.77 --ip6 fd00:200:200:2::77 --mac-address 02:00:c8:c8:02:4d
    echo "$output"
    [ "$status" -eq 0 ]
    run "$LAB" podman worker-2 exec pinned6 ip -o addr show dev eth0 scope global
    echo "$output"
    [[ $output == *"inet 200.200.2.77/24 "* ]]
    [[ $output == *"inet6 fd00:200:200:2::77/64 "* ]]
    run "$LAB" podman worker-2 exec pinned6 cat /sys/class/net/eth0/address
    [ "$output" = 02:00:c8:c8:02:4d ]
    run "$LAB" exec pod-1 ping -6 -c 1 -W 1 fd00:200:200:2::77
    [ "$status" -eq 0 ]
    # the guest checks a requested address before it reserves any: the node, its
    # store and the runner's records log are as before
    before=$(node_state worker-2)
    run pod_run worker-2 misplaced6 --ip6 fd00:200:200:1::77
    echo "$output"
    [ "$status" -ne 0 ]
    [[ $output == *"fd00:200:200:1::77"* && $output == *"fd00:200:200:2::/64"* ]]
    "$LAB" podman worker-2 rm -f -t 0 misplaced6 >/dev/null 2>&1 || true
    [ "$(node_state worker-2)" = "$before" ]
    run "$LAB" podman worker-2 rm -f -t 0 pinned6
    [ "$status" -eq 0 ]
    kv=$LAB_DIR/nodes/worker-2/state/wasm-cni/kv
    [ -e "$kv/ip%2F200.200.2.2" ]   # (pod-2's: the names below are right)
    [ ! -e "$kv/ip%2F200.200.2.77" ]
    [ ! -e "$kv/ip%2Ffd00%3A200%3A200%3A2%3A%3A77" ]
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
    # the resolver is stopped
    [[ $output == *"resolver on master: stopped"* ]]
    ! pgrep -f "$(dirname "$LAB")/lab/dns.py" || false
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
