#!/usr/bin/env bats
# scripts/node/install-cni.sh run directly against a throwaway ROOT directory.

# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
load test_helper

setup() {
  common_setup
  NODE_SCRIPT="$REPO/scripts/node/install-cni.sh"
  export ROOT="$BATS_TEST_TMPDIR/root"
  mkdir -p "$ROOT"
  SRC="$BATS_TEST_TMPDIR/src"
  mkdir -p "$SRC"
  cp "$STUBS/fake-wasm-cni" "$SRC/wasm-cni"
  printf '\0asm\x0d\x00\x01\x00default' >"$SRC/default.wasm"
  printf '\0asm\x0d\x00\x01\x00allow-dns' >"$SRC/allow-dns.wasm"
  NETS=(--host-network 10.0.0.0/16 --pod-network 200.200.0.0/16 --pod-subnet 200.200.1.0/24)
  CONF="$ROOT/etc/cni/net.d/10-wasm-cni.conflist"
  # the node as a GCP Ubuntu VM: nft installed, default route via ens4 (MTU 1460)
  mkdir -p "$ROOT/usr/sbin" "$ROOT/proc/net" "$ROOT/sys/class/net/ens4" "$ROOT/sys/class/net/lo"
  printf '#!/bin/sh\nexit 0\n' >"$ROOT/usr/sbin/nft"
  chmod +x "$ROOT/usr/sbin/nft"
  printf 'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\nens4\t0100000A\t00000000\t0005\t0\t0\t100\tFFFFFFFF\t0\t0\t0\nens4\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n' \
    >"$ROOT/proc/net/route"
  echo 1460 >"$ROOT/sys/class/net/ens4/mtu"
  echo 65536 >"$ROOT/sys/class/net/lo/mtu"
}

# pin_of FILE: the pin a conflist must carry for FILE
pin_of() {
  local sum
  sum=$(sha256sum <"$1")
  echo "sha256:${sum%% *}"
}

install_it() {
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" "${NETS[@]}"
  assert_status 0
}

@test "install-cni install: runner, default guest and the conflist of docs/interfaces.md" {
  install_it
  cmp "$SRC/wasm-cni" "$ROOT/opt/cni/bin/wasm-cni"
  cmp "$SRC/default.wasm" "$ROOT/opt/cni/wasm/default.wasm"
  [ "$(stat -c %a "$ROOT/opt/cni/bin/wasm-cni")" = 755 ]
  [ "$(stat -c %a "$ROOT/opt/cni/wasm/default.wasm")" = 644 ]
  [ "$(stat -c %a "$CONF")" = 644 ]
  run jq -S . "$CONF"
  [ "$output" = "$(jq -S . <<JSON
{
  "cniVersion": "1.0.0",
  "name": "wasm-cni",
  "plugins": [{
    "type": "wasm-cni",
    "guest": "/opt/cni/wasm/default.wasm",
    "guestDigest": "$(pin_of "$ROOT/opt/cni/wasm/default.wasm")",
    "capabilities": {"ips": true, "mac": true},
    "myHostNetwork": "10.0.0.0/16",
    "myPodNetwork": "200.200.0.0/16",
    "myPodSubnet": "200.200.1.0/24",
    "mtu": 1460
  }]
}
JSON
)" ]
  # the pin is the plain sha256sum of the installed file
  [ "$(jq -r '.plugins[0].guestDigest' "$CONF")" = "sha256:$(sha256sum "$ROOT/opt/cni/wasm/default.wasm" | cut -d' ' -f1)" ]
  # no registry tool given: none installed
  [ ! -e "$ROOT/opt/cni/bin/wasm-cni-registry" ]
  # no temp files left next to the installed ones
  [ "$(find "$ROOT" -name '*.??????' | wc -l)" -eq 0 ]
  # the runner was run here, on the default guest, before anything was installed
  assert_calls <<<"fake-wasm-cni guest check --cache-dir <T>/root/var/cache/wasm-cni <T>/src/default.wasm"
}

@test "install-cni install: no nft binary on the node: refused with a clear message, nothing installed" {
  rm "$ROOT/usr/sbin/nft"
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "the nft binary is missing (looked for /usr/sbin/nft, /sbin/nft, /usr/bin/nft): the runner's firewall (forwarding and masquerade rules) runs it. Install it: 'sudo apt-get install -y nftables'"
  [ ! -e "$ROOT/opt" ]
  [ ! -e "$ROOT/etc" ]
  # /sbin/nft (usr-unmerged) or /usr/bin/nft count as well
  mkdir -p "$ROOT/sbin" && printf '#!/bin/sh\n' >"$ROOT/sbin/nft" && chmod +x "$ROOT/sbin/nft"
  install_it
}

