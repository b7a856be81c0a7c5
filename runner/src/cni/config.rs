//! The network configuration on stdin: the keys the runner uses itself, plus the raw
//! text that is handed to the guest untouched.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Where the default guest lives on a node.
pub const DEFAULT_GUEST: &str = "/opt/cni/wasm/default.wasm";
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/wasm-cni";
/// The store and its lock hold nothing a reboot should keep (the runner clears them on
/// a new boot): on /run, a tmpfs on a standard node, a store write costs ~0.03 ms
/// against ~0.2 ms on ext4 here (docs/bench.md), three of them per ADD.
pub const DEFAULT_STATE_DIR: &str = "/run/wasm-cni";
/// The default before issue 16. A network whose state there belongs to this boot keeps
/// using it, so an upgrade never loses the pods (and addresses) set up before it; after
/// the next reboot its state starts on /run.
pub const LEGACY_STATE_DIR: &str = "/var/lib/cni/wasm-cni";
pub const DEFAULT_LOG_FILE: &str = "/var/log/wasm-cni.log";

/// The runner's view of one network config.
#[derive(Clone, Debug)]
pub struct NetConf {
    pub cni_version: super::Version,
    pub name: String,
    /// The guest component file (`guest`).
    pub guest: PathBuf,
    /// The guest's content, pinned (`guestDigest`, `sha256:<64 hex digits>`,
    /// lowercase): other bytes are refused.
    pub guest_digest: Option<String>,
    /// Precompiled components (`cacheDir`).
    pub cache_dir: PathBuf,
    /// Per-network state and lock live in `stateDir/<name>` (`stateDir`).
    pub state_dir: PathBuf,
    /// One line per call (`logFile`).
    pub log_file: PathBuf,
    /// The node bridge the guest may use (`bridge`).
    pub bridge: String,
    /// Host-side links named with this prefix are the network's own (`linkPrefix`).
    pub link_prefix: String,
    /// The pod networks, at most one per family: addresses and routes must lie inside
    /// the one of their family (`podNetwork`, else `myPodNetwork`; a CIDR or a list).
    pub pod_networks: Vec<ipnetwork::IpNetwork>,
    /// Wall-clock budget of the guest (`timeoutMs`).
    pub timeout_ms: u64,
    /// Guest memory cap (`memoryLimitMiB`).
    pub memory_limit_mib: u64,
    /// How long to wait for the network's lock (`lockTimeoutMs`).
    pub lock_timeout_ms: u64,
    /// GC: the attachments to keep (`cni.dev/valid-attachments`, or the older
    /// `cni.dev/attachments`), as (container id, ifname).
    pub valid_attachments: Vec<(String, String)>,
    /// Log every host call's time (`timing`).
    pub timing: bool,
    /// What one call may create and write (`limits`).
    pub limits: Limits,
    /// The addresses and MAC the runtime asks for (`runtimeConfig.ips`/`mac`), and,
    /// after `with_args`, CNI_ARGS `IP=`/`MAC=` merged in.
    pub requested: super::requested::Requested,
    /// The cluster: other nodes, this node's IPs, the host network, the VXLAN link's
    /// name (`peers`, `nodeIP`, `hostNetwork`/`myHostNetwork`, `vxlanLink`).
    pub cluster: Cluster,
    /// The config text exactly as received; the guest gets this.
    pub raw: String,
}

/// The default name of a network's VXLAN link (`vxlanLink`).
pub const DEFAULT_VXLAN_LINK: &str = "wcni.1";
/// Linux's and flannel's VXLAN port (IANA's is 4789).
pub const DEFAULT_VXLAN_PORT: u16 = 8472;

/// At most this many `peers` entries: a list a cluster script writes, bounded so
/// that every grant check over it stays cheap.
pub const MAX_PEERS: usize = 1024;

/// One entry of `peers`: a node of the cluster (this one included, as the scripts
/// write it; the runner drops the entry whose IPs are this node's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// `name`, may be empty.
    pub name: String,
    /// `nodeIP`: at most one per family, IPv4 first.
    pub ips: Vec<std::net::IpAddr>,
    /// `podCIDRs`: at most one per family, IPv4 first, each inside the pod network of
    /// its family.
    pub pod_cidrs: Vec<ipnetwork::IpNetwork>,
}

/// The cluster keys the runner reads (the grants of `cluster` and of routes through
/// the uplink). Every one is optional: a network without them grants none of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// `peers`, validated, in config order (this node's entry still in).
    pub peers: Vec<Peer>,
    /// `nodeIP`: this node's IPs (none: the uplink's first global address of each
    /// family), IPv4 first.
    pub node_ips: Vec<std::net::IpAddr>,
    /// `hostNetwork`, else `myHostNetwork`: one CIDR per family.
    pub host_networks: Vec<ipnetwork::IpNetwork>,
    /// `vxlanLink`: the name of the network's one VXLAN link.
    pub vxlan_link: String,
    /// `vxlanPort`: the only UDP port its VXLAN link may use (the kernel listens on it
    /// on every address of the node, so a free choice could take a port a service
    /// needs, e.g. DNS's 53).
    pub vxlan_port: u16,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            peers: Vec::new(),
            node_ips: Vec::new(),
            host_networks: Vec::new(),
            vxlan_link: DEFAULT_VXLAN_LINK.into(),
            vxlan_port: DEFAULT_VXLAN_PORT,
        }
    }
}

