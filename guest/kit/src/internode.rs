//! What the inter-node policies (host-gw, VXLAN) share: this node and its peers as
//! typed values (from the runner's `cluster` interface, which read and checked the
//! config's `peers`, `nodeIP` and `vxlanLink`), and the lazy sync of ADD.
//!
//! A policy's sync brings the node in line with the peers list: it creates what is
//! missing and removes what belongs to peers no longer listed. `wasm-cni reconcile`
//! runs it every time (through `node-policy.reconcile`); ADD runs it only when the
//! store's [`STATE_KEY`] holds another digest of what the sync depends on (or the
//! policy found something missing), so that a pod's ADD costs one store read when
//! nothing changed.

use crate::bindings::plugin::routes::Route;
use crate::bindings::plugin::types::LinkInfo;
use crate::bindings::policy::CniError;
use crate::config::{Config, Family, Net};
use crate::policy::{cni, step, store_step, Node, HOST_FAILED};
use std::net::IpAddr;

/// The store key holding the digest of the last sync's inputs (`host-gw v1 <hex>`,
/// `vxlan v1 <hex>`).
pub const STATE_KEY: &str = "node/peers";

/// This node, as `cluster.this-node` gives it.
#[derive(Clone, Debug)]
pub struct Me {
    /// The link carrying the default route.
    pub uplink: LinkInfo,
    /// This node's IPs, at most one per family, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// The name the network's VXLAN link must have (config `vxlanLink`).
    pub vxlan_link: String,
}

impl Me {
    /// This node's IP of `family`.
    pub fn ip(&self, family: Family) -> Option<IpAddr> {
        self.ips
            .iter()
            .copied()
            .find(|ip| Family::of(*ip) == family)
    }
}

/// Another node, as `cluster.peers` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerNode {
    /// Its name (may be empty).
    pub name: String,
    /// Its IPs, at most one per family, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// Its pod CIDRs, IPv4 first, as networks (host bits cleared).
    pub pod_cidrs: Vec<Net>,
}

impl PeerNode {
    /// Its IP of `family`.
    pub fn ip(&self, family: Family) -> Option<IpAddr> {
        self.ips
            .iter()
            .copied()
            .find(|ip| Family::of(*ip) == family)
    }

    /// How messages name it: its name, else its first IP.
    pub fn label(&self) -> String {
        match (self.name.is_empty(), self.ips.first()) {
            (false, _) | (true, None) => format!("{:?}", self.name),
            (true, Some(ip)) => ip.to_string(),
        }
    }
}

/// A network with its host bits cleared: how routes are compared.
pub fn network(n: Net) -> Net {
    Net {
        addr: n.network(),
        prefix: n.prefix,
    }
}

/// A single address as a network: `/32` or `/128`.
pub fn host_net(ip: IpAddr) -> Net {
    Net {
        addr: ip,
        prefix: Family::of(ip).bits(),
    }
}

/// True if the two networks share an address.
pub fn overlap(a: Net, b: Net) -> bool {
    a.covers(b) || b.covers(a)
}

fn parse_ip(what: &str, text: &str) -> Result<IpAddr, CniError> {
    text.parse().map_err(|_| {
        cni(
            HOST_FAILED,
            format!("{what}: {text:?} is not an IP address"),
        )
    })
}

/// `cluster.this-node`, typed.
pub fn this_node(node: &mut impl Node) -> Result<Me, CniError> {
    let me = node.this_node().map_err(step("read this node"))?;
    let ips = me
        .ips
        .iter()
        .map(|t| parse_ip("this node's IP", t))
        .collect::<Result<_, _>>()?;
    Ok(Me {
        uplink: me.uplink,
        ips,
        vxlan_link: me.vxlan_link,
    })
}

/// `cluster.peers`, typed.
pub fn peers(node: &mut impl Node) -> Result<Vec<PeerNode>, CniError> {
    let list = node.peers().map_err(step("read peers"))?;
    list.into_iter()
        .map(|p| {
            let what = format!("peer {:?}", p.name);
            let ips = p
                .ips
                .iter()
                .map(|t| parse_ip(&what, t))
                .collect::<Result<_, _>>()?;
            let pod_cidrs = p
                .pod_cidrs
                .iter()
                .map(|t| {
                    Net::parse(t, false)
                        .map(network)
                        .map_err(|m| cni(HOST_FAILED, format!("{what}: pod CIDR {m}")))
                })
                .collect::<Result<_, _>>()?;
            Ok(PeerNode {
                name: p.name,
                ips,
                pod_cidrs,
            })
        })
        .collect()
}