@test "install-cni install: a runner that does not run on the node (or refuses the guest) is not installed" {
  STUB_VALIDATE_FAIL=1 run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "the runner does not work on this node ('wasm-cni guest check' of the default guest, exit 1)"
  assert_contains "$stderr" "It must be a Linux x86-64 build whose C library is not newer than this node's"
  [ ! -e "$ROOT/opt" ]
  printf '\x7fELF\x02\x01\x01\x00garbage' >"$SRC/wasm-cni"
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "the runner does not work on this node"
  [ ! -e "$ROOT/opt" ]
}

@test "install-cni: the pod MTU is the uplink's (the default route's interface), or --mtu" {
  install_it
  assert_contains "$output" "pod MTU 1460: the MTU of the uplink ens4"
  run jq -r '.plugins[0].mtu' "$CONF"
  [ "$output" = 1460 ]
  NETS+=(--mtu 1400)
  install_it
  run jq -r '.plugins[0].mtu' "$CONF"
  [ "$output" = 1400 ]
  NETS+=(--mtu 70000)
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "MTU '70000' is not a number in 576..65535"
}

@test "install-cni: no default route: refused, asking for --mtu" {
  sed -i '/\t00000000\t0100000A/d' "$ROOT/proc/net/route"
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "cannot find this node's uplink (no IPv4 default route in /proc/net/route); pass --mtu N"
  [ ! -e "$ROOT/opt" ]
}

@test "install-cni install: re-running replaces everything (idempotent)" {
  install_it
  NETS=(--host-network 10.0.0.0/16 --pod-network 200.200.0.0/16 --pod-subnet 200.200.2.0/24)
  install_it
  run jq -r '.plugins[0].myPodSubnet' "$CONF"
  [ "$output" = 200.200.2.0/24 ]
}

@test "install-cni: refuses malformed CIDRs and a pod subnet outside the pod network" {
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" \
    --host-network 10.0.0.0/16 --pod-network 200.200.0.0/16 --pod-subnet 200.200.1.0
  assert_status 1
  assert_contains "$stderr" "--pod-subnet '200.200.1.0' is not an IPv4 CIDR"
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" \
    --host-network 10.0.0.0/16 --pod-network 200.200.0.0/16 --pod-subnet 200.201.1.0/24
  assert_status 1
  assert_contains "$stderr" "--pod-subnet 200.201.1.0/24 is not inside --pod-network 200.200.0.0/16"
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" \
    --host-network 10.0.0.0/16 --pod-network 200.200.0.0/16 --pod-subnet 200.200.0.0/8
  assert_status 1
  [ ! -e "$ROOT/opt" ]
  [ ! -e "$ROOT/etc" ]
}

@test "install-cni: usage errors exit 2" {
  for args in "" "bogus" "install" "install --runner" "guest --default --file x.wasm" "uninstall --pod-subnet 1.2.3.0/24" "uninstall --mtu 1400" "uninstall --ip-masq6" \
    "conflist --host-network 10.0.0.0/16" "conflist --guest /g.wasm --default" "install --cache-dir /c" "guest --default --guest /g.wasm" \
    "guest --ref r/x:v1 --file x.wasm" "guest --ref r/x:v1 --default" "guest --default --insecure" "guest --file x.wasm --ca-file c.pem" \
    "install --runner r --default-guest g --ref r/x:v1" "guest --default --registry-tool t" "install --runner r --default-guest g --guest-digest sha256:00" \
    "guest --file x.wasm --guest-digest sha256:00" "uninstall --ref r/x:v1" "conflist --guest /g.wasm --ref r/x:v1"; do
    # shellcheck disable=SC2086
    run --separate-stderr "$NODE_SCRIPT" $args
    assert_status 2
    assert_contains "$stderr" "usage: install-cni.sh install"
  done
}