/// The texts of a key that is one string or a list of them.
fn one_or_list<'a>(v: Option<&'a Value>, key: &str, what: &str) -> Result<Vec<&'a str>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| Error::InvalidConfig(format!("{key}: {x} is not {what} string")))
            })
            .collect(),
        Some(other) => Err(Error::InvalidConfig(format!(
            "{key} must be {what} string or a list of them (one per family), not {other}"
        ))),
    }
}

/// IPs of a node (`nodeIP`): each parses, a usable unicast address, at most one per
/// family; IPv4 first.
fn node_ips(v: Option<&Value>, key: &str) -> Result<Vec<std::net::IpAddr>> {
    use std::net::IpAddr;
    let mut out: Vec<IpAddr> = Vec::new();
    for t in one_or_list(v, key, "an IP address")? {
        let ip: IpAddr = t
            .parse()
            .map_err(|_| Error::InvalidConfig(format!("{key}: {t:?} is not an IP address")))?;
        let unusable = match ip {
            IpAddr::V4(a) => {
                a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast()
            }
            IpAddr::V6(a) => a.is_unspecified() || a.is_loopback() || a.is_multicast(),
        };
        if unusable {
            return Err(Error::InvalidConfig(format!(
                "{key}: {ip} is not a node's unicast address"
            )));
        }
        if out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            return Err(Error::InvalidConfig(format!(
                "{key}: {ip} is a second {} address; give at most one per family",
                if ip.is_ipv4() { "IPv4" } else { "IPv6" }
            )));
        }
        out.push(ip);
    }
    out.sort_by_key(|ip| ip.is_ipv6());
    Ok(out)
}

/// `hostNetwork` / `myHostNetwork`: one CIDR or a list, at most one per family.
fn host_networks(v: Option<&Value>, key: &str) -> Result<Vec<ipnetwork::IpNetwork>> {
    use ipnetwork::IpNetwork;
    let mut out: Vec<IpNetwork> = Vec::new();
    for t in one_or_list(v, key, "a CIDR")? {
        let n: IpNetwork = t.parse().map_err(|e| {
            Error::InvalidConfig(format!("{key}: host network {t:?} is not a CIDR: {e}"))
        })?;
        if out.iter().any(|o| o.is_ipv4() == n.is_ipv4()) {
            return Err(Error::InvalidConfig(format!(
                "{key}: host network {t} is a second {} network; give at most one per family",
                if n.is_ipv4() { "IPv4" } else { "IPv6" }
            )));
        }
        out.push(n);
    }
    Ok(out)
}

/// The first and last address of a network, as numbers.
fn span(n: &ipnetwork::IpNetwork) -> (u128, u128) {
    match n {
        ipnetwork::IpNetwork::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        ipnetwork::IpNetwork::V6(n) => {
            let lo = u128::from(n.network());
            (
                lo,
                lo | u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0),
            )
        }
    }
}