/// The pod CIDRs of `peer` this node can route: inside the pod network of their
/// family and clear of this node's own subnets (the runner checked both; a CIDR that
/// is not is logged and skipped rather than failing every pod's ADD).
pub fn routable_cidrs(node: &mut impl Node, cfg: &Config, peer: &PeerNode) -> Vec<Net> {
    let mut out = Vec::new();
    for &c in &peer.pod_cidrs {
        let inside = cfg.pod_network.get(c.family()).is_some_and(|n| n.covers(c));
        if !inside || cfg.pod_subnet.iter().any(|s| overlap(s, c)) {
            node.warn(&format!(
                "peer {}: pod CIDR {c} is not another node's part of the pod network {}: skipped",
                peer.label(),
                cfg.pod_network
            ));
            continue;
        }
        out.push(c);
    }
    out
}

/// A route of the host's table as (destination network, gateway), or `None` when the
/// runner's text does not parse (never the case: it answers canonical text).
pub fn route_key(r: &Route) -> Option<(Net, Option<IpAddr>)> {
    let dst = Net::parse(&r.destination, false).ok().map(network)?;
    let gw = match &r.gateway {
        Some(g) => Some(g.parse().ok()?),
        None => None,
    };
    Some((dst, gw))
}

/// Is `dst` a peer's destination this node's sync may own: inside the pod network of
/// its family and clear of this node's subnets. Routes outside that are never touched.
pub fn peer_destination(cfg: &Config, dst: Net) -> bool {
    cfg.pod_network
        .get(dst.family())
        .is_some_and(|n| n.covers(dst))
        && !cfg.pod_subnet.iter().any(|s| overlap(s, dst))
}