@test "install-cni guest --file: validated by the installed runner, copied, conflist switched" {
  install_it
  : >"$STUB_LOG"
  run --separate-stderr "$NODE_SCRIPT" guest --file "$SRC/allow-dns.wasm" "${NETS[@]}"
  assert_status 0
  assert_calls <<<"fake-wasm-cni guest check --cache-dir <T>/root/var/cache/wasm-cni <T>/src/allow-dns.wasm"
  cmp "$SRC/allow-dns.wasm" "$ROOT/opt/cni/wasm/allow-dns.wasm"
  run jq -r '.plugins[0] | "\(.guest) \(.guestDigest) \(.myPodSubnet)"' "$CONF"
  [ "$output" = "/opt/cni/wasm/allow-dns.wasm $(pin_of "$ROOT/opt/cni/wasm/allow-dns.wasm") 200.200.1.0/24" ]
  [ "$(pin_of "$SRC/allow-dns.wasm")" != "$(pin_of "$SRC/default.wasm")" ]
}

@test "install-cni guest --file: a runner from before 'guest check' is asked with 'validate'" {
  install_it
  : >"$STUB_LOG"
  STUB_OLD_RUNNER=1 run --separate-stderr "$NODE_SCRIPT" guest --file "$SRC/allow-dns.wasm" "${NETS[@]}"
  assert_status 0
  printf '%s\n' "fake-wasm-cni guest check --cache-dir <T>/root/var/cache/wasm-cni <T>/src/allow-dns.wasm" \
    "fake-wasm-cni validate <T>/src/allow-dns.wasm" | assert_calls
  cmp "$SRC/allow-dns.wasm" "$ROOT/opt/cni/wasm/allow-dns.wasm"
}

@test "install-cni guest --file: a guest the runner refuses changes nothing" {
  install_it
  before="$(cat "$CONF")"
  STUB_VALIDATE_FAIL=1 run --separate-stderr "$NODE_SCRIPT" guest --file "$SRC/allow-dns.wasm" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "imports wasi:sockets/tcp"
  assert_contains "$stderr" "refuses 'allow-dns.wasm' (reason above); the node keeps its current guest"
  [ "$(cat "$CONF")" = "$before" ]
  [ ! -e "$ROOT/opt/cni/wasm/allow-dns.wasm" ]
}

@test "install-cni guest: refuses default.wasm and odd names" {
  install_it
  cp "$SRC/allow-dns.wasm" "$BATS_TEST_TMPDIR/default.wasm"
  run --separate-stderr "$NODE_SCRIPT" guest --file "$BATS_TEST_TMPDIR/default.wasm" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "would replace the default guest"
  cp "$SRC/allow-dns.wasm" "$BATS_TEST_TMPDIR/'x.wasm"
  run --separate-stderr "$NODE_SCRIPT" guest --file "$BATS_TEST_TMPDIR/'x.wasm" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "must match"
}

@test "install-cni guest --default: back to default.wasm" {
  install_it
  run --separate-stderr "$NODE_SCRIPT" guest --file "$SRC/allow-dns.wasm" "${NETS[@]}"
  assert_status 0
  : >"$STUB_LOG"
  run --separate-stderr "$NODE_SCRIPT" guest --default "${NETS[@]}"
  assert_status 0
  run jq -r '.plugins[0] | "\(.guest) \(.guestDigest)"' "$CONF"
  [ "$output" = "/opt/cni/wasm/default.wasm $(pin_of "$ROOT/opt/cni/wasm/default.wasm")" ]
  # precompiled again into the runner's cache (it may have been cleared since install)
  assert_calls <<<"fake-wasm-cni guest check --cache-dir <T>/root/var/cache/wasm-cni <T>/root/opt/cni/wasm/default.wasm"
}

@test "install-cni guest --default: a default guest the runner refuses leaves the conflist alone" {
  install_it
  run --separate-stderr "$NODE_SCRIPT" guest --file "$SRC/allow-dns.wasm" "${NETS[@]}"
  assert_status 0
  before="$(cat "$CONF")"
  STUB_VALIDATE_FAIL=1 run --separate-stderr "$NODE_SCRIPT" guest --default "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "refuses default.wasm (reason above); the node keeps its current guest"
  [ "$(cat "$CONF")" = "$before" ]
}

@test "install-cni guest: refuses when wasm-cni is not installed yet" {
  run --separate-stderr "$NODE_SCRIPT" guest --default "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "wasm-cni is not installed on this node; run scripts/cni-plugin.sh up first"
  [ ! -e "$CONF" ]
}

