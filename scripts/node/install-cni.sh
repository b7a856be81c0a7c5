#!/usr/bin/env bash
# install-cni.sh: put wasm-cni in place on one node (run as root on the node;
# scripts/cni-plugin.sh copies it to every node and runs it with sudo).
#
#   install-cni.sh install --runner FILE --default-guest FILE [--registry-tool FILE] NETWORKS
#       runner -> /opt/cni/bin/wasm-cni, guest -> /opt/cni/wasm/default.wasm,
#       writes /etc/cni/net.d/10-wasm-cni.conflist using the default guest;
#       --registry-tool: wasm-cni-registry (what `wasm-cni guest push|pull` runs) next to
#       the runner, /opt/cni/bin/wasm-cni-registry
#   install-cni.sh guest (--file FILE.wasm | --default) NETWORKS
#       --file: checks FILE (wasm-cni guest check) with the installed runner, copies it to
#       /opt/cni/wasm/<basename>; rewrites the conflist to use it (or default.wasm, checked
#       the same way). Either way the guest is precompiled into the runner's cache first.
#   install-cni.sh guest --ref [oci://]REF [--guest-digest sha256:HEX] [--insecure]
#           [--ca-file PEM] [--registry-config FILE] NETWORKS
#       pulls REF (host[:port]/repository[:tag][@sha256:HEX]) with the installed runner
#       (`wasm-cni guest pull`: digests verified, the checks of `guest check`) into a
#       temporary file, then as --file, installed as /opt/cni/wasm/<last path segment of
#       the repository>-<first 12 hex digits of its sha256>.wasm (a new guest never
#       rewrites a file in use). --guest-digest: refuse a pull whose bytes have another
#       digest (scripts/cni-plugin.sh passes the first node's to the others). A failed
#       pull changes nothing on the node.
#   install-cni.sh uninstall
#       removes the runner (and wasm-cni-registry), /opt/cni/wasm, the conflist and the
#       guest cache
#   install-cni.sh peers --peers FILE|JSON [--node-ip IPS]
#       rewrites the "peers" (and, when given, "nodeIP") of the installed conflist, the
#       rest unchanged, then runs the runner's reconcile on it (as `reconcile`): the
#       refresh after nodes join or leave
#   install-cni.sh reconcile
#       `wasm-cni reconcile -c /etc/cni/net.d/10-wasm-cni.conflist` with the installed
#       runner: the guest's node-level policy (host-gw routes, a VXLAN link and its
#       entries) brought in line with the conflist now, without waiting for a pod; a
#       guest without that export has nothing to reconcile (exit 0)
#   install-cni.sh conflist --guest PATH [--guest-digest sha256:HEX] NETWORKS [--cache-dir DIR]
#           [--state-dir DIR] [--log-file FILE]
#       prints the conflist that install and guest write, for guest PATH, on stdout and
#       writes nothing; the three runtime paths (the runner's cacheDir, stateDir and
#       logFile) go into it when given: scripts/lab.sh's nodes, whose files live in a
#       directory, take their conflists from here
#   NETWORKS = --host-network CIDRS --pod-network CIDRS --pod-subnet CIDRS [--ip-masq6] [--mtu N]
#       CIDRS: one CIDR, or an IPv4 and an IPv6 one separated by a comma (dual-stack:
#       e.g. --pod-subnet 200.200.1.0/24,fd00:200:200:1::/64); the three options name
#       the same families. One CIDR is written as a string, two as a list, IPv4 first
#       (the default guest's myHostNetwork/myPodNetwork/myPodSubnet take either).
#       --ip-masq6: "ipMasq6": true (the default guest masquerades IPv6 pod traffic
#       leaving the cluster too; off by default, as most dual-stack clusters route IPv6).
#       --mtu: the pods' MTU (conflist "mtu"); default: the MTU of the node's uplink
#       (the interface of its default route), 1460 on GCP
#       --peers FILE|JSON: the cluster's nodes, this one included, as the conflist's
#       "peers": a JSON list [{"name": N, "nodeIP": IP or [IPV4, IPV6], "podCIDRs":
#       [CIDR...]}, ...] given inline (starting with '[') or in FILE. Only its shape is
#       checked here (one JSON list); the runner checks its entries (code 7, naming the
#       entry). Written on one line, so that `peers` can replace it.
#       --node-ip IPS: this node's IP(s), "nodeIP" (one IP, or IPV4,IPV6 in the families
#       of --host-network, each inside it); without it the runner takes the uplink's
#       first global address of each family
#   Every conflist declares the "ips" and "mac" capabilities, so that a runtime's
#   requested addresses and MAC (podman --ip/--ip6/--mac-address) reach the runner as
#   runtimeConfig.ips/mac.
#
# Before installing, the node is checked for what the runner needs at run time: the
# nft binary (the runner's firewall runs it, at /usr/sbin/nft, /sbin/nft or
# /usr/bin/nft) and the runner itself running here ('guest check' of the default guest:
# right architecture, a C library it can link with). That check also precompiles the
# guest into the runner's cache (/var/cache/wasm-cni, the conflist's default cacheDir;
# `guest check --cache-dir`), so no pod's ADD compiles it (seconds for a Python guest).
#
# Every conflist written pins its guest: "guestDigest": "sha256:<hex>", the sha256 of
# the guest file as installed on the node (the runner refuses, code 7, a guest whose
# bytes differ). Files are replaced atomically (write + rename), so a CNI call never
# sees half a file.
# ROOT=/tmp/x writes everything under /tmp/x instead of / (tests, no root needed).
set -euo pipefail