impl Cluster {
    fn parse(
        obj: &Map<String, Value>,
        pods: &[ipnetwork::IpNetwork],
        bridge: &str,
    ) -> Result<Cluster> {
        let vxlan_link = string(obj, "vxlanLink")?.unwrap_or_else(|| DEFAULT_VXLAN_LINK.into());
        if !super::env::valid_ifname(&vxlan_link) {
            return Err(Error::InvalidConfig(format!(
                "vxlanLink {vxlan_link:?} is not a valid interface name"
            )));
        }
        let vxlan_port = match obj.get("vxlanPort") {
            None | Some(Value::Null) => DEFAULT_VXLAN_PORT,
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0)
                .ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "vxlanPort must be a UDP port number (1..65535), not {v}"
                    ))
                })?,
        };
        if vxlan_link == bridge {
            return Err(Error::InvalidConfig(format!(
                "vxlanLink {vxlan_link:?} is the bridge's name; the VXLAN link is a link of its own"
            )));
        }
        let has_peers = obj.get("peers").is_some_and(|p| !p.is_null());
        let host_networks = match obj.get("hostNetwork") {
            // `myHostNetwork` is the guests' key (masquerade exceptions), checked by them
            // as before; the runner reads it only for a cluster, where the grants of
            // uplink routes and VXLAN remotes depend on it
            None | Some(Value::Null) if has_peers => {
                host_networks(obj.get("myHostNetwork"), "myHostNetwork")?
            }
            None | Some(Value::Null) => Vec::new(),
            v => host_networks(v, "hostNetwork")?,
        };
        let node_ips = node_ips(obj.get("nodeIP"), "nodeIP")?;
        let list = match obj.get("peers") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(other) => {
                return Err(Error::InvalidConfig(format!(
                    "peers must be a list of {{name, nodeIP, podCIDRs}}, not {other}"
                )))
            }
        };
        if list.len() > MAX_PEERS {
            return Err(Error::InvalidConfig(format!(
                "peers: {} entries, at most {MAX_PEERS}",
                list.len()
            )));
        }
        // every CNI call parses this: linear in the entries (a hash of node IPs, one
        // sorted sweep over the pod CIDRs), not a comparison of every pair
        let name = |i: usize, p: &Peer| format!("peers[{i}] ({:?})", p.name);
        let mut peers: Vec<Peer> = Vec::with_capacity(list.len());
        let mut ip_owner: std::collections::HashMap<std::net::IpAddr, usize> =
            std::collections::HashMap::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let p = Self::peer(i, entry, pods)?;
            for ip in &p.ips {
                if let Some(&j) = ip_owner.get(ip) {
                    return Err(Error::InvalidConfig(format!(
                        "{}: nodeIP {ip} is also the node IP of {}",
                        name(i, &p),
                        name(j, &peers[j])
                    )));
                }
            }
            ip_owner.extend(p.ips.iter().map(|ip| (*ip, i)));
            peers.push(p);
        }
        // CIDRs are nested or disjoint: sorted by first address (the wider first), one
        // overlaps an earlier one exactly when it starts within the furthest end so far
        let mut spans: Vec<(bool, u128, u128, usize, ipnetwork::IpNetwork)> = peers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.pod_cidrs.iter().map(move |c| {
                    let (lo, hi) = span(c);
                    (c.is_ipv6(), lo, hi, i, *c)
                })
            })
            .collect();
        spans.sort_by_key(|&(v6, lo, hi, i, _)| (v6, lo, std::cmp::Reverse(hi), i));
        let mut reach: Option<(bool, u128, usize, ipnetwork::IpNetwork)> = None;
        for &(v6, lo, hi, i, c) in &spans {
            if let Some((f, end, j, d)) = reach {
                if f == v6 && lo <= end {
                    // named from the later entry, as the config reads
                    let ((a, ca), (b, cb)) = if i > j {
                        ((i, c), (j, d))
                    } else {
                        ((j, d), (i, c))
                    };
                    return Err(Error::InvalidConfig(format!(
                        "{}: podCIDR {ca} overlaps {cb} of {}",
                        name(a, &peers[a]),
                        name(b, &peers[b])
                    )));
                }
            }
            if reach.is_none_or(|(f, end, _, _)| f != v6 || hi > end) {
                reach = Some((v6, hi, i, c));
            }
        }
        Ok(Cluster {
            peers,
            node_ips,
            host_networks,
            vxlan_link,
            vxlan_port,
        })
    }

    fn peer(i: usize, v: &Value, pods: &[ipnetwork::IpNetwork]) -> Result<Peer> {
        let obj = v.as_object().ok_or_else(|| {
            Error::InvalidConfig(format!(
                "peers[{i}] must be an object {{name, nodeIP, podCIDRs}}, not {v}"
            ))
        })?;
        let name = match obj.get("name") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.len() <= 253 && !s.chars().any(char::is_control) => {
                s.clone()
            }
            Some(other) => {
                return Err(Error::InvalidConfig(format!(
                    "peers[{i}]: name must be a node name (a string of at most 253 characters), not {other}"
                )))
            }
        };
        let me = format!("peers[{i}] ({name:?})");
        let wrap = |e: Error| match e {
            Error::InvalidConfig(m) => Error::InvalidConfig(format!("{me}: {m}")),
            other => other,
        };
        let ips = node_ips(obj.get("nodeIP"), "nodeIP").map_err(wrap)?;
        if ips.is_empty() {
            return Err(Error::InvalidConfig(format!("{me}: nodeIP is missing")));
        }
        let mut pod_cidrs: Vec<ipnetwork::IpNetwork> = Vec::new();
        for t in one_or_list(obj.get("podCIDRs"), "podCIDRs", "a CIDR").map_err(wrap)? {
            let n: ipnetwork::IpNetwork = t.parse().map_err(|e| {
                Error::InvalidConfig(format!("{me}: podCIDR {t:?} is not a CIDR: {e}"))
            })?;
            if n.network() != n.ip() {
                return Err(Error::InvalidConfig(format!(
                    "{me}: podCIDR {t} is not a network (host bits are set)"
                )));
            }
            let inside = pods.iter().any(|p| {
                p.is_ipv4() == n.is_ipv4() && p.contains(n.network()) && n.prefix() >= p.prefix()
            });
            if !inside {
                return Err(Error::InvalidConfig(format!(
                    "{me}: podCIDR {t} is not inside the {} pod network ({})",
                    if n.is_ipv4() { "IPv4" } else { "IPv6" },
                    if pods.is_empty() {
                        "none configured".to_string()
                    } else {
                        pods.iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )));
            }
            if pod_cidrs.iter().any(|o| o.is_ipv4() == n.is_ipv4()) {
                return Err(Error::InvalidConfig(format!(
                    "{me}: podCIDR {t} is a second {} CIDR; give at most one per family",
                    if n.is_ipv4() { "IPv4" } else { "IPv6" }
                )));
            }
            pod_cidrs.push(n);
        }
        pod_cidrs.sort_by_key(|n| n.is_ipv6());
        Ok(Peer {
            name,
            ips,
            pod_cidrs,
        })
    }
}