@test "install-cni: warns when another network config sorts first" {
  mkdir -p "$ROOT/etc/cni/net.d"
  echo '{}' >"$ROOT/etc/cni/net.d/05-other.conflist"
  echo '{}' >"$ROOT/etc/cni/net.d/99-late.conf"
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" "${NETS[@]}"
  assert_status 0
  assert_contains "$stderr" "warning: /etc/cni/net.d/05-other.conflist sorts before /etc/cni/net.d/10-wasm-cni.conflist"
  [[ "$stderr" != *99-late* ]]
}

@test "install-cni uninstall: removes runner, guests, conflist and cache; leaves the rest" {
  printf '#!/bin/sh\n' >"$SRC/wasm-cni-registry"
  run --separate-stderr "$NODE_SCRIPT" install --runner "$SRC/wasm-cni" --default-guest "$SRC/default.wasm" \
    --registry-tool "$SRC/wasm-cni-registry" "${NETS[@]}"
  assert_status 0
  [ -x "$ROOT/opt/cni/bin/wasm-cni-registry" ]
  mkdir -p "$ROOT/var/cache/wasm-cni" "$ROOT/var/lib/cni/wasm-cni"
  touch "$ROOT/var/cache/wasm-cni/x.cwasm" "$ROOT/opt/cni/bin/bridge" "$ROOT/etc/cni/net.d/20-other.conflist"
  run --separate-stderr "$NODE_SCRIPT" uninstall
  assert_status 0
  [ ! -e "$ROOT/opt/cni/bin/wasm-cni" ]
  [ ! -e "$ROOT/opt/cni/bin/wasm-cni-registry" ]
  [ ! -e "$ROOT/opt/cni/wasm" ]
  [ ! -e "$CONF" ]
  [ ! -e "$ROOT/var/cache/wasm-cni" ]
  [ -e "$ROOT/opt/cni/bin/bridge" ]
  [ -e "$ROOT/etc/cni/net.d/20-other.conflist" ]
  [ -e "$ROOT/var/lib/cni/wasm-cni" ]
  run --separate-stderr "$NODE_SCRIPT" uninstall # nothing left to remove: still fine
  assert_status 0
}

@test "install-cni conflist: the conflist install writes, on stdout, with the runtime paths when given; writes nothing" {
  install_it
  run --separate-stderr "$NODE_SCRIPT" conflist --guest /opt/cni/wasm/default.wasm \
    --guest-digest "$(pin_of "$SRC/default.wasm")" "${NETS[@]}"
  assert_status 0
  [ "$output" = "$(cat "$CONF")" ]
  assert_contains "$stderr" "pod MTU 1460: the MTU of the uplink ens4"
  rm -rf "${ROOT:?}/opt" "${ROOT:?}/etc"
  # scripts/lab.sh's nodes: files in a directory, the runner's paths in it
  run --separate-stderr "$NODE_SCRIPT" conflist --guest '/lab/node 1/guests/my "x".wasm' "${NETS[@]}" --mtu 1500 \
    --cache-dir /lab/n1/cache --state-dir /lab/n1/state --log-file /lab/n1/log/wasm-cni.log \
    --guest-digest sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  assert_status 0
  run jq -S . <<<"$output"
  assert_status 0
  [ "$output" = "$(jq -S . <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "wasm-cni",
  "plugins": [{
    "type": "wasm-cni",
    "guest": "/lab/node 1/guests/my \"x\".wasm",
    "guestDigest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "capabilities": {"ips": true, "mac": true},
    "myHostNetwork": "10.0.0.0/16",
    "myPodNetwork": "200.200.0.0/16",
    "myPodSubnet": "200.200.1.0/24",
    "mtu": 1500,
    "cacheDir": "/lab/n1/cache",
    "stateDir": "/lab/n1/state",
    "logFile": "/lab/n1/log/wasm-cni.log"
  }]
}
JSON
)" ]
  [ ! -e "$ROOT/opt" ]
  [ ! -e "$ROOT/etc" ]
  # the same checks as install: networks, and paths must be absolute
  run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm --host-network 10.0.0.0/16 \
    --pod-network 200.200.0.0/16 --pod-subnet 200.201.1.0/24
  assert_status 1
  assert_contains "$stderr" "--pod-subnet 200.201.1.0/24 is not inside --pod-network 200.200.0.0/16"
  run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm "${NETS[@]}" --state-dir state
  assert_status 1
  assert_contains "$stderr" "stateDir 'state' must be an absolute path"
  [ -z "$output" ]
  # a pin is sha256: and 64 lowercase hex digits
  for bad in sha256:0123 md5:0123456789abcdef0123456789abcdef "sha256:$(printf 'A%.0s' {1..64})"; do
    run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm "${NETS[@]}" --guest-digest "$bad"
    assert_status 1
    assert_contains "$stderr" "--guest-digest '$bad' must be sha256: and 64 lowercase hex digits"
    [ -z "$output" ]
  done
}

