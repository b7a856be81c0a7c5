//! The VXLAN policy (flannel's `vxlan` backend): the default bridge policy for the
//! pods of this node, and an overlay to every other node of the cluster, so pods talk
//! across nodes on any IP network (a cloud VPC that routes by destination included):
//!
//! ```text
//! wcni.1: vxlan id 1 dstport 8472 local 10.0.0.3 nolearning, MTU uplink-50, MAC 0e:cc:0a:00:00:03
//!         addresses 200.200.1.0/32, fd00:200:1::/128   (this node's VTEP: its pod CIDRs' network addresses)
//! for worker-2 (10.0.0.4, pods 200.200.2.0/24 and fd00:200:2::/64):
//!   bridge fdb 0e:cc:0a:00:00:04 dst 10.0.0.4 dev wcni.1         (its VTEP MAC is at its node IP)
//!   ip neigh 200.200.2.0 lladdr 0e:cc:0a:00:00:04 dev wcni.1     (its VTEP address has that MAC)
//!   ip route 200.200.2.0/32 dev wcni.1                           (its VTEP address is on the link)
//!   ip route 200.200.2.0/24 via 200.200.2.0 dev wcni.1           (its pods are behind it)
//!   ... and the same for fd00:200:2:: (IPv6 pods ride the one IPv4 tunnel)
//! ```
//!
//! A pod packet to worker-2's pod 200.200.2.5 takes the route via 200.200.2.0, whose
//! neighbour entry gives the inner destination MAC, whose FDB entry gives the outer
//! destination IP: the kernel wraps the frame in UDP to 10.0.0.4:8472, and worker-2's
//! `wcni.1` (same VNI and port) unwraps it and routes it to its bridge.
//!
//! No message carries MACs between nodes: a node's VTEP MAC is derived from its
//! underlay IP ([`vtep_mac`]: `0e:cc:` + the IPv4's 4 bytes), so every node computes
//! every other's. The encapsulation costs 50 bytes over an IPv4 underlay (70 over
//! IPv6): the VXLAN link, the bridge (when this policy creates it) and the pods' veths
//! get the uplink's MTU minus that ([`tunnel_mtu`], [`pod_mtu`]).
//!
//! [`sync`] brings the link and its entries in line with the peers (`cluster.peers`):
//! creates what is missing, removes the routes, neighbour and FDB entries of peers no
//! longer listed, and nothing else. `wasm-cni reconcile -c CONFLIST` runs it
//! (`node-policy.reconcile`); ADD runs it when the inputs changed since the last sync
//! (a digest in the store, `node/peers`) or the VXLAN link is missing or down.
//!
//! Config keys of its own: `vni` (default 1) and `vxlanPort` (default 8472, flannel's
//! and Linux's; 4789 is IANA's). The link's name is the runner's `vxlanLink` (default
//! `wcni.1`), given by `cluster.this-node`.

use serde::Deserialize;
use std::net::IpAddr;
use wasm_cni_guest_kit::internode::{self, host_net, Changes, Me, PeerNode};
use wasm_cni_guest_kit::prelude::*;

/// The VXLAN policy.
pub struct Vxlan;

/// VXLAN's cost per packet over an IPv4 underlay: outer IPv4 (20) + UDP (8) + VXLAN
/// (8) headers + the inner Ethernet header (14).
pub const OVERHEAD_V4: u32 = 50;
/// The same over IPv6 (a 40-byte outer header).
pub const OVERHEAD_V6: u32 = 70;

/// The VXLAN settings of the config: `vni` (1..16777215, default 1) and `vxlanPort`
/// (1..65535, default 8472).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub vni: u32,
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    vni: Option<u32>,
    vxlan_port: Option<u32>,
}

impl Settings {
    /// Read `vni` and `vxlanPort` from the network config (error 7 naming the key).
    pub fn parse(json: &str) -> Result<Settings, CniError> {
        let bad = |m: String| cni(INVALID_CONFIG, m);
        let raw: Raw =
            serde_json::from_str(json).map_err(|e| bad(format!("network config: {e}")))?;
        let vni = raw.vni.unwrap_or(1);
        if !(1..=16_777_215).contains(&vni) {
            return Err(bad(format!("vni {vni} is out of range (1..16777215)")));
        }
        let port = raw.vxlan_port.unwrap_or(8472);
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("vxlanPort {port} is out of range (1..65535)")))?;
        Ok(Settings { vni, port })
    }
}