/// Bounds on what one call may create and write, and on the network's store and log
/// (`limits` in the config; every field optional). Past a per-call bound the host call
/// is refused (`denied`, "per-call limit"); the guest's log lines past `log_bytes` are
/// dropped after one "log truncated" line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Links created per call (`links`).
    pub links: u64,
    /// Addresses added per call (`addresses`).
    pub addresses: u64,
    /// Routes added per call (`routes`).
    pub routes: u64,
    /// Firewall requests per call (`firewallRules`).
    pub firewall_rules: u64,
    /// Store writes and deletes per call (`storeWrites`).
    pub store_writes: u64,
    /// Bytes of store values written per call (`storeBytes`).
    pub store_bytes: u64,
    /// Keys in the network's store (`storeKeys`).
    pub store_keys: u64,
    /// Bytes in the network's store (`storeTotalBytes`).
    pub store_total_bytes: u64,
    /// Bytes of guest log lines per call (`logBytes`).
    pub log_bytes: u64,
    /// Past this size the log file is renamed to `<logFile>.1` (`logFileBytes`).
    pub log_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            links: 8,
            addresses: 32,
            routes: 256,
            firewall_rules: 32,
            store_writes: 64,
            store_bytes: 1 << 20,
            store_keys: 4096,
            store_total_bytes: 16 << 20,
            log_bytes: 64 << 10,
            log_file_bytes: 16 << 20,
        }
    }
}

impl Limits {
    fn parse(obj: &Map<String, Value>) -> Result<Limits> {
        let d = Limits::default();
        let Some(v) = obj.get("limits").filter(|v| !v.is_null()) else {
            return Ok(d);
        };
        let l = v.as_object().ok_or_else(|| {
            Error::InvalidConfig(format!("\"limits\" must be an object, not {v}"))
        })?;
        const KEYS: [&str; 10] = [
            "links",
            "addresses",
            "routes",
            "firewallRules",
            "storeWrites",
            "storeBytes",
            "storeKeys",
            "storeTotalBytes",
            "logBytes",
            "logFileBytes",
        ];
        if let Some(k) = l.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::InvalidConfig(format!(
                "limits: unknown key {k:?} (known: {})",
                KEYS.join(", ")
            )));
        }
        let n = |key: &str, default: u64, max: u64| {
            number(l, key, default, (0, max)).map_err(|e| match e {
                Error::InvalidConfig(m) => Error::InvalidConfig(format!("limits: {m}")),
                other => other,
            })
        };
        Ok(Limits {
            links: n("links", d.links, 1024)?,
            addresses: n("addresses", d.addresses, 4096)?,
            routes: n("routes", d.routes, 16384)?,
            firewall_rules: n("firewallRules", d.firewall_rules, 1024)?,
            store_writes: n("storeWrites", d.store_writes, 65536)?,
            store_bytes: n("storeBytes", d.store_bytes, 1 << 30)?,
            store_keys: n("storeKeys", d.store_keys, 1 << 24)?,
            store_total_bytes: n("storeTotalBytes", d.store_total_bytes, 1 << 34)?,
            log_bytes: n("logBytes", d.log_bytes, 1 << 30)?,
            log_file_bytes: n("logFileBytes", d.log_file_bytes, 1 << 40)?,
        })
    }
}

fn string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::InvalidConfig(format!(
            "{key:?} must be a string, not {other}"
        ))),
    }
}

/// `podNetwork` / `myPodNetwork`: one CIDR or a list of them, at most one per family,
/// none of them a range the kernel or the link gives a meaning of its own (loopback,
/// link-local, multicast, unspecified): a pod network is what the grants let a guest
/// put on links and routes.
fn pod_networks(obj: &Map<String, Value>, key: &str) -> Result<Vec<ipnetwork::IpNetwork>> {
    use ipnetwork::IpNetwork;
    let texts: Vec<&str> = match obj.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    Error::InvalidConfig(format!("{key:?}: {v} is not a CIDR string"))
                })
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(Error::InvalidConfig(format!(
                "{key:?} must be a CIDR or a list of CIDRs (one per family), not {other}"
            )))
        }
    };
    const RESERVED: [(&str, &str); 11] = [
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
        // IPv6 spellings of IPv4 addresses: sockets, the kernel and NAT64 gateways treat
        // them as the IPv4 address inside, which the IPv4 grants never gave
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b::/96", "NAT64 (IPv4-translated)"),
    ];
    let mut out: Vec<IpNetwork> = Vec::new();
    for t in texts {
        let n: IpNetwork = t.parse().map_err(|e| {
            Error::InvalidConfig(format!("{key:?}: pod network {t:?} is not a CIDR: {e}"))
        })?;
        for (r, what) in RESERVED {
            let r: IpNetwork = r.parse().expect("a valid constant");
            // overlapping either way: inside the range, or holding it
            let overlaps =
                r.is_ipv4() == n.is_ipv4() && (r.contains(n.network()) || n.contains(r.network()));
            if overlaps {
                return Err(Error::InvalidConfig(format!(
                    "{key:?}: pod network {t} overlaps {r}, which is {what}: addresses there are not the network's to give"
                )));
            }
        }
        if out.iter().any(|o| o.is_ipv4() == n.is_ipv4()) {
            return Err(Error::InvalidConfig(format!(
                "{key:?}: pod network {t} is a second {} network; give at most one per family",
                if n.is_ipv4() { "IPv4" } else { "IPv6" }
            )));
        }
        out.push(n);
    }
    Ok(out)
}