@test "install-cni conflist: dual-stack networks become lists (IPv4 first), ipMasq6 when asked; bad ones are refused" {
  run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm --mtu 1500 --ip-masq6 \
    --host-network fd00:10:240::/64,10.0.0.0/16 --pod-network 200.200.0.0/16,fd00:200:200::/56 \
    --pod-subnet 200.200.1.0/24,fd00:200:200:1::/64
  assert_status 0
  run jq -S . <<<"$output"
  assert_status 0
  [ "$output" = "$(jq -S . <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "wasm-cni",
  "plugins": [{
    "type": "wasm-cni",
    "guest": "/g.wasm",
    "capabilities": {"ips": true, "mac": true},
    "myHostNetwork": ["10.0.0.0/16", "fd00:10:240::/64"],
    "myPodNetwork": ["200.200.0.0/16", "fd00:200:200::/56"],
    "myPodSubnet": ["200.200.1.0/24", "fd00:200:200:1::/64"],
    "ipMasq6": true,
    "mtu": 1500
  }]
}
JSON
)" ]
  # IPv6 alone is a network too; without --ip-masq6 there is no ipMasq6 key
  run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm --mtu 1500 --host-network fd00:10:240::/64 \
    --pod-network fd00:200:200::/56 --pod-subnet fd00:200:200:ff::/64
  assert_status 0
  [ "$(jq -c '.plugins[0] | [.myHostNetwork, .myPodNetwork, .myPodSubnet, has("ipMasq6")]' <<<"$output")" = \
    '["fd00:10:240::/64","fd00:200:200::/56","fd00:200:200:ff::/64",false]' ]
  local -a bad
  for bad in "--pod-subnet 200.200.1.0/24,fd00:200:201:1::/64|--pod-subnet fd00:200:201:1::/64 is not inside --pod-network fd00:200:200::/56" \
    "--pod-subnet 200.200.1.0/24,fd00:200:200:100::/64|--pod-subnet fd00:200:200:100::/64 is not inside --pod-network fd00:200:200::/56" \
    "--pod-subnet 200.200.1.0/24,fd00:200:200::/48|--pod-subnet fd00:200:200::/48 is not inside --pod-network fd00:200:200::/56" \
    "--pod-subnet 200.200.1.0/24|--pod-subnet 200.200.1.0/24 and --host-network 10.0.0.0/16,fd00:10:240::/64 name different address families" \
    "--pod-subnet 200.200.1.0/24,fd00:200:200:1::1::/64|--pod-subnet 'fd00:200:200:1::1::/64' is not an IPv6 CIDR" \
    "--pod-subnet 200.200.1.0/24,fd00:200:200:1::/129|--pod-subnet 'fd00:200:200:1::/129' is not an IPv6 CIDR" \
    "--pod-subnet 200.200.1.0/24,200.200.2.0/24|--pod-subnet '200.200.1.0/24,200.200.2.0/24' names two IPv4 CIDRs (one per family)" \
    "--pod-subnet 200.200.1.0/24,|--pod-subnet '200.200.1.0/24,' must be one CIDR, or an IPv4 and an IPv6 CIDR separated by a comma"; do
    read -ra args <<<"${bad%%|*}"
    run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm --mtu 1500 --host-network 10.0.0.0/16,fd00:10:240::/64 \
      --pod-network 200.200.0.0/16,fd00:200:200::/56 "${args[@]}"
    assert_status 1
    assert_contains "$stderr" "${bad#*|}"
    [ -z "$output" ]
  done
  run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm "${NETS[@]}" --mtu 1500 --ip-masq6
  assert_status 1
  assert_contains "$stderr" "--ip-masq6 needs an IPv6 pod subnet"
}