/// 64-bit FNV-1a of `text`, in hex: a digest for [`STATE_KEY`] (a peers list of 1024
/// nodes is too long for a store value; a collision costs one skipped lazy sync, which
/// `wasm-cni reconcile` repairs).
pub fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What a sync depends on that this node and its peers give, as text for [`digest`]:
/// the uplink, this node's IPs, the VXLAN link name, each peer's IPs and pod CIDRs,
/// and the config's networks.
pub fn describe(cfg: &Config, me: &Me, peers: &[PeerNode]) -> String {
    let mut s = format!(
        "uplink={} ips={:?} vxlan={} subnet={} pods={} hosts={}",
        me.uplink.name, me.ips, me.vxlan_link, cfg.pod_subnet, cfg.pod_network, cfg.host_network
    );
    for p in peers {
        s.push_str(&format!(
            ";{} {:?} {}",
            p.name,
            p.ips,
            p.pod_cidrs
                .iter()
                .map(Net::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    s
}

/// What a sync changed, for its log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Objects created (links, addresses, routes, FDB and neighbour entries).
    pub added: usize,
    /// Objects removed (departed peers' routes, FDB and neighbour entries).
    pub removed: usize,
    /// Objects the kernel refused and a lenient sync (ADD's) skipped with a warning;
    /// the state is then not stored, so the next ADD tries again.
    pub skipped: usize,
}

/// ADD's lazy sync: when `current` (the policy's objects it can see cheaply are there)
/// and [`STATE_KEY`] holds `state`, nothing; else `sync`, then `state` is stored.
/// Inside the network's lock (entered here; the caller's ADD leaves it). Returns
/// whether it synced (then the ADD keeps the lock: see [`crate::bridge::add_after`]).
pub fn sync_lazily<N: Node>(
    node: &mut N,
    state: &str,
    current: bool,
    sync: impl FnOnce(&mut N) -> Result<Changes, CniError>,
) -> Result<bool, CniError> {
    node.lock_acquire()
        .map_err(step("enter the network's lock"))?;
    if current
        && node
            .get(STATE_KEY)
            .map_err(store_step("read peers state"))?
            .as_deref()
            == Some(state)
    {
        return Ok(false);
    }
    let changes = sync(node)?;
    if changes.skipped > 0 {
        node.warn(&format!(
            "peers synced in part: {} added, {} removed, {} refused (see the warnings above); the next ADD tries again",
            changes.added, changes.removed, changes.skipped
        ));
        return Ok(true);
    }
    node.put(STATE_KEY, state)
        .map_err(store_step("record peers state"))?;
    node.info(&format!(
        "peers synced ({state}): {} added, {} removed",
        changes.added, changes.removed
    ));
    Ok(true)
}

/// `node-policy.reconcile`'s frame: `sync` always, then `state` is stored (so the next
/// ADD takes the cheap path). Errors are the message the runner prints.
pub fn reconcile_with<N: Node>(
    node: &mut N,
    state: &str,
    sync: impl FnOnce(&mut N) -> Result<Changes, CniError>,
) -> Result<Changes, String> {
    let changes = sync(node).map_err(|e| e.message)?;
    node.put(STATE_KEY, state)
        .map_err(|m| format!("record peers state: {m}"))?;
    node.info(&format!(
        "reconciled ({state}): {} added, {} removed",
        changes.added, changes.removed
    ));
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeNode, DUAL};
    use crate::policy::parse_config;

    #[test]
    fn peers_are_typed_and_normalised() {
        let mut n = FakeNode::default();
        n.peers = vec![
            FakeNode::peer(
                "w2",
                &["10.0.0.4", "fd00:10::4"],
                &["200.200.2.0/24", "fd00:200:2::/64"],
            ),
            FakeNode::peer("", &["10.0.0.5"], &["200.200.3.7/24"]),
        ];
        let p = peers(&mut n).unwrap();
        assert_eq!(p[0].ip(Family::V6).unwrap().to_string(), "fd00:10::4");
        assert_eq!(p[1].pod_cidrs[0].to_string(), "200.200.3.0/24");
        assert_eq!(
            (p[0].label(), p[1].label()),
            ("\"w2\"".into(), "10.0.0.5".into())
        );
        n.peers = vec![FakeNode::peer("w9", &["ten"], &[])];
        let e = peers(&mut n).unwrap_err();
        assert_eq!(e.message, "peer \"w9\": \"ten\" is not an IP address");
        assert_eq!(
            this_node(&mut n).unwrap_err().message,
            "read this node: no uplink: no default route"
        );
    }

    #[test]
    fn only_other_nodes_parts_of_the_pod_network_are_routable_or_removable() {
        let cfg = parse_config(DUAL).unwrap();
        let mut n = FakeNode::default();
        let peer = PeerNode {
            name: "w2".into(),
            ips: vec![],
            pod_cidrs: ["200.200.2.0/24", "10.9.0.0/24", "200.200.1.128/25"]
                .iter()
                .map(|t| Net::parse(t, true).unwrap())
                .collect(),
        };
        let ok = routable_cidrs(&mut n, &cfg, &peer);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].to_string(), "200.200.2.0/24");
        assert_eq!(n.log.len(), 2, "{:?}", n.log);
        let net = |t: &str| Net::parse(t, false).unwrap();
        assert!(peer_destination(&cfg, net("fd00:200:2::/64")));
        assert!(!peer_destination(&cfg, net("fd00:200:1::/128")));
        assert!(!peer_destination(&cfg, net("200.200.0.0/16")));
        assert!(!peer_destination(&cfg, net("0.0.0.0/0")));
    }

    #[test]
    fn lazy_sync_runs_when_the_state_differs_or_something_is_missing() {
        let mut n = FakeNode::default();
        let mut runs = 0;
        let mut sync = |_: &mut FakeNode| {
            runs += 1;
            Ok(Changes::default())
        };
        sync_lazily(&mut n, "s1", true, &mut sync).unwrap();
        sync_lazily(&mut n, "s1", true, &mut sync).unwrap();
        assert_eq!(n.store.0[STATE_KEY], "s1");
        sync_lazily(&mut n, "s2", true, &mut sync).unwrap();
        sync_lazily(&mut n, "s2", false, &mut sync).unwrap();
        assert_eq!(runs, 3);
        // a failed sync records nothing
        let e = sync_lazily(&mut n, "s3", true, |_| Err(cni(HOST_FAILED, "x"))).unwrap_err();
        assert_eq!(e.message, "x");
        assert_eq!(n.store.0[STATE_KEY], "s2");
        assert_eq!(
            reconcile_with(&mut n, "s4", |_| Err(cni(HOST_FAILED, "add route: denied"))),
            Err("add route: denied".to_string())
        );
    }

    #[test]
    fn digest_is_stable_and_sensitive() {
        assert_eq!(digest(""), "cbf29ce484222325");
        assert_ne!(digest("a;b"), digest("a;c"));
        assert_eq!(digest("a;b"), digest("a;b"));
    }
}