fn number(obj: &Map<String, Value>, key: &str, default: u64, range: (u64, u64)) -> Result<u64> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| (range.0..=range.1).contains(n))
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "{key:?} must be a whole number from {} to {}, not {v}",
                    range.0, range.1
                ))
            }),
    }
}

/// Network names become directory and nftables table names: keep them plain.
pub fn valid_network_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `sha256:<64 hex digits>`, lowercased.
pub fn parse_digest(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// Parse just enough of stdin to learn the cniVersion (VERSION needs nothing else).
pub fn requested_version(raw: &str) -> Option<String> {
    serde_json::from_str::<Value>(raw)
        .ok()?
        .get("cniVersion")?
        .as_str()
        .map(str::to_string)
}

impl NetConf {
    pub fn parse(raw: String) -> Result<NetConf> {
        let value: Value = serde_json::from_str(&raw).map_err(|e| Error::Decode(e.to_string()))?;
        let obj = value.as_object().ok_or_else(|| {
            Error::Decode("the network configuration must be a JSON object".into())
        })?;
        let cni_version = string(obj, "cniVersion")?
            .ok_or_else(|| Error::InvalidConfig("missing \"cniVersion\"".into()))?;
        let cni_version =
            super::supported(&cni_version).ok_or(Error::IncompatibleVersion(cni_version))?;
        let name =
            string(obj, "name")?.ok_or_else(|| Error::InvalidConfig("missing \"name\"".into()))?;
        if !valid_network_name(&name) {
            return Err(Error::InvalidConfig(format!(
                "network name {name:?} must be letters, digits, '_', '.', '-' (at most 64)"
            )));
        }
        let path = |key: &str, default: &str| -> Result<PathBuf> {
            Ok(PathBuf::from(
                string(obj, key)?.unwrap_or_else(|| default.to_string()),
            ))
        };
        let bridge = string(obj, "bridge")?.unwrap_or_else(|| "cni0".into());
        if !super::env::valid_ifname(&bridge) {
            return Err(Error::InvalidConfig(format!(
                "bridge {bridge:?} is not a valid interface name"
            )));
        }
        let link_prefix = string(obj, "linkPrefix")?.unwrap_or_else(|| "wc".into());
        if link_prefix.is_empty()
            || link_prefix.len() > 8
            || !super::env::valid_ifname(&link_prefix)
        {
            return Err(Error::InvalidConfig(format!(
                "linkPrefix {link_prefix:?} must be 1 to 8 characters valid in an interface name"
            )));
        }
        let pod_networks = match obj.get("podNetwork") {
            None | Some(Value::Null) => pod_networks(obj, "myPodNetwork")?,
            Some(_) => pod_networks(obj, "podNetwork")?,
        };
        let guest_digest = match string(obj, "guestDigest")? {
            None => None,
            Some(d) => Some(parse_digest(&d).ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "guestDigest {d:?} must be \"sha256:\" and 64 hex digits (`wasm-cni guest check` prints it)"
                ))
            })?),
        };
        let cluster = Cluster::parse(obj, &pod_networks, &bridge)?;
        Ok(NetConf {
            cluster,
            guest: path("guest", DEFAULT_GUEST)?,
            guest_digest,
            cache_dir: path("cacheDir", DEFAULT_CACHE_DIR)?,
            state_dir: match string(obj, "stateDir")? {
                Some(_) => path("stateDir", DEFAULT_STATE_DIR)?,
                None => default_state_dir(Path::new(LEGACY_STATE_DIR), &name, boot_id()),
            },
            log_file: path("logFile", DEFAULT_LOG_FILE)?,
            timeout_ms: number(obj, "timeoutMs", 5000, (1, 120_000))?,
            memory_limit_mib: number(obj, "memoryLimitMiB", 64, (1, 4096))?,
            lock_timeout_ms: number(obj, "lockTimeoutMs", 20_000, (1, 600_000))?,
            valid_attachments: attachments(obj)?,
            limits: Limits::parse(obj)?,
            requested: super::requested::Requested::from_runtime_config(obj.get("runtimeConfig"))?,
            timing: match obj.get("timing") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => {
                    return Err(Error::InvalidConfig(format!(
                        "\"timing\" must be true or false, not {v}"
                    )))
                }
            },
            cni_version,
            name,
            bridge,
            link_prefix,
            pod_networks,
            raw,
        })
    }

    /// Merge the call's CNI_ARGS `IP=`/`MAC=` into `requested` (a contradiction is
    /// a bad CNI_ARGS, code 4). Only ADD, CHECK and DEL carry a request.
    pub fn with_args(mut self, env: &super::Env) -> Result<NetConf> {
        if env.command.per_attachment() {
            self.requested = super::requested::Requested::merge(&self.requested, &env.requested)?;
        } else {
            self.requested = Default::default();
        }
        Ok(self)
    }

    /// This network's state directory.
    pub fn network_dir(&self) -> PathBuf {
        self.state_dir.join(&self.name)
    }
}

/// This boot's id (read once per process).
pub(crate) fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
    })
    .as_deref()
}