# registry: a stub registry directory the fake runner's 'guest pull' reads, and the
# registry client installed next to the runner (what the real 'guest pull' runs)
stub_registry() {
  printf '#!/bin/sh\n' >"$ROOT/opt/cni/bin/wasm-cni-registry"
  chmod +x "$ROOT/opt/cni/bin/wasm-cni-registry"
  export STUB_REGISTRY="$BATS_TEST_TMPDIR/registry"
  mkdir -p "$STUB_REGISTRY/registry.example:5000/guests"
  printf '\0asm\x0d\x00\x01\x00routed v1' >"$STUB_REGISTRY/registry.example:5000/guests/routed:v1"
  printf '\0asm\x0d\x00\x01\x00routed v2' >"$STUB_REGISTRY/registry.example:5000/guests/routed:v2"
  V1_PIN="$(pin_of "$STUB_REGISTRY/registry.example:5000/guests/routed:v1")"
  V1_NAME="routed-${V1_PIN:7:12}.wasm"
}

@test "install-cni guest --ref: pulled by the installed runner, checked, installed under a digest name, pinned" {
  install_it
  stub_registry
  : >"$STUB_LOG"
  run --separate-stderr "$NODE_SCRIPT" guest --ref oci://registry.example:5000/guests/routed:v1 --insecure "${NETS[@]}"
  assert_status 0
  assert_contains "$output" "pulled registry.example:5000/guests/routed:v1: $V1_PIN"
  printf '%s\n' "fake-wasm-cni guest pull registry.example:5000/guests/routed:v1 -o <MKTEMP>/guest.wasm --insecure" \
    "fake-wasm-cni guest check --cache-dir <T>/root/var/cache/wasm-cni <MKTEMP>/guest.wasm" | assert_calls
  cmp "$STUB_REGISTRY/registry.example:5000/guests/routed:v1" "$ROOT/opt/cni/wasm/$V1_NAME"
  [ "$(stat -c %a "$ROOT/opt/cni/wasm/$V1_NAME")" = 644 ]
  run jq -r '.plugins[0] | "\(.guest) \(.guestDigest) \(.myPodSubnet)"' "$CONF"
  [ "$output" = "/opt/cni/wasm/$V1_NAME $V1_PIN 200.200.1.0/24" ]
  [ "$V1_PIN" = "$(pin_of "$ROOT/opt/cni/wasm/$V1_NAME")" ]
  assert_tmp_clean
  # a new version under the same tag: another file; the one in use is not rewritten
  cp "$STUB_REGISTRY/registry.example:5000/guests/routed:v2" "$STUB_REGISTRY/registry.example:5000/guests/routed:v1"
  v1_inode=$(stat -c %i "$ROOT/opt/cni/wasm/$V1_NAME")
  run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/routed:v1 --insecure "${NETS[@]}"
  assert_status 0
  v2_pin="$(pin_of "$STUB_REGISTRY/registry.example:5000/guests/routed:v2")"
  [ "$(jq -r '.plugins[0] | "\(.guest) \(.guestDigest)"' "$CONF")" = "/opt/cni/wasm/routed-${v2_pin:7:12}.wasm $v2_pin" ]
  [ "$(stat -c %i "$ROOT/opt/cni/wasm/$V1_NAME")" = "$v1_inode" ]
  # and back to the default guest, pinned
  run --separate-stderr "$NODE_SCRIPT" guest --default "${NETS[@]}"
  assert_status 0
  [ "$(jq -r '.plugins[0] | "\(.guest) \(.guestDigest)"' "$CONF")" = "/opt/cni/wasm/default.wasm $(pin_of "$SRC/default.wasm")" ]
}

@test "install-cni guest --ref: the registry options reach the pull; an expected digest is enforced" {
  install_it
  stub_registry
  echo pem >"$BATS_TEST_TMPDIR/ca.pem"
  echo '{"auths":{}}' >"$BATS_TEST_TMPDIR/config.json"
  : >"$STUB_LOG"
  run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/routed:v1 --ca-file "$BATS_TEST_TMPDIR/ca.pem" \
    --registry-config "$BATS_TEST_TMPDIR/config.json" --guest-digest "$V1_PIN" "${NETS[@]}"
  assert_status 0
  assert_contains "$(head -1 "$STUB_LOG")" "guest pull registry.example:5000/guests/routed:v1 -o $TMPDIR/"
  assert_contains "$(head -1 "$STUB_LOG")" "/guest.wasm --ca-file $BATS_TEST_TMPDIR/ca.pem --registry-config $BATS_TEST_TMPDIR/config.json"
  [ "$(jq -r '.plugins[0].guestDigest' "$CONF")" = "$V1_PIN" ]
}