ROOT="${ROOT:-}"
BIN_PATH=/opt/cni/bin/wasm-cni
GUEST_DIR=/opt/cni/wasm
DEFAULT_GUEST="$GUEST_DIR/default.wasm"
CONF_DIR=/etc/cni/net.d
CONF_PATH="$CONF_DIR/10-wasm-cni.conflist"
CACHE_DIR=/var/cache/wasm-cni
REGISTRY_TOOL_PATH=/opt/cni/bin/wasm-cni-registry

SCRIPT_NAME="$(basename "$0")"
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}
log() { printf '==> %s\n' "$*"; }
usage() {
  cat >&2 <<USAGE
usage: $SCRIPT_NAME install --runner FILE --default-guest FILE [--registry-tool FILE] NETWORKS
       $SCRIPT_NAME guest (--file FILE.wasm | --default) NETWORKS
       $SCRIPT_NAME guest --ref [oci://]REF [--guest-digest sha256:HEX] [--insecure] [--ca-file PEM] [--registry-config FILE] NETWORKS
       $SCRIPT_NAME uninstall
       $SCRIPT_NAME peers --peers FILE|JSON [--node-ip IPS]
       $SCRIPT_NAME reconcile
       $SCRIPT_NAME conflist --guest PATH [--guest-digest sha256:HEX] NETWORKS [--cache-dir DIR] [--state-dir DIR] [--log-file FILE]
  NETWORKS: --host-network CIDRS --pod-network CIDRS --pod-subnet CIDRS [--ip-masq6] [--mtu N]
            [--peers FILE|JSON] [--node-ip IPS]
  CIDRS: CIDR, or IPV4CIDR,IPV6CIDR (dual-stack); IPS: IP, or IPV4,IPV6
  ROOT=DIR prefixes every path written (default: /)
USAGE
  exit 2
}

ip_to_int() {
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  printf '%d\n' $(((a << 24) | (b << 16) | (c << 8) | d))
}

# need_cidr NAME VALUE
need_cidr() {
  local re='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$' i
  [[ "$2" =~ $re ]] || die "$1 '$2' is not an IPv4 CIDR."
  for i in 1 2 3 4; do ((BASH_REMATCH[i] <= 255)) || die "$1 '$2' is not an IPv4 CIDR."; done
  ((BASH_REMATCH[5] <= 32)) || die "$1 '$2' is not an IPv4 CIDR."
}

# inside SUBNET NETWORK: SUBNET lies within NETWORK (both IPv4).
inside() {
  local sp=${1#*/} np=${2#*/} s n mask
  ((sp >= np)) || return 1
  s=$(ip_to_int "${1%/*}")
  n=$(ip_to_int "${2%/*}")
  mask=$(((0xffffffff << (32 - np)) & 0xffffffff))
  (((s & mask) == (n & mask)))
}

# expand6 ADDR: ADDR (IPv6 text, no embedded IPv4) as 32 lowercase hex digits, or
# return 1 when it is not an IPv6 address.
expand6() {
  local a=${1,,} g n i out=""
  local -a groups=() h=() t=()
  [[ "$a" =~ ^[0-9a-f:]+$ ]] || return 1
  if [[ "$a" == *::* ]]; then
    [[ "${a#*::}" != *::* ]] || return 1
    [[ -z "${a%%::*}" ]] || IFS=: read -ra h <<<"${a%%::*}"
    [[ -z "${a#*::}" ]] || IFS=: read -ra t <<<"${a#*::}"
    n=$((8 - ${#h[@]} - ${#t[@]}))
    ((n >= 1)) || return 1
    groups=("${h[@]}")
    for ((i = 0; i < n; i++)); do groups+=(0); done
    groups+=("${t[@]}")
  else
    [[ "$a" != :* && "$a" != *: ]] || return 1
    IFS=: read -ra groups <<<"$a"
    ((${#groups[@]} == 8)) || return 1
  fi
  for g in "${groups[@]}"; do
    [[ "$g" =~ ^[0-9a-f]{1,4}$ ]] || return 1
    out+=$(printf '%04x' "$((16#$g))")
  done
  printf '%s\n' "$out"
}

# need_cidr6 NAME VALUE
need_cidr6() {
  local plen=${2##*/}
  if ! [[ "$2" == */* && "$plen" =~ ^[0-9]{1,3}$ ]] || ((10#$plen > 128)) || ! expand6 "${2%/*}" >/dev/null; then
    die "$1 '$2' is not an IPv6 CIDR."
  fi
}

# inside6 SUBNET NETWORK: SUBNET lies within NETWORK (both IPv6).
inside6() {
  local sp=$((10#${1##*/})) np=$((10#${2##*/})) s n full rem
  ((sp >= np)) || return 1
  s=$(expand6 "${1%/*}")
  n=$(expand6 "${2%/*}")
  full=$((np / 4)) rem=$((np % 4))
  [[ "${s:0:full}" == "${n:0:full}" ]] || return 1
  ((rem == 0)) || (((16#${s:full:1} >> (4 - rem)) == (16#${n:full:1} >> (4 - rem))))
}

# put SRC DST MODE: copy SRC to $ROOT$DST atomically.
put() {
  local dst="$ROOT$2" tmp
  mkdir -p "$(dirname "$dst")"
  tmp="$(mktemp "$dst.XXXXXX")"
  cp "$1" "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$dst"
}

# json_path NAME VALUE: VALUE, an absolute path, as a JSON string.
json_path() {
  [[ "$2" == /* && "$2" != *[[:cntrl:]]* ]] || die "$1 '$2' must be an absolute path."
  local v=${2//\\/\\\\}
  printf '"%s"' "${v//\"/\\\"}"
}

# sha256_of FILE: "sha256:<hex>" of FILE's bytes (what guestDigest pins).
sha256_of() {
  local sum
  sum="$(sha256sum <"$1")" || die "cannot read '$1'."
  printf 'sha256:%s\n' "${sum%% *}"
}

# need_digest NAME VALUE: VALUE is sha256:<64 lowercase hex digits>.
need_digest() {
  [[ "$2" =~ ^sha256:[0-9a-f]{64}$ ]] || die "$1 '$2' must be sha256: and 64 lowercase hex digits."
}

# conflist_json GUEST_PATH [DIGEST]: the network configuration, on stdout (the one
# writer of it: install and guest here, and scripts/lab.sh through 'conflist');
# DIGEST, when given, is the guest's pin (guestDigest).
conflist_json() {
  local guest runtime="" key val pin="" masq6=""
  guest="$(json_path guest "$1")"
  ((IP_MASQ6 == 0)) || masq6=$'\n      "ipMasq6": true,'
  if [[ -n "${2:-}" ]]; then
    need_digest guestDigest "$2"
    pin=$',\n      "guestDigest": "'"$2"'"'
  fi
  for key in cacheDir stateDir logFile; do
    case "$key" in
      cacheDir) val=$RUNTIME_CACHE_DIR ;;
      stateDir) val=$RUNTIME_STATE_DIR ;;
      logFile) val=$RUNTIME_LOG_FILE ;;
    esac
    [[ -z "$val" ]] || runtime+=$',\n      "'"$key"'": '"$(json_path "$key" "$val")"
  done
  cat <<JSON
{
  "cniVersion": "1.0.0",
  "name": "wasm-cni",
  "plugins": [
    {
      "type": "wasm-cni",
      "guest": $guest$pin,
      "capabilities": {"ips": true, "mac": true},
      "myHostNetwork": $(cidrs_json "$HOST_NETWORK"),
      "myPodNetwork": $(cidrs_json "$POD_NETWORK"),
      "myPodSubnet": $(cidrs_json "$POD_SUBNET"),$masq6$(cluster_lines)
      "mtu": $MTU$runtime
    }
  ]
}
JSON
}

# cidrs_json CIDRS: one CIDR as a JSON string, two (IPv4,IPv6) as a list of them.
cidrs_json() {
  if [[ "$1" == *,* ]]; then printf '["%s", "%s"]' "${1%%,*}" "${1#*,}"; else printf '"%s"' "$1"; fi
}

# cluster_lines: the "nodeIP" and "peers" lines of the conflist (each on one line, with
# a leading newline and a trailing comma), when given
cluster_lines() {
  [[ -z "$NODE_IP" ]] || printf '\n      "nodeIP": %s,' "$(cidrs_json "$NODE_IP")"
  [[ -z "$PEERS" ]] || printf '\n      "peers": %s,' "$PEERS"
}

# write_conflist GUEST_PATH: the conflist for the installed guest GUEST_PATH, pinned
# to the digest of the bytes installed there.
write_conflist() {
  local dst="$ROOT$CONF_PATH" tmp digest
  digest="$(sha256_of "$ROOT$1")"
  mkdir -p "$ROOT$CONF_DIR"
  tmp="$(mktemp "$dst.XXXXXX")"
  conflist_json "$1" "$digest" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$dst"
  log "wrote $CONF_PATH (guest $1, guestDigest $digest, pod subnet $POD_SUBNET, MTU $MTU)"
  local other
  for other in "$ROOT$CONF_DIR"/*; do
    [[ -e "$other" && "$other" != "$dst" ]] || continue
    case "$other" in *.conf | *.conflist | *.json) ;; *) continue ;; esac
    if [[ "$(basename "$other")" < "$(basename "$dst")" ]]; then
      printf '%s: warning: %s sorts before %s; the container runtime will use it instead\n' \
        "$SCRIPT_NAME" "${other#"$ROOT"}" "$CONF_PATH" >&2
    fi
  done
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
RUNNER="" GUEST_SRC="" GUEST_FILE="" USE_DEFAULT=0 HOST_NETWORK="" POD_NETWORK="" POD_SUBNET="" MTU=""
GUEST_PATH="" RUNTIME_CACHE_DIR="" RUNTIME_STATE_DIR="" RUNTIME_LOG_FILE="" GUEST_DIGEST=""
REGISTRY_TOOL="" REF="" PULL_OPTS=() IP_MASQ6=0 PEERS_ARG="" PEERS="" NODE_IP=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runner | --default-guest | --file | --host-network | --pod-network | --pod-subnet | --mtu | \
      --guest | --cache-dir | --state-dir | --log-file | --guest-digest | --registry-tool | --ref | \
      --ca-file | --registry-config | --peers | --node-ip)
      [[ $# -ge 2 ]] || usage
      case "$1" in
        --runner) RUNNER=$2 ;;
        --registry-tool) REGISTRY_TOOL=$2 ;;
        --ref) REF=$2 ;;
        --guest-digest) GUEST_DIGEST=$2 ;;
        --ca-file | --registry-config) PULL_OPTS+=("$1" "$2") ;;
        --guest) GUEST_PATH=$2 ;;
        --cache-dir) RUNTIME_CACHE_DIR=$2 ;;
        --state-dir) RUNTIME_STATE_DIR=$2 ;;
        --log-file) RUNTIME_LOG_FILE=$2 ;;
        --default-guest) GUEST_SRC=$2 ;;
        --file) GUEST_FILE=$2 ;;
        --host-network) HOST_NETWORK=$2 ;;
        --pod-network) POD_NETWORK=$2 ;;
        --pod-subnet) POD_SUBNET=$2 ;;
        --mtu) MTU=$2 ;;
        --peers) PEERS_ARG=$2 ;;
        --node-ip) NODE_IP=$2 ;;
      esac
      shift 2
      ;;
    --default) USE_DEFAULT=1; shift ;;
    --ip-masq6) IP_MASQ6=1; shift ;;
    --insecure) PULL_OPTS+=(--insecure); shift ;;
    *) usage ;;
  esac
done

# need_cidrs NAME VALUE: VALUE is one CIDR, or an IPv4 and an IPv6 one ("A,B"); sets
# CIDRS_V4 and CIDRS_V6 (empty when that family is absent).
need_cidrs() {
  local name=$1 c
  local -a parts
  CIDRS_V4="" CIDRS_V6=""
  IFS=, read -ra parts <<<"$2"
  [[ -n "$2" && "$2" != *, && ${#parts[@]} -ge 1 && ${#parts[@]} -le 2 ]] ||
    die "$name '$2' must be one CIDR, or an IPv4 and an IPv6 CIDR separated by a comma."
  for c in "${parts[@]}"; do
    if [[ "$c" == *:* ]]; then
      [[ -z "$CIDRS_V6" ]] || die "$name '$2' names two IPv6 CIDRs (one per family)."
      need_cidr6 "$name" "$c"
      CIDRS_V6=$c
    else
      [[ -z "$CIDRS_V4" ]] || die "$name '$2' names two IPv4 CIDRs (one per family)."
      need_cidr "$name" "$c"
      CIDRS_V4=$c
    fi
  done
}

# families_of: "4", "6" or "4,6" for the last need_cidrs
families_of() {
  local f=""
  [[ -z "$CIDRS_V4" ]] || f=4
  [[ -z "$CIDRS_V6" ]] || f=${f:+$f,}6
  printf '%s\n' "$f"
}

need_networks() {
  local h4 h6 n4 n6 fam
  need_cidrs --host-network "$HOST_NETWORK"
  h4=$CIDRS_V4 h6=$CIDRS_V6 fam=$(families_of)
  need_cidrs --pod-network "$POD_NETWORK"
  n4=$CIDRS_V4 n6=$CIDRS_V6
  [[ "$(families_of)" == "$fam" ]] ||
    die "--pod-network $POD_NETWORK and --host-network $HOST_NETWORK name different address families."
  need_cidrs --pod-subnet "$POD_SUBNET"
  [[ "$(families_of)" == "$fam" ]] ||
    die "--pod-subnet $POD_SUBNET and --host-network $HOST_NETWORK name different address families."
  [[ -z "$CIDRS_V4" ]] || inside "$CIDRS_V4" "$n4" ||
    die "--pod-subnet $CIDRS_V4 is not inside --pod-network $n4."
  [[ -z "$CIDRS_V6" ]] || inside6 "$CIDRS_V6" "$n6" ||
    die "--pod-subnet $CIDRS_V6 is not inside --pod-network $n6."
  ((IP_MASQ6 == 0)) || [[ -n "$CIDRS_V6" ]] ||
    die "--ip-masq6 needs an IPv6 pod subnet (--pod-subnet IPV4CIDR,IPV6CIDR)."
  # written IPv4 first, whatever the order given
  HOST_NETWORK=$h4${h4:+${h6:+,}}$h6
  POD_NETWORK=$n4${n4:+${n6:+,}}$n6
  POD_SUBNET=$CIDRS_V4${CIDRS_V4:+${CIDRS_V6:+,}}$CIDRS_V6
  if [[ -z "$MTU" ]]; then
    uplink_mtu
  fi
  need_cluster "$h4" "$h6"
  [[ "$MTU" =~ ^[0-9]{3,5}$ ]] && ((MTU >= 576 && MTU <= 65535)) ||
    die "MTU '$MTU' is not a number in 576..65535."
}

# need_ip4 NAME VALUE: VALUE is an IPv4 address (dotted quad)
need_ip4() {
  local re='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$' i
  [[ "$2" =~ $re ]] || die "$1 '$2' is not an IPv4 address."
  for i in 1 2 3 4; do ((BASH_REMATCH[i] <= 255)) || die "$1 '$2' is not an IPv4 address."; done
}

# need_cluster HOST4 HOST6: checks --node-ip (each inside the host network of its
# family, one per family) and --peers (a JSON list, from FILE unless inline), and
# sets NODE_IP (IPv4 first) and PEERS (the list on one line).
need_cluster() {
  local h4=$1 h6=$2 ip v4="" v6=""
  local -a parts
  if [[ -n "$NODE_IP" ]]; then
    IFS=, read -ra parts <<<"$NODE_IP"
    [[ "$NODE_IP" != *, && ${#parts[@]} -ge 1 && ${#parts[@]} -le 2 ]] ||
      die "--node-ip '$NODE_IP' must be one IP, or an IPv4 and an IPv6 one separated by a comma."
    for ip in "${parts[@]}"; do
      if [[ "$ip" == *:* ]]; then
        [[ -z "$v6" ]] || die "--node-ip '$NODE_IP' names two IPv6 addresses (one per family)."
        expand6 "$ip" >/dev/null || die "--node-ip '$ip' is not an IPv6 address."
        if [[ -z "$h6" ]] || ! inside6 "$ip/128" "$h6"; then
          die "--node-ip $ip is not inside --host-network ${h6:-(no IPv6 network)}."
        fi
        v6=$ip
      else
        [[ -z "$v4" ]] || die "--node-ip '$NODE_IP' names two IPv4 addresses (one per family)."
        need_ip4 --node-ip "$ip"
        if [[ -z "$h4" ]] || ! inside "$ip/32" "$h4"; then
          die "--node-ip $ip is not inside --host-network ${h4:-(no IPv4 network)}."
        fi
        v4=$ip
      fi
    done
    NODE_IP=$v4${v4:+${v6:+,}}$v6
  fi
  [[ -n "$PEERS_ARG" ]] || return 0
  if [[ "$PEERS_ARG" == \[* ]]; then
    PEERS=$PEERS_ARG
  else
    [[ -f "$PEERS_ARG" ]] || die "--peers '$PEERS_ARG': no such file (a file, or a JSON list starting with '[')."
    PEERS="$(cat "$PEERS_ARG")" || die "--peers: cannot read '$PEERS_ARG'."
  fi
  # one line (a JSON string holds no raw newline, so this keeps valid JSON valid)
  PEERS="$(tr -d '\n\r' <<<"$PEERS")"
  PEERS="${PEERS#"${PEERS%%[![:space:]]*}"}" PEERS="${PEERS%"${PEERS##*[![:space:]]}"}"
  [[ "$PEERS" == \[*\] && "$PEERS" != *[[:cntrl:]]* ]] ||
    die "--peers must be a JSON list of nodes ([{\"name\": ..., \"nodeIP\": ..., \"podCIDRs\": [...]}, ...])."
}

# uplink_mtu: MTU = the MTU of the interface of the node's IPv4 default route
# (/proc/net/route, /sys/class/net/IF/mtu; under ROOT for tests).
uplink_mtu() {
  local iface dest rest uplink=""
  while read -r iface dest rest; do
    if [[ "$dest" == 00000000 ]]; then
      uplink=$iface
      break
    fi
  done < <(tail -n +2 "$ROOT/proc/net/route" 2>/dev/null)
  [[ -n "$uplink" ]] || die "cannot find this node's uplink (no IPv4 default route in /proc/net/route); pass --mtu N (cni-plugin.sh: POD_MTU=N)."
  MTU="$(cat "$ROOT/sys/class/net/$uplink/mtu" 2>/dev/null)" ||
    die "cannot read the MTU of the uplink $uplink (/sys/class/net/$uplink/mtu); pass --mtu N (cni-plugin.sh: POD_MTU=N)."
  log "pod MTU $MTU: the MTU of the uplink $uplink"
}

# need_runtime_deps RUNNER GUEST: what the runner needs on this node at run time.
need_runtime_deps() {
  local nft="" p
  for p in /usr/sbin/nft /sbin/nft /usr/bin/nft; do
    if [[ -x "$ROOT$p" ]]; then
      nft=$p
      break
    fi
  done
  [[ -n "$nft" ]] ||
    die "the nft binary is missing (looked for /usr/sbin/nft, /sbin/nft, /usr/bin/nft): the runner's firewall (forwarding and masquerade rules) runs it. Install it: 'sudo apt-get install -y nftables' (scripts/node/install-kubernetes.sh does), then re-run."
  local out rc=0
  out="$("$1" guest check --cache-dir "$ROOT$CACHE_DIR" "$2" 2>&1)" || rc=$?
  if ((rc == 2)); then # a runner from before 'guest check' (and its precompiling)
    rc=0
    out="$("$1" validate "$2" 2>&1)" || rc=$?
  fi
  ((rc == 0)) ||
    die "the runner does not work on this node ('wasm-cni guest check' of the default guest, exit $rc): $out. It must be a Linux x86-64 build whose C library is not newer than this node's (ldd --version), and the guest a component of its world."
  log "runtime dependencies: $nft present; the runner runs here and accepts the default guest"
}

# runner_check FILE: the installed runner's `guest check` of FILE, precompiling it into
# its cache. A runner installed before `guest check` existed answers 2 (usage): it
# still has `validate`, the same check.
runner_check() {
  local rc=0
  "$ROOT$BIN_PATH" guest check --cache-dir "$ROOT$CACHE_DIR" "$1" >/dev/null || rc=$?
  if ((rc == 2)); then
    rc=0
    "$ROOT$BIN_PATH" validate "$1" >/dev/null || rc=$?
  fi
  return "$rc"
}

# install_guest SRC NAME: check SRC with the runner that will load it, before switching
# anything, precompile it, put it in place as $GUEST_DIR/NAME and point the conflist
# at it, pinned.
install_guest() {
  local src=$1 name=$2
  runner_check "$src" ||
    die "$ROOT$BIN_PATH refuses '$name' (reason above); the node keeps its current guest."
  put "$src" "$GUEST_DIR/$name" 0644
  write_conflist "$GUEST_DIR/$name"
}

# ref_name REF DIGEST: the file name a pulled guest is installed under: the last path
# segment of REF's repository and the first 12 hex digits of DIGEST.
ref_name() {
  local repo=${1%%@*} seg
  seg=${repo##*/}
  seg=${seg%%:*}
  [[ "$seg" =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "cannot name a guest after the repository of '$1'."
  printf '%s-%s.wasm\n' "$seg" "${2:7:12}"
}

# pull_guest REF: pull REF with the installed runner into a temporary file, verify the
# digest it names (and --guest-digest), then install it as install_guest does. A failed
# pull leaves the node's guest and conflist as they were.
pull_guest() {
  local ref=${1#oci://} tmpdir digest actual name rc=0
  [[ "$ref" =~ ^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$ ]] ||
    die "'$1' is not a registry reference (host[:port]/repository[:tag][@sha256:<hex>])."
  [[ -x "$ROOT$REGISTRY_TOOL_PATH" ]] ||
    die "this node has no registry client ($REGISTRY_TOOL_PATH, what 'wasm-cni guest pull' runs): build dist/bin/wasm-cni-registry (scripts/build.sh) and re-run scripts/cni-plugin.sh up; the node keeps its current guest and conflist."
  tmpdir="$(mktemp -d "${TMPDIR:-/tmp}/wasm-cni-pull.XXXXXX")"
  # shellcheck disable=SC2064 # the directory is known now
  trap "rm -rf -- '$tmpdir'" EXIT
  digest="$("$ROOT$BIN_PATH" guest pull "$ref" -o "$tmpdir/guest.wasm" "${PULL_OPTS[@]}")" || rc=$?
  ((rc == 0)) ||
    die "pulling $ref failed (wasm-cni guest pull exit $rc, reason above); the node keeps its current guest and conflist."
  [[ -f "$tmpdir/guest.wasm" ]] || die "wasm-cni guest pull wrote no file; the node keeps its current guest and conflist."
  actual="$(sha256_of "$tmpdir/guest.wasm")"
  [[ "$digest" == "$actual" ]] ||
    die "wasm-cni guest pull said ${digest:-nothing} but the file it wrote is $actual; the node keeps its current guest and conflist."
  if [[ -n "$GUEST_DIGEST" && "$actual" != "$GUEST_DIGEST" ]]; then
    die "$ref is $actual here, not the pinned $GUEST_DIGEST (the tag moved? pin it with @sha256:); the node keeps its current guest and conflist."
  fi
  name="$(ref_name "$ref" "$actual")"
  log "pulled $ref: $actual"
  install_guest "$tmpdir/guest.wasm" "$name"
}

# installed_host_networks: INSTALLED_H4 and INSTALLED_H6, the installed conflist's
# myHostNetwork (what --node-ip must lie in), as conflist_json wrote it on one line
installed_host_networks() {
  local line c
  INSTALLED_H4="" INSTALLED_H6=""
  line="$(grep -m1 '^      "myHostNetwork": ' "$ROOT$CONF_PATH")" ||
    die "$CONF_PATH has no myHostNetwork line: not written by $SCRIPT_NAME; re-run scripts/cni-plugin.sh up."
  for c in $(grep -oE '"[0-9a-fA-F.:]+/[0-9]+"' <<<"$line" | tr -d '"'); do
    if [[ "$c" == *:* ]]; then INSTALLED_H6=$c; else INSTALLED_H4=$c; fi
  done
}

# rewrite_cluster_lines: the installed conflist with its "peers" (and, with --node-ip,
# "nodeIP") lines replaced, or added before "mtu"; every other line as it was. Atomic.
rewrite_cluster_lines() {
  local dst="$ROOT$CONF_PATH" tmp
  tmp="$(mktemp "$dst.XXXXXX")"
  awk -v peers="$PEERS" -v nodeip="$( [[ -z "$NODE_IP" ]] || cidrs_json "$NODE_IP")" '
    /^      "peers": / { next }
    /^      "nodeIP": / { if (nodeip != "") next }
    /^      "mtu": / {
      if (nodeip != "") print "      \"nodeIP\": " nodeip ","
      print "      \"peers\": " peers ","
    }
    { print }' "$dst" >"$tmp"
  grep -q '^      "peers": ' "$tmp" || { rm -f "$tmp"; die "$CONF_PATH has no mtu line: not written by $SCRIPT_NAME; re-run scripts/cni-plugin.sh up."; }
  chmod 0644 "$tmp"
  mv -f "$tmp" "$dst"
  log "wrote the peers${NODE_IP:+ and nodeIP $NODE_IP} of $CONF_PATH"
}

# reconcile: the installed runner brings the node in line with the installed conflist
reconcile() {
  [[ -x "$ROOT$BIN_PATH" && -f "$ROOT$CONF_PATH" ]] ||
    die "wasm-cni is not installed on this node; run scripts/cni-plugin.sh up first."
  local out rc=0
  out="$("$ROOT$BIN_PATH" reconcile -c "$ROOT$CONF_PATH" 2>&1)" || rc=$?
  ((rc == 0)) || die "wasm-cni reconcile -c $CONF_PATH failed (exit $rc): $out"
  log "reconcile: $out"
}

# the conflist-only options; --registry-tool is install's, the pull options guest --ref's
[[ "$cmd" == conflist || -z "$GUEST_PATH$RUNTIME_CACHE_DIR$RUNTIME_STATE_DIR$RUNTIME_LOG_FILE" ]] || usage
[[ "$cmd" == install || -z "$REGISTRY_TOOL" ]] || usage
[[ -n "$REF" || ${#PULL_OPTS[@]} -eq 0 ]] || usage
[[ "$cmd" == conflist || -n "$REF" || -z "$GUEST_DIGEST" ]] || usage
[[ -z "$GUEST_DIGEST" ]] || need_digest --guest-digest "$GUEST_DIGEST"

case "$cmd" in
  install)
    [[ -n "$RUNNER" && -n "$GUEST_SRC" && -z "$GUEST_FILE$REF" && "$USE_DEFAULT" == 0 ]] || usage
    need_networks
    [[ -f "$RUNNER" ]] || die "runner '$RUNNER' not found."
    [[ -f "$GUEST_SRC" ]] || die "default guest '$GUEST_SRC' not found."
    [[ -z "$REGISTRY_TOOL" || -f "$REGISTRY_TOOL" ]] || die "registry tool '$REGISTRY_TOOL' not found."
    chmod +x "$RUNNER"
    need_runtime_deps "$RUNNER" "$GUEST_SRC"
    put "$RUNNER" "$BIN_PATH" 0755
    if [[ -n "$REGISTRY_TOOL" ]]; then
      put "$REGISTRY_TOOL" "$REGISTRY_TOOL_PATH" 0755
      log "installed $REGISTRY_TOOL_PATH (wasm-cni guest pull)"
    fi
    put "$GUEST_SRC" "$DEFAULT_GUEST" 0644
    log "installed $BIN_PATH and $DEFAULT_GUEST"
    write_conflist "$DEFAULT_GUEST"
    ;;
  guest)
    [[ -z "$RUNNER" && -z "$GUEST_SRC" ]] || usage
    # exactly one of --file, --default, --ref
    (((${#GUEST_FILE} > 0) + USE_DEFAULT + (${#REF} > 0) == 1)) || usage
    need_networks
    [[ -x "$ROOT$BIN_PATH" && -f "$ROOT$DEFAULT_GUEST" ]] ||
      die "wasm-cni is not installed on this node; run scripts/cni-plugin.sh up first."
    if [[ "$USE_DEFAULT" == 1 ]]; then
      # precompiled again: the cache may have been cleared, or the runner replaced,
      # since install (a hit costs milliseconds)
      runner_check "$ROOT$DEFAULT_GUEST" ||
        die "$ROOT$BIN_PATH refuses default.wasm (reason above); the node keeps its current guest."
      write_conflist "$DEFAULT_GUEST"
    elif [[ -n "$REF" ]]; then
      pull_guest "$REF"
    else
      [[ -f "$GUEST_FILE" ]] || die "guest '$GUEST_FILE' not found."
      name="$(basename "$GUEST_FILE")"
      [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*\.wasm$ ]] ||
        die "guest file name '$name' must match [A-Za-z0-9._-]*.wasm."
      [[ "$name" != default.wasm ]] ||
        die "a guest named default.wasm would replace the default guest; rename it."
      install_guest "$GUEST_FILE" "$name"
    fi
    ;;
  uninstall)
    [[ -z "$RUNNER$GUEST_SRC$GUEST_FILE$REF$HOST_NETWORK$POD_NETWORK$POD_SUBNET$MTU$PEERS_ARG$NODE_IP" && "$USE_DEFAULT$IP_MASQ6" == 00 ]] || usage
    rm -f "$ROOT$CONF_PATH" "$ROOT$BIN_PATH" "$ROOT$REGISTRY_TOOL_PATH"
    rm -rf -- "$ROOT$GUEST_DIR" "$ROOT$CACHE_DIR" # constant suffixes: never "/"
    log "removed $CONF_PATH, $BIN_PATH, $REGISTRY_TOOL_PATH, $GUEST_DIR, $CACHE_DIR"
    ;;
  peers)
    [[ -n "$PEERS_ARG" && -z "$RUNNER$GUEST_SRC$GUEST_FILE$REF$HOST_NETWORK$POD_NETWORK$POD_SUBNET$MTU" && "$USE_DEFAULT$IP_MASQ6" == 00 ]] || usage
    [[ -f "$ROOT$CONF_PATH" ]] || die "$CONF_PATH missing: run scripts/cni-plugin.sh up first."
    installed_host_networks
    need_cluster "$INSTALLED_H4" "$INSTALLED_H6"
    rewrite_cluster_lines
    reconcile
    ;;
  reconcile)
    [[ -z "$RUNNER$GUEST_SRC$GUEST_FILE$REF$HOST_NETWORK$POD_NETWORK$POD_SUBNET$MTU$PEERS_ARG$NODE_IP" && "$USE_DEFAULT$IP_MASQ6" == 00 ]] || usage
    reconcile
    ;;
  conflist)
    [[ -n "$GUEST_PATH" && -z "$RUNNER$GUEST_SRC$GUEST_FILE$REF" && "$USE_DEFAULT" == 0 ]] || usage
    need_networks >&2 # its progress line (the uplink's MTU) is not the conflist
    conflist_json "$GUEST_PATH" "$GUEST_DIGEST"
    ;;
  *) usage ;;
esac