/// [`DEFAULT_STATE_DIR`], unless `legacy/<name>` holds this boot's state (its store
/// writes `boot_id` on the first call of a boot).
fn default_state_dir(legacy: &Path, name: &str, boot: Option<&str>) -> PathBuf {
    let recorded = std::fs::read_to_string(legacy.join(name).join("boot_id")).ok();
    match (recorded, boot) {
        (Some(r), Some(b)) if r.trim() == b => legacy.to_path_buf(),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

fn attachments(obj: &Map<String, Value>) -> Result<Vec<(String, String)>> {
    let list = obj
        .get("cni.dev/valid-attachments")
        .or_else(|| obj.get("cni.dev/attachments"));
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let bad = || {
        Error::InvalidConfig(
            "cni.dev/valid-attachments must be a list of {containerID, ifname}".into(),
        )
    };
    list.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|a| {
            let cid = a
                .get("containerID")
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            let ifname = a.get("ifname").and_then(Value::as_str).ok_or_else(bad)?;
            Ok((cid.to_string(), ifname.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn state_stays_in_the_legacy_dir_only_for_the_boot_that_wrote_it() {
        let legacy = tempfile::tempdir().unwrap();
        let d = |boot| default_state_dir(legacy.path(), "net", boot);
        assert_eq!(d(Some("b1")), PathBuf::from(DEFAULT_STATE_DIR));
        std::fs::create_dir_all(legacy.path().join("net")).unwrap();
        std::fs::write(legacy.path().join("net/boot_id"), "b1\n").unwrap();
        // pods set up before an upgrade, in this boot: their state is found
        assert_eq!(d(Some("b1")), legacy.path());
        // after a reboot (or for another network) the state starts on /run
        assert_eq!(d(Some("b2")), PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(d(None), PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(
            default_state_dir(legacy.path(), "other", Some("b1")),
            PathBuf::from(DEFAULT_STATE_DIR)
        );
    }

    use super::*;

    fn parse(s: &str) -> Result<NetConf> {
        NetConf::parse(s.to_string())
    }

    #[test]
    fn defaults_and_passthrough() {
        let raw = r#"{"cniVersion":"0.4.0","name":"pods","type":"wasm-cni","myPodNetwork":"200.200.0.0/16","x":{"y":1}}"#;
        let c = parse(raw).unwrap();
        assert_eq!(c.guest, PathBuf::from(DEFAULT_GUEST));
        assert_eq!(c.bridge, "cni0");
        assert_eq!(c.pod_networks.len(), 1);
        assert_eq!(c.pod_networks[0].to_string(), "200.200.0.0/16");
        assert_eq!(c.raw, raw, "the guest gets the config verbatim");
    }

    #[test]
    fn guest_digest_is_a_sha256_pin() {
        let base = r#"{"cniVersion":"1.0.0","name":"n","guestDigest":"#;
        let hex = "AB".repeat(32);
        let c = parse(&format!("{base}\"sha256:{hex}\"}}")).unwrap();
        assert_eq!(
            c.guest_digest.unwrap(),
            format!("sha256:{}", hex.to_lowercase())
        );
        assert!(parse(r#"{"cniVersion":"1.0.0","name":"n"}"#)
            .unwrap()
            .guest_digest
            .is_none());
        for bad in [
            "\"sha256:ab\"",
            "\"md5:00\"",
            "7",
            &format!("\"sha256:{}\"", "g".repeat(64)),
        ] {
            let e = parse(&format!("{base}{bad}}}")).unwrap_err();
            assert_eq!(e.code(), 7, "{bad}: {e}");
        }
    }

    #[test]
    fn error_codes() {
        assert_eq!(parse("{not json").unwrap_err().code(), 6);
        assert_eq!(parse("[1]").unwrap_err().code(), 6);
        assert_eq!(
            parse(r#"{"cniVersion":"9.9.9","name":"n"}"#)
                .unwrap_err()
                .code(),
            1
        );
        assert_eq!(parse(r#"{"name":"n"}"#).unwrap_err().code(), 7);
        assert_eq!(parse(r#"{"cniVersion":"1.0.0"}"#).unwrap_err().code(), 7);
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0","name":"../etc"}"#)
                .unwrap_err()
                .code(),
            7
        );
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0","name":"n","timeoutMs":0}"#)
                .unwrap_err()
                .code(),
            7
        );
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0","name":"n","myPodNetwork":"x"}"#)
                .unwrap_err()
                .code(),
            7
        );
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0","name":"n","guest":5}"#)
                .unwrap_err()
                .code(),
            7
        );
    }

    #[test]
    fn pod_networks_are_a_cidr_or_a_list_one_per_family() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","podNetwork":["200.200.0.0/16","fd00:200::/48"]}"#,
        )
        .unwrap();
        let texts: Vec<String> = c.pod_networks.iter().map(|n| n.to_string()).collect();
        assert_eq!(texts, ["200.200.0.0/16", "fd00:200::/48"]);
        let c =
            parse(r#"{"cniVersion":"1.0.0","name":"n","myPodNetwork":"fd00:200::/48"}"#).unwrap();
        assert_eq!(c.pod_networks[0].to_string(), "fd00:200::/48");
        for (net, names) in [
            (r#""fe80::/64""#, "fe80::/10"),
            (r#""169.254.0.0/16""#, "169.254.0.0/16"),
            (r#""127.0.0.0/16""#, "127.0.0.0/8"),
            (r#""ff02::/16""#, "ff00::/8"),
            (r#""224.1.0.0/16""#, "224.0.0.0/4"),
            (r#""::/0""#, "::/128"),
            (r#""0.0.0.0/0""#, "0.0.0.0/8"),
            // IPv6 text for IPv4 addresses: the kernel, sockets and NAT64 gateways take
            // them for the IPv4 address inside
            (r#""::ffff:200.200.0.0/112""#, "IPv4-mapped"),
            (r#""::ffff:0:0/96""#, "IPv4-mapped"),
            (r#""::200.200.0.0/112""#, "IPv4-compatible"),
            (r#""64:ff9b::/96""#, "NAT64"),
            (r#""64:ff9b::c8c8:0/112""#, "NAT64"),
            (r#""64:ff9b::/64""#, "NAT64"),
            (r#"["200.200.0.0/16","fe80::/10"]"#, "fe80::/10"),
            (r#"["10.0.0.0/16","10.1.0.0/16"]"#, "second IPv4"),
            (r#"["10.0.0.0/16", 5]"#, "not a CIDR"),
            (r#"{"a":1}"#, "a list of CIDRs"),
        ] {
            let raw = format!(r#"{{"cniVersion":"1.0.0","name":"n","podNetwork":{net}}}"#);
            let e = parse(&raw).unwrap_err();
            assert_eq!(e.code(), 7, "{net}");
            assert!(e.to_string().contains(names), "{net}: {e}");
        }
    }

    #[test]
    fn only_add_check_del_carry_the_requested_ips_and_mac() {
        let raw = r#"{"cniVersion":"1.1.0","name":"n","runtimeConfig":{"ips":["200.200.1.9"],"mac":"0a:58:00:00:00:09"}}"#;
        let env = |cmd: &str, args: &str| {
            let (cmd, args) = (cmd.to_string(), args.to_string());
            crate::cni::Env::from_lookup_in(
                move |k| match k {
                    "CNI_COMMAND" => Some(cmd.clone()),
                    "CNI_CONTAINERID" => Some("c1".into()),
                    "CNI_IFNAME" => Some("eth0".into()),
                    "CNI_NETNS" => Some("/ns".into()),
                    "CNI_ARGS" => Some(args.clone()),
                    _ => None,
                },
                |_| true,
            )
            .unwrap()
        };
        for cmd in ["ADD", "CHECK", "DEL"] {
            let c = parse(raw)
                .unwrap()
                .with_args(&env(cmd, "IP=fd00::9"))
                .unwrap();
            assert_eq!(c.requested.ips_text(), ["200.200.1.9", "fd00::9"], "{cmd}");
            assert!(c.requested.mac.is_some(), "{cmd}");
            let e = parse(raw).unwrap().with_args(&env(cmd, "IP=200.200.1.10"));
            assert_eq!(e.unwrap_err().code(), 4, "{cmd}");
        }
        for cmd in ["GC", "STATUS"] {
            let c = parse(raw).unwrap().with_args(&env(cmd, "")).unwrap();
            assert_eq!(c.requested, Default::default(), "{cmd}");
        }
    }

    #[test]
    fn cluster_keys() {
        let base =
            r#""cniVersion":"1.0.0","name":"n","podNetwork":["200.200.0.0/16","fd00:200::/48"]"#;
        let c = parse(&format!(
            r#"{{{base},"myHostNetwork":["10.0.0.0/16","fd00:10::/64"],"nodeIP":["fd00:10::3","10.0.0.3"],
            "peers":[{{"name":"w1","nodeIP":"10.0.0.3","podCIDRs":["fd00:200:0:1::/64","200.200.1.0/24"]}},
                     {{"nodeIP":["10.0.0.4","fd00:10::4"],"podCIDRs":["200.200.2.0/24"]}}]}}"#
        ))
        .unwrap()
        .cluster;
        assert_eq!(c.vxlan_link, "wcni.1");
        assert_eq!(c.node_ips[0].to_string(), "10.0.0.3", "IPv4 first");
        assert_eq!(c.host_networks.len(), 2);
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[0].name, "w1");
        assert_eq!(c.peers[0].pod_cidrs[0].to_string(), "200.200.1.0/24");
        assert_eq!(c.peers[1].ips.len(), 2);
        // hostNetwork wins over myHostNetwork; none of the keys: nothing granted
        let c = parse(&format!(
            r#"{{{base},"hostNetwork":"10.1.0.0/16","myHostNetwork":"10.0.0.0/16","vxlanLink":"vx0"}}"#
        ))
        .unwrap()
        .cluster;
        assert_eq!(c.host_networks[0].to_string(), "10.1.0.0/16");
        assert_eq!(c.vxlan_link, "vx0");
        assert_eq!(
            parse(&format!("{{{base}}}")).unwrap().cluster,
            Cluster::default()
        );
        // without peers, myHostNetwork stays the guest's to check (it grants nothing)
        let c = parse(&format!(r#"{{{base},"myHostNetwork":"ten/16"}}"#)).unwrap();
        assert!(c.cluster.host_networks.is_empty());
        let peer = |p: &str| format!(r#"{{{base},"peers":[{p}]}}"#);
        // a full list: 1024 nodes, a /26 each, parsed (every call does) and checked
        let full: Vec<String> = (0..MAX_PEERS)
            .map(|i| {
                format!(
                    r#"{{"nodeIP":"10.{}.{}.1","podCIDRs":["200.200.{}.{}/26"]}}"#,
                    i / 256,
                    i % 256,
                    i / 4,
                    (i % 4) * 64
                )
            })
            .collect();
        let c = parse(&peer(&full.join(","))).unwrap().cluster;
        assert_eq!(c.peers.len(), MAX_PEERS);
        let mut last = full.clone();
        last[MAX_PEERS - 1] = r#"{"nodeIP":"10.9.9.9","podCIDRs":["200.200.7.0/24"]}"#.into();
        let e = parse(&peer(&last.join(","))).unwrap_err().to_string();
        assert!(
            e.contains(
                "peers[1023] (\"\"): podCIDR 200.200.7.0/24 overlaps 200.200.7.0/26 of peers[28]"
            ),
            "{e}"
        );
        let many: Vec<String> = (0..=MAX_PEERS)
            .map(|i| format!(r#"{{"nodeIP":"10.{}.{}.1"}}"#, i / 256, i % 256))
            .collect();
        for (raw, names) in [
            (peer(r#"{"name":"a","nodeIP":"10.0.0.x"}"#), "peers[0] (\"a\"): nodeIP"),
            (peer(r#"{"name":"a"}"#), "nodeIP is missing"),
            (
                peer(r#"{"nodeIP":["10.0.0.3","10.0.0.4"]}"#),
                "second IPv4 address",
            ),
            (peer(r#"{"nodeIP":"224.0.0.1"}"#), "unicast"),
            (
                peer(r#"{"nodeIP":"10.0.0.3","podCIDRs":["10.9.0.0/24"]}"#),
                "not inside the IPv4 pod network",
            ),
            (
                peer(r#"{"nodeIP":"10.0.0.3","podCIDRs":["200.200.1.1/24"]}"#),
                "host bits",
            ),
            (
                peer(r#"{"nodeIP":"10.0.0.3","podCIDRs":["200.200.1.0/24","200.200.2.0/24"]}"#),
                "second IPv4 CIDR",
            ),
            (
                peer(
                    r#"{"name":"a","nodeIP":"10.0.0.3","podCIDRs":["200.200.0.0/23"]},
                       {"name":"b","nodeIP":"10.0.0.4","podCIDRs":["200.200.1.0/24"]}"#,
                ),
                "peers[1] (\"b\"): podCIDR 200.200.1.0/24 overlaps 200.200.0.0/23 of peers[0] (\"a\")",
            ),
            (
                // found whatever the order: the wider one later, across other entries
                peer(
                    r#"{"name":"a","nodeIP":"10.0.0.3","podCIDRs":["200.200.1.0/24","fd00:200:0:1::/64"]},
                       {"name":"b","nodeIP":"10.0.0.4","podCIDRs":["200.200.3.0/24","fd00:200::/48"]},
                       {"name":"c","nodeIP":"10.0.0.5","podCIDRs":["200.200.2.0/24"]}"#,
                ),
                "peers[1] (\"b\"): podCIDR fd00:200::/48 overlaps fd00:200:0:1::/64 of peers[0] (\"a\")",
            ),
            (
                peer(
                    r#"{"name":"a","nodeIP":"10.0.0.3","podCIDRs":["200.200.1.0/24"]},
                       {"name":"b","nodeIP":"10.0.0.4","podCIDRs":["200.200.2.0/24"]},
                       {"name":"c","nodeIP":"10.0.0.5","podCIDRs":["200.200.1.0/24"]}"#,
                ),
                "peers[2] (\"c\"): podCIDR 200.200.1.0/24 overlaps 200.200.1.0/24 of peers[0] (\"a\")",
            ),
            (
                peer(r#"{"nodeIP":"10.0.0.3"},{"nodeIP":"10.0.0.3"}"#),
                "also the node IP of peers[0]",
            ),
            (peer(r#""10.0.0.3""#), "peers[0] must be an object"),
            (format!(r#"{{{base},"peers":{{}}}}"#), "peers must be a list"),
            (format!(r#"{{{base},"peers":[{}]}}"#, many.join(",")), "at most 1024"),
            (format!(r#"{{{base},"nodeIP":"x"}}"#), "nodeIP: \"x\""),
            (
                format!(r#"{{{base},"hostNetwork":["10.0.0.0/8","10.1.0.0/16"]}}"#),
                "second IPv4 network",
            ),
            (
                format!(r#"{{{base},"myHostNetwork":"x","peers":[]}}"#),
                "myHostNetwork",
            ),
            (format!(r#"{{{base},"vxlanLink":"a/b"}}"#), "vxlanLink"),
            (format!(r#"{{{base},"vxlanLink":"cni0"}}"#), "the bridge's name"),
        ] {
            let e = parse(&raw).unwrap_err();
            assert_eq!(e.code(), 7, "{names}: {e}");
            assert!(e.to_string().contains(names), "{names}: {e}");
        }
    }

    #[test]
    fn gc_attachments_both_keys() {
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let raw = format!(
                r#"{{"cniVersion":"1.1.0","name":"n","{key}":[{{"containerID":"a","ifname":"eth0"}}]}}"#
            );
            assert_eq!(
                parse(&raw).unwrap().valid_attachments,
                vec![("a".into(), "eth0".into())]
            );
        }
    }
}