@test "install-cni guest --ref: a failed pull (down, unknown tag, bad options, other digest, refused) changes nothing" {
  install_it
  stub_registry
  before="$(cat "$CONF")"
  guests_before="$(ls "$ROOT/opt/cni/wasm")"
  check_unchanged() {
    [ "$(cat "$CONF")" = "$before" ]
    [ "$(ls "$ROOT/opt/cni/wasm")" = "$guests_before" ]
    assert_tmp_clean
  }
  STUB_REGISTRY_DOWN=1 run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/routed:v1 "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "cannot reach registry.example:5000: Connection refused"
  assert_contains "$stderr" "pulling registry.example:5000/guests/routed:v1 failed (wasm-cni guest pull exit 1, reason above); the node keeps its current guest and conflist."
  check_unchanged
  run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/routed:v9 "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "routed:v9: manifest unknown"
  assert_contains "$stderr" "the node keeps its current guest and conflist"
  check_unchanged
  run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/routed:v1 --ca-file /nonexistent.pem "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "cannot read --ca-file /nonexistent.pem"
  check_unchanged
  run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/routed:v2 --guest-digest "$V1_PIN" "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "is $(pin_of "$STUB_REGISTRY/registry.example:5000/guests/routed:v2") here, not the pinned $V1_PIN"
  check_unchanged
  echo "not wasm" >"$STUB_REGISTRY/registry.example:5000/guests/text"
  run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/text "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "is not a WebAssembly component"
  check_unchanged
  STUB_VALIDATE_FAIL=1 run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/routed:v1 "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "refuses '$V1_NAME' (reason above); the node keeps its current guest."
  check_unchanged
  rm "$ROOT/opt/cni/bin/wasm-cni-registry"
  : >"$STUB_LOG"
  run --separate-stderr "$NODE_SCRIPT" guest --ref registry.example:5000/guests/routed:v1 "${NETS[@]}"
  assert_status 1
  assert_contains "$stderr" "this node has no registry client (/opt/cni/bin/wasm-cni-registry, what 'wasm-cni guest pull' runs): build dist/bin/wasm-cni-registry (scripts/build.sh) and re-run scripts/cni-plugin.sh up"
  assert_no_calls
  check_unchanged
  for bad in "registry.example:5000" "https://registry.example/guests/x:v1" "registry.example/Guests/x" "r.example/x;reboot" "r.example/x:v1@sha256:00"; do
    run --separate-stderr "$NODE_SCRIPT" guest --ref "$bad" "${NETS[@]}"
    assert_status 1
    assert_contains "$stderr" "is not a registry reference (host[:port]/repository[:tag][@sha256:<hex>])"
  done
  check_unchanged
}

@test "install-cni --peers/--node-ip: the cluster in the conflist (inline or from a file, one line); bad ones refused" {
  peers='[{"name": "master", "nodeIP": ["10.0.0.2", "fd00:10:240::2"], "podCIDRs": ["200.200.0.0/24", "fd00:200:200::/64"]},
  {"name": "worker-1", "nodeIP": ["10.0.0.3", "fd00:10:240::3"], "podCIDRs": ["200.200.1.0/24", "fd00:200:200:1::/64"]}]'
  printf '%s\n' "$peers" >"$BATS_TEST_TMPDIR/peers.json"
  DUAL=(--mtu 1500 --host-network "10.0.0.0/16,fd00:10:240::/64" --pod-network "200.200.0.0/16,fd00:200:200::/56"
    --pod-subnet "200.200.1.0/24,fd00:200:200:1::/64")
  for arg in "$peers" "$BATS_TEST_TMPDIR/peers.json"; do
    run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm "${DUAL[@]}" --node-ip fd00:10:240::3,10.0.0.3 --peers "$arg"
    assert_status 0
    [ "$(jq -c '.plugins[0].nodeIP' <<<"$output")" = '["10.0.0.3","fd00:10:240::3"]' ]
    [ "$(jq -c '.plugins[0].peers' <<<"$output")" = "$(jq -c . <<<"$peers")" ]
    [ "$(grep -c '"peers": ' <<<"$output")" -eq 1 ]
  done
  # single-stack: nodeIP a string; neither given: neither key
  run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm "${NETS[@]}" --mtu 1500 --node-ip 10.0.0.3 --peers '[]'
  assert_status 0
  [ "$(jq -c '.plugins[0] | [.nodeIP, .peers]' <<<"$output")" = '["10.0.0.3",[]]' ]
  run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm "${NETS[@]}" --mtu 1500
  [ "$(jq -c '.plugins[0] | [has("nodeIP"), has("peers")]' <<<"$output")" = '[false,false]' ]
  for bad in "--node-ip 10.1.0.3|--node-ip 10.1.0.3 is not inside --host-network 10.0.0.0/16" \
    "--node-ip 10.0.0.300|--node-ip '10.0.0.300' is not an IPv4 address" \
    "--node-ip fd00:10:240::3|--node-ip fd00:10:240::3 is not inside --host-network (no IPv6 network)" \
    "--node-ip 10.0.0.3,10.0.0.4|--node-ip '10.0.0.3,10.0.0.4' names two IPv4 addresses" \
    "--peers {}|--peers '{}': no such file" \
    "--peers [{}|--peers must be a JSON list of nodes"; do
    read -ra args <<<"${bad%%|*}"
    run --separate-stderr "$NODE_SCRIPT" conflist --guest /g.wasm "${NETS[@]}" --mtu 1500 "${args[@]}"
    assert_status 1
    assert_contains "$stderr" "${bad#*|}"
    [ -z "$output" ]
  done
}