/// A node's VTEP MAC, from its underlay IP: `0e:cc:` and the IPv4 address's 4 bytes
/// (of an IPv6 address, its last 4). `0e` is a unicast (bit 0 clear), locally
/// administered (bit 1 set) first byte: no vendor's, no group's.
pub fn vtep_mac(ip: IpAddr) -> String {
    let b = match ip {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => {
            let o = a.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    format!("0e:cc:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// The VXLAN link's MTU: the uplink's minus the encapsulation over `underlay`.
pub fn tunnel_mtu(uplink_mtu: u32, underlay: Family) -> u32 {
    let overhead = match underlay {
        Family::V4 => OVERHEAD_V4,
        Family::V6 => OVERHEAD_V6,
    };
    uplink_mtu.saturating_sub(overhead)
}

/// The MTU of the bridge and the pods' veths: the tunnel's, or the config's `mtu` if
/// that is lower (a pod packet must fit the tunnel). Error 100 when it is below what
/// the node's families need (576; 1280 with IPv6 pods).
pub fn pod_mtu(cfg: &Config, tunnel: u32) -> Result<u32, CniError> {
    let mtu = cfg.mtu.map_or(tunnel, |m| m.min(tunnel));
    let min = if cfg.pod_subnet.v6.is_some() {
        1280
    } else {
        576
    };
    if mtu < min {
        return Err(cni(
            HOST_FAILED,
            format!("the VXLAN tunnel leaves an MTU of {mtu}: the pods need {min} or more (raise the uplink's MTU)"),
        ));
    }
    Ok(mtu)
}

/// What this node's VXLAN setup should be, from this node and its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The VXLAN link's name (`vxlanLink`).
    pub link: String,
    /// Its local (underlay) address: this node's IPv4 IP, else its IPv6 one.
    pub local: IpAddr,
    /// Its MAC ([`vtep_mac`] of `local`).
    pub mac: String,
    /// Its MTU ([`tunnel_mtu`]).
    pub mtu: u32,
    /// This node's VTEP addresses: each pod subnet's network address, `/32` (`/128`).
    pub addresses: Vec<String>,
    /// Per peer: its VTEP MAC at its underlay IP.
    pub fdb: Vec<(String, IpAddr)>,
    /// Per peer and pod CIDR: its VTEP address (the CIDR's network address) at its MAC.
    pub neighbors: Vec<(IpAddr, String)>,
    /// Per peer and pod CIDR: the VTEP address on the link (no gateway), then the CIDR
    /// via it.
    pub routes: Vec<(Net, Option<IpAddr>)>,
}

/// The plan for this node (`me`) and `peers`. A peer without an IP of the underlay's
/// family cannot be reached through the tunnel: logged and skipped.
pub fn plan(
    node: &mut impl Node,
    cfg: &Config,
    me: &Me,
    peers: &[PeerNode],
) -> Result<Plan, CniError> {
    let local = me
        .ip(Family::V4)
        .or_else(|| me.ip(Family::V6))
        .ok_or_else(|| cni(HOST_FAILED, "this node has no IP for the VXLAN underlay"))?;
    let underlay = Family::of(local);
    let mut p = Plan {
        link: me.vxlan_link.clone(),
        local,
        mac: vtep_mac(local),
        mtu: tunnel_mtu(me.uplink.mtu, underlay),
        addresses: cfg
            .pod_subnet
            .iter()
            .map(|s| host_net(s.network()).to_string())
            .collect(),
        fdb: Vec::new(),
        neighbors: Vec::new(),
        routes: Vec::new(),
    };
    for peer in peers {
        let Some(remote) = peer.ip(underlay) else {
            node.warn(&format!(
                "peer {}: no {underlay} node IP for the VXLAN underlay: skipped",
                peer.label()
            ));
            continue;
        };
        let mac = vtep_mac(remote);
        // two entries of one node (the runner allows it) share one FDB entry
        if !p.fdb.contains(&(mac.clone(), remote)) {
            p.fdb.push((mac.clone(), remote));
        }
        for cidr in internode::routable_cidrs(node, cfg, peer) {
            let gw = cidr.network();
            p.neighbors.push((gw, mac.clone()));
            p.routes.push((host_net(gw), None));
            p.routes.push((cidr, Some(gw)));
        }
    }
    Ok(p)
}

/// What the store's `node/peers` holds after a sync of `plan`.
pub fn state(cfg: &Config, s: Settings, me: &Me, peers: &[PeerNode], plan: &Plan) -> String {
    let text = format!(
        "{} vni={} port={} local={} mac={} mtu={}",
        internode::describe(cfg, me, peers),
        s.vni,
        s.port,
        plan.local,
        plan.mac,
        plan.mtu
    );
    format!("vxlan v1 {}", internode::digest(&text))
}

fn link_route(link: &str, dst: Net, gw: Option<IpAddr>) -> Route {
    Route {
        destination: dst.to_string(),
        gateway: gw.map(|g| g.to_string()),
        link: Some(link.to_string()),
    }
}

/// Bring the VXLAN link and its entries in line with `plan`: the link (created, up,
/// its MTU and VTEP addresses), then removal of what no peer owns any more (routes
/// through the link inside the pod network but outside this node's subnets, neighbour
/// entries of pod-network addresses, FDB entries), then the peers' missing entries:
/// FDB, neighbours, routes (the VTEP address's before the CIDR's that goes via it).
pub fn sync(
    node: &mut impl Node,
    cfg: &Config,
    s: Settings,
    plan: &Plan,
) -> Result<Changes, CniError> {
    let link = plan.link.as_str();
    let mut changes = Changes::default();
    let up = match node
        .link_get(Netns::Host, link)
        .map_err(step("look up VXLAN link"))?
    {
        None => {
            node.create_vxlan(
                link,
                s.vni,
                s.port,
                &plan.local.to_string(),
                Some(plan.mtu),
                Some(&plan.mac),
            )
            .map_err(step("create VXLAN link"))?;
            changes.added += 1;
            false
        }
        Some(l) => {
            if !l.mac.eq_ignore_ascii_case(&plan.mac) {
                return Err(cni(
                    HOST_FAILED,
                    format!(
                        "VXLAN link {link} has MAC {}, not this node's VTEP MAC {} (the one peers send to): delete the link and run wasm-cni reconcile",
                        l.mac, plan.mac
                    ),
                ));
            }
            if l.mtu != plan.mtu {
                node.set_mtu(Netns::Host, link, plan.mtu)
                    .map_err(step("set VXLAN link MTU"))?;
            }
            l.up
        }
    };
    let have = node
        .address_list(Netns::Host, link)
        .map_err(step("list VXLAN link addresses"))?;
    let missing: Vec<&String> = plan
        .addresses
        .iter()
        .filter(|a| !have.contains(a))
        .collect();
    if missing.iter().any(|a| a.contains(':')) {
        // the VTEP address is unique by construction: no 1-2 s of DAD
        node.sysctl_set(Netns::Host, &bridge::accept_dad_key(link), "0")
            .map_err(step("turn off DAD on the VXLAN link"))?;
    }
    for a in missing {
        node.address_add(Netns::Host, link, a)
            .map_err(step("add VTEP address"))?;
        changes.added += 1;
    }
    if !up {
        node.set_up(Netns::Host, link)
            .map_err(step("bring VXLAN link up"))?;
    }

    // removal: routes via a gateway first (they may go through a VTEP route)
    let mut routes: Vec<(Net, Option<IpAddr>)> = node
        .route_list(Netns::Host, Some(link))
        .map_err(step("list VXLAN link routes"))?
        .iter()
        .filter_map(internode::route_key)
        .collect();
    routes.sort_by_key(|(_, gw)| gw.is_none());
    for &(dst, gw) in &routes {
        if internode::peer_destination(cfg, dst) && !plan.routes.contains(&(dst, gw)) {
            node.route_remove(Netns::Host, &link_route(link, dst, gw))
                .map_err(step("remove a departed peer's route"))?;
            changes.removed += 1;
        }
    }
    let mut neighbors = Vec::new();
    for n in node
        .neighbor_list(link)
        .map_err(step("list VXLAN neighbours"))?
    {
        let Ok(ip) = n.address.parse::<IpAddr>() else {
            continue;
        };
        let entry = (ip, n.mac.to_ascii_lowercase());
        if cfg.pod_network.containing(ip).is_some() && !plan.neighbors.contains(&entry) {
            node.neighbor_remove(link, &n.address)
                .map_err(step("remove a departed peer's neighbour entry"))?;
            changes.removed += 1;
        } else {
            neighbors.push(entry);
        }
    }
    let mut fdb = Vec::new();
    for e in node.fdb_list(link).map_err(step("list VXLAN FDB"))? {
        let entry = e
            .remote
            .parse::<IpAddr>()
            .ok()
            .map(|r| (e.mac.to_ascii_lowercase(), r));
        match entry {
            Some(entry) if plan.fdb.contains(&entry) => fdb.push(entry),
            _ => {
                node.fdb_remove(link, &e)
                    .map_err(step("remove a departed peer's FDB entry"))?;
                changes.removed += 1;
            }
        }
    }

    for (mac, remote) in &plan.fdb {
        if !fdb.contains(&(mac.clone(), *remote)) {
            let e = FdbEntry {
                mac: mac.clone(),
                remote: remote.to_string(),
            };
            node.fdb_add(link, &e).map_err(step("add peer FDB entry"))?;
            changes.added += 1;
        }
    }
    for (ip, mac) in &plan.neighbors {
        if !neighbors.contains(&(*ip, mac.clone())) {
            let n = Neighbor {
                address: ip.to_string(),
                mac: mac.clone(),
            };
            node.neighbor_add(link, &n)
                .map_err(step("add peer neighbour entry"))?;
            changes.added += 1;
        }
    }
    for &(dst, gw) in &plan.routes {
        if !routes.contains(&(dst, gw)) {
            node.route_add(Netns::Host, &link_route(link, dst, gw))
                .map_err(step("add peer route"))?;
            changes.added += 1;
        }
    }
    Ok(changes)
}

/// Everything ADD and reconcile read before a sync.
struct Inputs {
    cfg: Config,
    settings: Settings,
    plan: Plan,
    state: String,
}

fn inputs(node: &mut impl Node, config: &str) -> Result<Inputs, CniError> {
    let cfg = parse_config(config)?;
    let settings = Settings::parse(config)?;
    let me = internode::this_node(node)?;
    let peers = internode::peers(node)?;
    let plan = plan(node, &cfg, &me, &peers)?;
    let state = state(&cfg, settings, &me, &peers, &plan);
    Ok(Inputs {
        cfg,
        settings,
        plan,
        state,
    })
}

/// ADD: the overlay when its inputs changed since the last sync or the link is missing
/// or down, then the bridge policy's ADD with the tunnel's MTU for the bridge and pod.
pub fn add(node: &mut impl Node, req: &Request) -> Result<AddResult, CniError> {
    let i = inputs(node, &req.config)?;
    let pod_cfg = Config {
        mtu: Some(pod_mtu(&i.cfg, i.plan.mtu)?),
        ..i.cfg.clone()
    };
    let current = node
        .link_get(Netns::Host, &i.plan.link)
        .map_err(step("look up VXLAN link"))?
        .is_some_and(|l| l.up);
    let synced = internode::sync_lazily(node, &i.state, current, |n| {
        sync(n, &i.cfg, i.settings, &i.plan)
    })?;
    bridge::add_after(node, req, &pod_cfg, synced)
}

/// `node-policy.reconcile`: the full sync, whatever the store says.
pub fn reconcile(node: &mut impl Node, config: &str) -> Result<Changes, String> {
    let i = inputs(node, config).map_err(|e| e.message)?;
    internode::reconcile_with(node, &i.state, |n| sync(n, &i.cfg, i.settings, &i.plan))
}

/// The bridge's problems, then the VXLAN link's: without it (or down) pods reach no
/// other node.
pub fn node_problem(node: &mut impl Node, cfg: &Config) -> Result<Option<String>, CniError> {
    if let Some(p) = bridge::node_problem(node, cfg)? {
        return Ok(Some(p));
    }
    let me = internode::this_node(node)?;
    match node
        .link_get(Netns::Host, &me.vxlan_link)
        .map_err(step("look up VXLAN link"))?
    {
        None => Ok(Some(format!("VXLAN link {} is missing", me.vxlan_link))),
        Some(l) if !l.up => Ok(Some(format!("VXLAN link {} is down", me.vxlan_link))),
        Some(_) => Ok(None),
    }
}

impl Policy for Vxlan {
    fn add(req: &Request) -> Result<AddResult, CniError> {
        add(&mut Runner, req)
    }

    fn check(req: &Request) -> Result<(), CniError> {
        bridge::check(&mut Runner, req)
    }

    fn node_problem(cfg: &Config) -> Result<Option<String>, CniError> {
        node_problem(&mut Runner, cfg)
    }
}

impl NodePolicy for Vxlan {
    fn reconcile(config: &str) -> Result<(), String> {
        reconcile(&mut Runner, config).map(|_| ())
    }
}

// Only the wasm build exports the component (world `cni-node-policy`); natively the
// crate is a plain library whose tests run the policy on the kit's fake node.
#[cfg(target_arch = "wasm32")]
wasm_cni_guest_kit::export_node!(Vxlan);

#[cfg(test)]
mod tests;