@test "install-cni peers: rewrites the installed conflist's peers (and nodeIP), the rest unchanged, then reconciles" {
  NETS+=(--peers '[{"name": "a", "nodeIP": "10.0.0.2", "podCIDRs": ["200.200.0.0/24"]}]')
  install_it
  before=$(cat "$CONF")
  # the installed runner's reconcile, as a stand-in that logs its call
  printf '#!/bin/sh\necho "runner $*" >>"$STUB_LOG"\necho "reconciled: 1 route removed"\n' >"$ROOT/opt/cni/bin/wasm-cni"
  : >"$STUB_LOG"
  run --separate-stderr "$NODE_SCRIPT" peers --peers '[]' --node-ip 10.0.0.3
  assert_status 0
  assert_contains "$output" "wrote the peers and nodeIP 10.0.0.3 of /etc/cni/net.d/10-wasm-cni.conflist"
  assert_contains "$output" "reconcile: reconciled: 1 route removed"
  assert_calls <<<"runner reconcile -c <T>/root/etc/cni/net.d/10-wasm-cni.conflist"
  [ "$(jq -c '.plugins[0] | [.nodeIP, .peers]' "$CONF")" = '["10.0.0.3",[]]' ]
  [ "$(jq -S '.plugins[0] | del(.peers, .nodeIP)' "$CONF")" = "$(jq -S '.plugins[0] | del(.peers)' <<<"$before")" ]
  assert_tmp_clean
  # again: each key once
  run --separate-stderr "$NODE_SCRIPT" peers --peers "[$(jq -c '.plugins[0].peers[0]' <<<"$before")]"
  assert_status 0
  [ "$(grep -c '"peers": ' "$CONF")" -eq 1 ]
  [ "$(grep -c '"nodeIP": ' "$CONF")" -eq 1 ]
  [ "$(jq -c '.plugins[0].peers' "$CONF")" = "$(jq -c '.plugins[0].peers' <<<"$before")" ]
  run --separate-stderr "$NODE_SCRIPT" peers --peers '[]' --node-ip 10.9.0.3
  assert_status 1
  assert_contains "$stderr" "--node-ip 10.9.0.3 is not inside --host-network 10.0.0.0/16"
  # a failing reconcile: reported with the runner's message and exit code
  printf '#!/bin/sh\necho "guest refused peer worker-9" >&2\nexit 7\n' >"$ROOT/opt/cni/bin/wasm-cni"
  run --separate-stderr "$NODE_SCRIPT" reconcile
  assert_status 1
  assert_contains "$stderr" "wasm-cni reconcile -c /etc/cni/net.d/10-wasm-cni.conflist failed (exit 7): guest refused peer worker-9"
  run --separate-stderr "$NODE_SCRIPT" reconcile --peers '[]'
  assert_status 2
  rm "$CONF"
  run --separate-stderr "$NODE_SCRIPT" peers --peers '[]'
  assert_status 1
  assert_contains "$stderr" "/etc/cni/net.d/10-wasm-cni.conflist missing: run scripts/cni-plugin.sh up first."
}
