//! Every capability check, in one place. Grants are computed once per call from the
//! config and the CNI environment; every host function asks here before it touches the
//! system. A refusal is an `OpError` of kind `Denied` and changes nothing.
//!
//! What a call may change:
//! - container namespace: only the call's CNI_NETNS; links named CNI_IFNAME or created
//!   in this call;
//! - host namespace: links created in this call; the attachment's own host link
//!   (`host_link`); the configured bridge and the network's VXLAN link (config
//!   `vxlanLink`; neither deleted, unless created in this call); in GC, prefixed links
//!   of attachments that are not valid; never `lo` or the uplink (see routes below);
//! - addresses and routes: on links it may change, inside the pod network of their
//!   family (plus the container's default route via a pod-network gateway); the same
//!   rules for IPv4 and IPv6, with no exception for link-local (`169.254.0.0/16`,
//!   `fe80::/10`): a guest may add them only inside a pod network, which the config may
//!   not make link-local;
//! - routes through the uplink (the host link of the default route), the only change
//!   that may name it: added only to a peer's pod CIDR via that peer's node IP of the
//!   family, in the host network (host-gw); removed only inside a pod network, not
//!   over this node's pod CIDRs, via a gateway in the host network (a departed peer's);
//! - the VXLAN link: created only by `cluster.create-vxlan`, only under the configured
//!   name (so one per network), from one of this node's IPs; its FDB entries only to a
//!   peer's node IP inside the host network, its neighbour entries only for pod-network
//!   addresses; unicast MACs only;
//! - firewall: only the network's own tables (by construction), for pod-network sources;
//! - sysctls: the allow-list below, on links it may change; store keys: checked syntax,
//!   in the network's own directory (by construction); a key created by one
//!   attachment's call is deleted only by that attachment's calls or by GC;
//! - RECONCILE (`Scope::Node`): the host namespace only, as an ADD without its
//!   attachment (bridge, VXLAN link, uplink routes, store keys it does not own);
//! - CHECK and STATUS change nothing (read-only grants).

use crate::cni::config::{Cluster, Peer};
use crate::mac::Mac;
use crate::node::{stable_hash, Family, Ns, OpError, OpResult, SysctlKey};
use ipnetwork::IpNetwork;
use std::collections::HashSet;
use std::net::IpAddr;

/// Which command the grants are for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// ADD, DEL, CHECK: one attachment.
    Attachment {
        container_id: String,
        ifname: String,
    },
    /// GC: any attachment except these.
    Gc { valid: Vec<(String, String)> },
    /// STATUS: nothing on links.
    Status,
    /// RECONCILE (`wasm-cni reconcile`): node-level work in the host namespace, no
    /// attachment.
    Node,
}

/// The host link name of an attachment: prefix + FNV-1a over (container id, ifname) in
/// hex, as many digits as fit in 15 characters (at most 12: 48 bits; 28 bits with an
/// 8-character prefix). Deterministic, so DEL and GC find it without state.
pub fn attachment_link(prefix: &str, container_id: &str, ifname: &str) -> String {
    let h = stable_hash(container_id, ifname);
    let digits = 15 - prefix.len().min(8);
    let hex = format!("{:016x}", h);
    format!("{prefix}{}", &hex[..digits.min(12)])
}

/// The table that holds every rule of network `network`. Injective, so that networks
/// `a.b`, `a-b` and `a_b` never share (and never delete) each other's table.
pub fn table_name(network: &str) -> String {
    let mut t = String::from("wasm_cni_");
    for c in network.chars() {
        match c {
            c if c.is_ascii_alphanumeric() => t.push(c),
            '_' => t.push_str("__"),
            other => t.push_str(&format!("_{:02x}", other as u32)),
        }
    }
    t
}

/// How the runner names an attachment (store key owners, address records).
pub fn attachment_id(container_id: &str, ifname: &str) -> String {
    format!("{container_id} {ifname}")
}

/// What links an operation wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkOp {
    Create,
    Change,
    Delete,
}

pub struct Grants {
    scope: Scope,
    has_netns: bool,
    bridge: String,
    prefix: String,
    /// At most one per family (the config checks).
    pod_networks: Vec<IpNetwork>,
    host_link: Option<String>,
    created: HashSet<(Ns, String)>,
    /// Host links that carry a default route (the uplink), learnt on first need.
    uplinks: Option<Vec<String>>,
    /// Set for commands that must not change anything (CHECK, STATUS).
    read_only: Option<&'static str>,
    /// `attachment_id` of the call's attachment (ADD, DEL, CHECK).
    attachment: Option<String>,
    /// The MAC the runtime asked for (`request.mac`): the only one `create-veth` may
    /// give a container end.
    requested_mac: Option<Mac>,
    /// The config's cluster keys (peers, node IPs, host network, VXLAN link name).
    cluster: Cluster,
    /// This node's IPs (config `nodeIP`, else the uplink's), learnt on first need.
    node_ips: Option<Vec<IpAddr>>,
}

impl Grants {
    pub fn new(
        scope: Scope,
        has_netns: bool,
        bridge: &str,
        prefix: &str,
        pod_networks: Vec<IpNetwork>,
    ) -> Self {
        let (host_link, attachment) = match &scope {
            Scope::Attachment {
                container_id,
                ifname,
            } => (
                Some(attachment_link(prefix, container_id, ifname)),
                Some(attachment_id(container_id, ifname)),
            ),
            _ => (None, None),
        };
        let read_only = matches!(scope, Scope::Status).then_some("STATUS");
        Grants {
            scope,
            has_netns,
            bridge: bridge.to_string(),
            prefix: prefix.to_string(),
            pod_networks,
            host_link,
            created: HashSet::new(),
            uplinks: None,
            read_only,
            attachment,
            requested_mac: None,
            cluster: Cluster::default(),
            node_ips: None,
        }
    }

    /// The config's cluster keys for this call.
    pub fn set_cluster(&mut self, cluster: Cluster) {
        self.cluster = cluster;
    }

    /// The name the network's VXLAN link must have.
    pub fn vxlan_link(&self) -> &str {
        &self.cluster.vxlan_link
    }

    /// The uplink: the first host link with a default route, once learnt.
    pub fn uplink(&self) -> Option<&str> {
        self.uplinks
            .as_ref()
            .and_then(|u| u.first())
            .map(String::as_str)
    }

    pub fn uplinks_known(&self) -> bool {
        self.uplinks.is_some()
    }

    /// The IPs the config gives this node (`nodeIP`; empty: learn the uplink's).
    pub fn configured_node_ips(&self) -> &[IpAddr] {
        &self.cluster.node_ips
    }

    pub fn node_ips_known(&self) -> bool {
        self.node_ips.is_some()
    }

    /// This node's IPs, IPv4 first, as learnt by the gate.
    pub fn set_node_ips(&mut self, mut ips: Vec<IpAddr>) {
        ips.sort_by_key(IpAddr::is_ipv6);
        self.node_ips = Some(ips);
    }

    /// This node's IPs, or why they are unknown.
    pub fn node_ips(&self) -> OpResult<&[IpAddr]> {
        match self.node_ips.as_deref() {
            Some(ips) if !ips.is_empty() => Ok(ips),
            _ => Err(OpError::failed(format!(
                "this node's IP is unknown: the config has no nodeIP and the uplink ({}) has no global address",
                self.uplink().unwrap_or("none: no default route in the host namespace")
            ))),
        }
    }

    /// Is this `peers` entry this node (one of its IPs is one of this node's)?
    fn is_me(&self, p: &Peer) -> bool {
        self.node_ips
            .as_ref()
            .is_some_and(|mine| p.ips.iter().any(|ip| mine.contains(ip)))
    }

    /// The other nodes: the config's `peers` without this node's entry.
    pub fn peers(&self) -> OpResult<Vec<&Peer>> {
        self.node_ips()?;
        Ok(self
            .cluster
            .peers
            .iter()
            .filter(|p| !self.is_me(p))
            .collect())
    }

    /// This node's pod CIDRs: those of its own `peers` entry (none if not listed).
    pub fn own_pod_cidrs(&self) -> Vec<IpNetwork> {
        self.cluster
            .peers
            .iter()
            .filter(|p| self.is_me(p))
            .flat_map(|p| p.pod_cidrs.iter().copied())
            .collect()
    }

    /// Is `ip` inside the host network of its family (`hostNetwork`/`myHostNetwork`)?
    fn host_network_of(&self, what: &str, ip: IpAddr) -> OpResult<()> {
        let family = Family::of_ip(ip);
        match self
            .cluster
            .host_networks
            .iter()
            .find(|n| Family::of(n) == family)
        {
            Some(n) if n.contains(ip) => Ok(()),
            Some(n) => Err(OpError::denied(format!(
                "{what}: {ip} is outside the host network {n}"
            ))),
            None => Err(OpError::denied(format!(
                "{what}: {ip} is outside the host network (the config has no {} hostNetwork or myHostNetwork)",
                family.name()
            ))),
        }
    }

    /// A route through the uplink (`link` is `uplink()`): added only to a peer's pod
    /// CIDR via that peer's node IP, in the host network (host-gw); removed only inside
    /// a pod network, never over this node's own pod CIDRs, via a host-network gateway
    /// (a departed peer's route).
    pub fn uplink_route(&self, dst: IpNetwork, gw: Option<IpAddr>, adding: bool) -> OpResult<()> {
        let uplink = self.uplink().unwrap_or_default();
        let what = format!("route to {dst} through the uplink {uplink:?}");
        let Some(gw) = gw else {
            return Err(OpError::denied(format!(
                "{what}: a route through the uplink must name a gateway (a peer's node IP)"
            )));
        };
        self.host_network_of(&format!("{what} via {gw}: the gateway"), gw)?;
        let within = |c: &IpNetwork| {
            Family::of(c) == Family::of(&dst)
                && c.contains(dst.network())
                && dst.prefix() >= c.prefix()
        };
        if adding {
            let peers = self.peers()?;
            let Some(owner) = peers.iter().find(|p| p.pod_cidrs.iter().any(within)) else {
                return Err(OpError::denied(format!(
                    "{what}: only a peer's pod CIDR may be routed through the uplink, and {dst} lies in none"
                )));
            };
            if !owner.ips.contains(&gw) {
                return Err(OpError::denied(format!(
                    "{what} via {gw}: {dst} belongs to peer {:?}, whose node IP is {}",
                    owner.name,
                    owner
                        .ips
                        .iter()
                        .find(|ip| Family::of_ip(**ip) == Family::of(&dst))
                        .map_or_else(
                            || format!("not {}", Family::of(&dst).name()),
                            |ip| ip.to_string()
                        )
                )));
            }
            return Ok(());
        }
        let pods = self.pod_network(&what, Family::of(&dst))?;
        if !(pods.contains(dst.network()) && dst.prefix() >= pods.prefix()) {
            return Err(OpError::denied(format!(
                "{what}: outside the pod network {pods}"
            )));
        }
        if let Some(own) = self.own_pod_cidrs().into_iter().find(|c| {
            Family::of(c) == Family::of(&dst)
                && (c.contains(dst.network()) || dst.contains(c.network()))
        }) {
            return Err(OpError::denied(format!(
                "{what}: it overlaps this node's own pod CIDR {own}"
            )));
        }
        Ok(())
    }

    /// May this call create the network's VXLAN link `name` from `local`? (vni and port
    /// ranges are the gate's argument check.)
    pub fn create_vxlan(&self, name: &str, local: IpAddr) -> OpResult<()> {
        let what = format!("create VXLAN link {name:?}");
        if !matches!(self.scope, Scope::Attachment { .. } | Scope::Node) {
            return Err(OpError::denied(format!(
                "{what}: only ADD and RECONCILE create node links"
            )));
        }
        if name != self.cluster.vxlan_link {
            return Err(OpError::denied(format!(
                "{what}: the network has one VXLAN link, named {:?} (config vxlanLink)",
                self.cluster.vxlan_link
            )));
        }
        if !crate::cni::env::valid_ifname(name) {
            return Err(OpError::invalid(format!(
                "{name:?} is not a valid interface name"
            )));
        }
        if self.uplink() == Some(name) || name == "lo" {
            return Err(OpError::denied(format!("{what}: it is the node's uplink")));
        }
        let mine = self.node_ips()?;
        if !mine.contains(&local) {
            return Err(OpError::denied(format!(
                "{what}: local address {local} is not one of this node's IPs ({})",
                mine.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// FDB and neighbour entries go on the network's VXLAN link only.
    pub fn vxlan_entries(&self, what: &str, link: &str) -> OpResult<()> {
        if link != self.cluster.vxlan_link {
            return Err(OpError::denied(format!(
                "{what}: link {link:?} is not the network's VXLAN link ({:?}); FDB and neighbour entries go on it only",
                self.cluster.vxlan_link
            )));
        }
        Ok(())
    }

    /// An FDB entry's remote: a peer's node IP, inside the host network.
    pub fn fdb_remote(&self, what: &str, remote: IpAddr) -> OpResult<()> {
        self.host_network_of(&format!("{what}: VXLAN remote"), remote)?;
        if !self.peers()?.iter().any(|p| p.ips.contains(&remote)) {
            return Err(OpError::denied(format!(
                "{what}: VXLAN remote {remote} is not a peer's node IP"
            )));
        }
        Ok(())
    }

    /// A neighbour entry's address: inside a pod network.
    pub fn neighbor_address(&self, what: &str, address: IpAddr) -> OpResult<()> {
        let pods = self.pod_network(what, Family::of_ip(address))?;
        if !pods.contains(address) {
            return Err(OpError::denied(format!(
                "{what}: {address} is outside the pod network {pods}"
            )));
        }
        Ok(())
    }

    /// The runtime's `request.mac` for this call.
    pub fn set_requested_mac(&mut self, mac: Option<Mac>) {
        self.requested_mac = mac;
    }

    /// A container end may get the MAC the runtime asked for and no other: a guest
    /// choosing freely could give its pod another pod's MAC, which takes that pod's
    /// traffic on the shared bridge.
    pub fn container_mac(&self, mac: Option<Mac>) -> Result<(), OpError> {
        match mac {
            None => Ok(()),
            Some(m) if Some(m) == self.requested_mac => Ok(()),
            Some(m) => Err(OpError::denied(format!(
                "container-mac {m}: only the MAC the runtime asked for (request.mac: {}) may be set",
                self.requested_mac
                    .map_or_else(|| "none".to_string(), |r| r.to_string())
            ))),
        }
    }

    /// Make every change a refusal (`command` names why: CHECK, STATUS).
    pub fn set_read_only(&mut self, command: &'static str) {
        self.read_only = Some(command);
    }

    /// May this call change the node at all?
    pub fn writable(&self, what: &str) -> OpResult<()> {
        match self.read_only {
            Some(cmd) => Err(OpError::denied(format!(
                "{what}: {cmd} is read-only; it may look but not change anything"
            ))),
            None => Ok(()),
        }
    }

    /// The call's attachment as `attachment_id` names it.
    pub fn attachment(&self) -> Option<&str> {
        self.attachment.as_deref()
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    pub fn is_created(&self, ns: Ns, name: &str) -> bool {
        self.created.contains(&(ns, name.to_string()))
    }

    /// Is this a link of this call's own: created by it, or CNI_IFNAME in the container,
    /// or the attachment's host link? (What an ADD result may put addresses on.)
    pub fn owns_link(&self, ns: Ns, name: &str) -> bool {
        self.is_created(ns, name)
            || match ns {
                Ns::Container => {
                    matches!(&self.scope, Scope::Attachment { ifname, .. } if ifname == name)
                }
                Ns::Host => self.host_link.as_deref() == Some(name),
            }
    }

    /// The pod networks addresses, routes and results must lie in (one per family).
    pub fn pod_networks(&self) -> Vec<IpNetwork> {
        self.pod_networks.clone()
    }

    /// Does the pod network of `net`'s family hold the whole of `net`?
    pub fn inside(&self, net: IpNetwork) -> bool {
        self.pod_networks
            .iter()
            .any(|p| p.contains(net.network()) && net.prefix() >= p.prefix())
    }

    /// The shared bridge's MTU is every pod's: only the call that created the bridge
    /// may set it.
    pub fn bridge_mtu(&self, ns: Ns, name: &str) -> OpResult<()> {
        if ns == Ns::Host && name == self.bridge && !self.is_created(ns, name) {
            return Err(OpError::denied(format!(
                "mtu of {name:?}: the bridge serves every pod; only the call that created it may set its MTU"
            )));
        }
        Ok(())
    }

    /// May `name` become a bridge port? Never the shared bridge itself (unless this
    /// call created it): as another bridge's port it would cut off every pod.
    pub fn enslave(&self, name: &str) -> OpResult<()> {
        if name == self.bridge && !self.is_created(Ns::Host, name) {
            return Err(OpError::denied(format!(
                "link {name:?}: the node bridge cannot be made another bridge's port"
            )));
        }
        Ok(())
    }

    /// May this call delete a store key created by attachment `owner`? Its own calls
    /// may, GC may when `owner` is not a valid attachment, nobody else.
    pub fn may_delete_owned(&self, owner: &str) -> OpResult<()> {
        let mine = self.attachment.as_deref() == Some(owner);
        let stale = match &self.scope {
            Scope::Gc { valid } => !valid.iter().any(|(c, i)| attachment_id(c, i) == owner),
            _ => false,
        };
        if mine || stale {
            return Ok(());
        }
        Err(OpError::denied(format!(
            "the key belongs to another attachment ({owner}); only its own calls and GC may delete it"
        )))
    }

    pub fn host_link(&self) -> Option<&str> {
        self.host_link.as_deref()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Does `name` have exactly the shape `attachment_link` gives (prefix + hex digest)?
    /// GC deletes only such links, never another program's links that share a prefix.
    fn is_attachment_link(&self, name: &str) -> bool {
        name.strip_prefix(self.prefix.as_str()).is_some_and(|rest| {
            rest.len() == attachment_link(&self.prefix, "", "").len() - self.prefix.len()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
    }

    /// Record a link created in this call (it may then be changed and deleted).
    pub fn created(&mut self, ns: Ns, name: &str) {
        self.created.insert((ns, name.to_string()));
    }

    /// Does this call need to know the uplinks to decide on `name`? Not for links it
    /// created, nor for the attachment's own host link (a name derived by the runner).
    pub fn needs_uplinks(&self, ns: Ns, name: &str) -> bool {
        ns == Ns::Host
            && self.uplinks.is_none()
            && self.host_link.as_deref() != Some(name)
            && !self.created.contains(&(ns, name.to_string()))
    }

    pub fn set_uplinks(&mut self, names: Vec<String>) {
        self.uplinks = Some(names);
    }

    pub fn namespace(&self, ns: Ns) -> OpResult<()> {
        if ns == Ns::Container && !self.has_netns {
            return Err(OpError::not_found("this call has no container namespace"));
        }
        Ok(())
    }

    /// May this call do `op` on link `name` in `ns`?
    pub fn link(&self, ns: Ns, name: &str, op: LinkOp) -> OpResult<()> {
        self.namespace(ns)?;
        let deny = |why: &str| {
            Err(OpError::denied(format!(
                "link {name:?} in the {ns} namespace: {why}"
            )))
        };
        if !crate::cni::env::valid_ifname(name) {
            return Err(OpError::invalid(format!(
                "{name:?} is not a valid interface name"
            )));
        }
        if self.created.contains(&(ns, name.to_string())) {
            return Ok(());
        }
        match ns {
            Ns::Container => match &self.scope {
                Scope::Attachment { ifname, .. } if ifname == name => Ok(()),
                Scope::Attachment { ifname, .. } => deny(&format!(
                    "only {ifname:?} (CNI_IFNAME) may be used in the container"
                )),
                _ => deny("this command has no container"),
            },
            Ns::Host => {
                if name == "lo" {
                    return deny("the loopback link is never the network's");
                }
                if self
                    .uplinks
                    .as_ref()
                    .is_some_and(|u| u.iter().any(|n| n == name))
                {
                    return deny("it is the node's uplink");
                }
                let node_level = matches!(self.scope, Scope::Attachment { .. } | Scope::Node);
                if name == self.bridge && node_level {
                    return match op {
                        LinkOp::Delete => deny("the node bridge is shared by all pods; only a call that created it may delete it"),
                        _ => Ok(()),
                    };
                }
                if name == self.cluster.vxlan_link && node_level {
                    return match op {
                        LinkOp::Delete => deny("the network's VXLAN link serves every pod; only a call that created it may delete it"),
                        LinkOp::Create => deny("the network's VXLAN link is created by cluster.create-vxlan only"),
                        LinkOp::Change => Ok(()),
                    };
                }
                if self.host_link.as_deref() == Some(name) {
                    return Ok(());
                }
                match &self.scope {
                    Scope::Gc { valid } if self.is_attachment_link(name) && op == LinkOp::Delete => {
                        let in_use = valid
                            .iter()
                            .any(|(c, i)| attachment_link(&self.prefix, c, i) == name);
                        if in_use {
                            deny("it belongs to a valid attachment")
                        } else {
                            Ok(())
                        }
                    }
                    _ => match &self.host_link {
                        Some(own) => deny(&format!(
                            "this attachment's host link is {own:?}; other links belong to other pods or to the node"
                        )),
                        None => deny("not a link of this network"),
                    },
                }
            }
        }
    }

    /// The pod network of `family`, or a refusal naming what is configured.
    fn pod_network(&self, what: &str, family: Family) -> OpResult<IpNetwork> {
        if let Some(p) = self.pod_networks.iter().find(|p| Family::of(p) == family) {
            return Ok(*p);
        }
        Err(OpError::denied(if self.pod_networks.is_empty() {
            format!(
                "{what}: the network config has no podNetwork (or myPodNetwork), so no addresses or routes are granted"
            )
        } else {
            format!(
                "{what}: the network config has no {} pod network (podNetwork: {}), so no {} addresses or routes are granted",
                family.name(),
                self.pod_networks
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                family.name()
            )
        }))
    }

    /// May an address be added to (`remove` false) or removed from `link`? The whole
    /// prefix must lie in the pod network of its family: the kernel adds a connected
    /// route for it, so `200.200.1.1/1` would route half the Internet to the link (and
    /// `fe80::1/64` on a link would take its link-local range).
    pub fn address(&self, ns: Ns, link: &str, addr: IpNetwork, remove: bool) -> OpResult<()> {
        let what = format!("address {addr} on {link:?}");
        self.link(ns, link, LinkOp::Change)?;
        if remove
            && ns == Ns::Host
            && link == self.bridge
            && !self.created.contains(&(ns, link.to_string()))
        {
            return Err(OpError::denied(format!(
                "{what}: the bridge's addresses serve every pod; only a call that created the bridge may remove them"
            )));
        }
        let pods = self.pod_network(&what, Family::of(&addr))?;
        if !(pods.contains(addr.ip()) && addr.prefix() >= pods.prefix()) {
            return Err(OpError::denied(format!(
                "{what}: not inside the pod network {pods}"
            )));
        }
        Ok(())
    }

    /// May this route be added / removed? `gw` is of `dst`'s family (the gate parsed
    /// and checked it).
    pub fn route(
        &self,
        ns: Ns,
        dst: IpNetwork,
        gw: Option<IpAddr>,
        link: Option<&str>,
    ) -> OpResult<()> {
        self.namespace(ns)?;
        let what = format!("route to {dst}");
        match link {
            Some(l) => self.link(ns, l, LinkOp::Change)?,
            // without a link the kernel picks one, maybe the uplink
            None if ns == Ns::Host => {
                return Err(OpError::denied(format!(
                    "{what} in the host namespace: name the link (one this call may change)"
                )))
            }
            None => {}
        }
        let pods = self.pod_network(&what, Family::of(&dst))?;
        let inside = |n: IpNetwork| pods.contains(n.network()) && n.prefix() >= pods.prefix();
        let default_via_pod_gw =
            ns == Ns::Container && dst.prefix() == 0 && gw.is_some_and(|g| pods.contains(g));
        if !(inside(dst) || default_via_pod_gw) {
            return Err(OpError::denied(format!(
                "{what} in the {ns} namespace: outside the pod network {pods}"
            )));
        }
        if ns == Ns::Container {
            if let Some(g) = gw {
                if !pods.contains(g) {
                    return Err(OpError::denied(format!(
                        "{what}: gateway {g} is outside the pod network {pods}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Firewall: sources must lie in the pod network of their family.
    pub fn firewall(&self, net: IpNetwork) -> OpResult<()> {
        let what = format!("firewall rule for {net}");
        let pods = self.pod_network(&what, Family::of(&net))?;
        if !(pods.contains(net.network()) && net.prefix() >= pods.prefix()) {
            return Err(OpError::denied(format!(
                "{what}: outside the pod network {pods}"
            )));
        }
        Ok(())
    }

    /// A sysctl key of an allowed shape, parsed once: `net.ipv4.ip_forward`,
    /// `net.ipv6.conf.all.forwarding`;
    /// `net.ipv4.conf.<link>.{forwarding,rp_filter,proxy_arp,arp_notify}`;
    /// `net.ipv6.conf.<link>.{disable_ipv6,forwarding,accept_ra,accept_dad}`. Which
    /// namespace and link is `sysctl`'s check.
    pub fn sysctl_key(&self, key: &str) -> OpResult<SysctlKey> {
        const PER_LINK_V4: [&str; 4] = ["forwarding", "rp_filter", "proxy_arp", "arp_notify"];
        const PER_LINK_V6: [&str; 4] = ["disable_ipv6", "forwarding", "accept_ra", "accept_dad"];
        SysctlKey::parse(key)
            .filter(|k| match (k.is_forwarding_switch(), k.family()) {
                (true, _) => true,
                (false, Family::V4) => PER_LINK_V4.contains(&k.leaf()),
                (false, Family::V6) => PER_LINK_V6.contains(&k.leaf()),
            })
            .ok_or_else(|| {
                OpError::denied(format!(
                    "sysctl {key}: not on the allow-list (net.ipv4.ip_forward; net.ipv6.conf.all.forwarding; net.ipv4.conf.<link>.{{forwarding,rp_filter,proxy_arp,arp_notify}}; net.ipv6.conf.<link>.{{disable_ipv6,forwarding,accept_ra,accept_dad}})"
                ))
            })
    }

    /// May `key` (granted by `sysctl`) be set to `value` in `ns`? Every key on the
    /// allow-list is an integer, and the kernel reads integers with base 0 and a sign
    /// ("00", "0x0" and "-0" are 0): only plain decimal is taken, so that a value means
    /// what the checks here and in the gate read it as.
    pub fn sysctl_value(&self, ns: Ns, key: &SysctlKey, value: &str) -> OpResult<()> {
        let plain = value == "0"
            || (value.len() <= 9
                && value.starts_with(|c: char| matches!(c, '1'..='9'))
                && value.bytes().all(|b| b.is_ascii_digit()));
        if !plain {
            return Err(OpError::invalid(format!(
                "sysctl {key}: value {value:?} is not a plain decimal integer (like 0 or 1)"
            )));
        }
        let deny = |why: &str| {
            Err(OpError::denied(format!(
                "set sysctl {key} to {value}: {why}"
            )))
        };
        if ns != Ns::Host || key.family() != Family::V6 {
            return Ok(());
        }
        let link = key.link().unwrap_or_default();
        match key.leaf() {
            // a pod's router advertisement accepted on a host link would give the node
            // a default route (or addresses) through that pod, which `::/0` in the host
            // namespace is refused for; per link, `forwarding` 0 makes `accept_ra` 1 take
            // effect
            "accept_ra" if value != "0" => deny(
                "a host link must not accept router advertisements (from pods); only 0 is granted in the host namespace",
            ),
            "forwarding" if key.link().is_some() && value == "0" => deny(
                "with IPv6 forwarding off a host link accepts router advertisements (from pods); only 1 is granted per link in the host namespace",
            ),
            // the same as removing the bridge's IPv6 addresses (every pod's gateway)
            "disable_ipv6"
                if value != "0" && link == self.bridge && !self.is_created(Ns::Host, link) =>
            {
                deny("it drops the bridge's IPv6 addresses, which serve every pod; only a call that created the bridge may")
            }
            _ => Ok(()),
        }
    }

    /// May this call read (or, `write`, set) `key` in namespace `ns`?
    pub fn sysctl(&self, ns: Ns, key: &SysctlKey, write: bool) -> OpResult<()> {
        self.namespace(ns)?;
        let deny = |why: String| Err(OpError::denied(format!("sysctl {key}: {why}")));
        let Some(link) = key.link() else {
            return if ns == Ns::Host {
                Ok(())
            } else {
                deny("only in the host namespace".into())
            };
        };
        if link == "all" || link == "default" {
            return deny(format!(
                "{link:?} is node-wide, not on the allow-list (only links this call may change)"
            ));
        }
        if write {
            self.link(ns, link, LinkOp::Change)?;
        } else if !crate::cni::env::valid_ifname(link) {
            return deny(format!("{link:?} is not a valid interface name"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::OpKind;

    fn add_grants() -> Grants {
        let scope = Scope::Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        Grants::new(
            scope,
            true,
            "cni0",
            "wc",
            vec![
                "200.200.0.0/16".parse().unwrap(),
                "fd00:200::/40".parse().unwrap(),
            ],
        )
    }

    fn denied<T: std::fmt::Debug>(r: OpResult<T>) -> bool {
        matches!(
            r,
            Err(OpError {
                kind: OpKind::Denied,
                ..
            })
        )
    }

    fn a(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn attachment_link_is_short_and_prefixed() {
        let n = attachment_link("wc", "c1", "eth0");
        assert!(n.starts_with("wc") && n.len() <= 15, "{n}");
        assert_ne!(n, attachment_link("wc", "c2", "eth0"));
        assert!(attachment_link("longpref", "c1", "eth0").len() <= 15);
    }

    #[test]
    fn links() {
        let mut g = add_grants();
        let own = g.host_link().unwrap().to_string();
        assert!(g.link(Ns::Host, &own, LinkOp::Create).is_ok());
        assert!(g.link(Ns::Container, "eth0", LinkOp::Create).is_ok());
        assert!(denied(g.link(Ns::Container, "eth1", LinkOp::Create)));
        assert!(
            denied(g.link(Ns::Host, "eth0", LinkOp::Delete)),
            "not this pod's link"
        );
        assert!(denied(g.link(Ns::Host, "lo", LinkOp::Change)));
        let other = attachment_link("wc", "other", "eth0");
        assert!(
            denied(g.link(Ns::Host, &other, LinkOp::Delete)),
            "another pod"
        );
        assert!(g.link(Ns::Host, "cni0", LinkOp::Change).is_ok());
        assert!(denied(g.link(Ns::Host, "cni0", LinkOp::Delete)));
        assert!(
            g.link(Ns::Host, "e%d", LinkOp::Create).is_err(),
            "kernel name templates"
        );
        g.created(Ns::Host, "cni0");
        assert!(g.link(Ns::Host, "cni0", LinkOp::Delete).is_ok());
        // the bridge itself, were it the uplink (a misconfigured "bridge": "eth0")
        let mut g = add_grants();
        g.set_uplinks(vec!["cni0".into()]);
        assert!(denied(g.link(Ns::Host, "cni0", LinkOp::Change)));
    }

    #[test]
    fn gc_may_delete_only_stale_attachment_links() {
        let valid = vec![("keep".into(), "eth0".into())];
        let mut g = Grants::new(Scope::Gc { valid }, false, "cni0", "wc", vec![]);
        assert!(g
            .link(
                Ns::Host,
                &attachment_link("wc", "gone", "eth0"),
                LinkOp::Delete
            )
            .is_ok());
        assert!(denied(g.link(
            Ns::Host,
            &attachment_link("wc", "keep", "eth0"),
            LinkOp::Delete
        )));
        assert!(
            denied(g.link(Ns::Host, "wcfoo", LinkOp::Delete)),
            "the prefix alone is not enough"
        );
        assert!(denied(g.link(Ns::Host, "eth0", LinkOp::Delete)));
        assert!(
            denied(g.link(Ns::Host, "cni0", LinkOp::Change)),
            "GC leaves the bridge alone"
        );
        assert!(g.link(Ns::Container, "eth0", LinkOp::Change).is_err());
        let stale = attachment_link("wc", "gone", "eth1");
        g.set_uplinks(vec![stale.clone()]);
        assert!(
            denied(g.link(Ns::Host, &stale, LinkOp::Delete)),
            "never the uplink, whatever its name"
        );
    }

    #[test]
    fn status_touches_no_link() {
        let g = Grants::new(Scope::Status, false, "cni0", "wc", vec![]);
        assert!(denied(g.link(Ns::Host, "cni0", LinkOp::Change)));
    }

    #[test]
    fn addresses_and_routes_stay_in_the_pod_network() {
        let g = add_grants();
        assert!(g
            .address(Ns::Container, "eth0", a("200.200.1.2/24"), false)
            .is_ok());
        assert!(denied(g.address(
            Ns::Container,
            "eth0",
            a("10.0.0.9/24"),
            false
        )));
        assert!(
            denied(g.address(Ns::Container, "eth0", a("200.200.1.2/1"), false)),
            "a /1 routes outside"
        );
        assert!(denied(g.address(
            Ns::Host,
            "cni0",
            a("200.200.1.1/8"),
            false
        )));
        assert!(g
            .address(Ns::Host, "cni0", a("200.200.1.1/24"), false)
            .is_ok());
        assert!(
            denied(g.address(Ns::Host, "cni0", a("200.200.1.1/24"), true)),
            "other pods' gateway"
        );
        let gw = Some("200.200.1.1".parse().unwrap());
        assert!(g
            .route(Ns::Container, a("0.0.0.0/0"), gw, Some("eth0"))
            .is_ok());
        assert!(denied(g.route(Ns::Host, a("0.0.0.0/0"), gw, Some("cni0"))));
        assert!(
            denied(g.route(Ns::Host, a("200.200.2.0/24"), gw, None)),
            "host routes name their link"
        );
        assert!(g
            .route(Ns::Host, a("200.200.1.0/24"), None, Some("cni0"))
            .is_ok());
        assert!(denied(g.route(Ns::Container, a("8.8.8.0/24"), gw, None)));
        let outside_gw = Some("10.0.0.1".parse().unwrap());
        assert!(denied(g.route(
            Ns::Container,
            a("0.0.0.0/0"),
            outside_gw,
            None
        )));
        assert!(g.firewall(a("200.200.1.0/24")).is_ok());
        assert!(denied(g.firewall(a("10.0.0.0/16"))));
    }

    #[test]
    fn ipv6_follows_the_same_rules() {
        let g = add_grants();
        let gw6 = Some("fd00:200:1::1".parse().unwrap());
        g.address(Ns::Container, "eth0", a("fd00:200:1::2/64"), false)
            .unwrap();
        for (ns, link, addr, why) in [
            (Ns::Container, "eth0", "fd00:300::2/64", "outside"),
            (Ns::Container, "eth0", "fd00:200:1::2/32", "prefix wider"),
            (Ns::Container, "eth0", "fe80::2/64", "link-local"),
            (Ns::Host, "cni0", "fe80::1/64", "link-local on the bridge"),
            (Ns::Host, "eth0", "fd00:200:1::9/64", "not this call's link"),
        ] {
            assert!(denied(g.address(ns, link, a(addr), false)), "{why}");
        }
        assert!(g.route(Ns::Container, a("::/0"), gw6, Some("eth0")).is_ok());
        assert!(denied(g.route(Ns::Host, a("::/0"), gw6, Some("cni0"))));
        assert!(denied(g.route(
            Ns::Host,
            a("fe80::/10"),
            None,
            Some("cni0")
        )));
        assert!(denied(g.route(
            Ns::Host,
            a("fe80::/64"),
            None,
            Some("cni0")
        )));
        assert!(g
            .route(Ns::Host, a("fd00:200:1::/64"), None, Some("cni0"))
            .is_ok());
        assert!(denied(g.route(
            Ns::Container,
            a("::/0"),
            Some("fe80::1".parse().unwrap()),
            Some("eth0")
        )));
        assert!(g.firewall(a("fd00:200:1::/64")).is_ok());
        assert!(denied(g.firewall(a("fd00::/8"))));
        // a single-stack IPv4 network grants nothing of IPv6
        let v4 = Grants::new(
            Scope::Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into(),
            },
            true,
            "cni0",
            "wc",
            vec![a("200.200.0.0/16")],
        );
        let e = v4
            .address(Ns::Container, "eth0", a("fd00:200:1::2/64"), false)
            .unwrap_err();
        assert!(e.message.contains("no IPv6 pod network"), "{e}");
    }

    #[test]
    fn sysctl_allow_list() {
        let g = add_grants();
        // the shape (parsed once, typed), then the namespace and link
        let check = |ns, key: &str, write| -> OpResult<SysctlKey> {
            let k = g.sysctl_key(key)?;
            g.sysctl(ns, &k, write).map(|_| k)
        };
        let k = check(Ns::Host, "net.ipv4.ip_forward", true).unwrap();
        assert!(k.is_forwarding_switch());
        assert_eq!(
            k.proc_path(),
            std::path::Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert!(denied(check(Ns::Container, "net.ipv4.ip_forward", true)));
        let k = check(Ns::Host, "net.ipv4.conf.cni0.forwarding", true).unwrap();
        assert_eq!((k.link(), k.leaf()), (Some("cni0"), "forwarding"));
        assert_eq!(
            k.proc_path(),
            std::path::Path::new("/proc/sys/net/ipv4/conf/cni0/forwarding")
        );
        let k = check(Ns::Container, "net.ipv6.conf.eth0.disable_ipv6", true).unwrap();
        assert_eq!(k.family(), Family::V6);
        assert!(denied(check(
            Ns::Host,
            "net.ipv4.conf.eth0.forwarding",
            true
        )));
        assert!(denied(check(
            Ns::Host,
            "net.ipv4.conf.all.forwarding",
            true
        )));
        assert!(denied(check(
            Ns::Host,
            "net.ipv4.conf.all.forwarding",
            false
        )));
        // IPv6: the node-wide switch in the host only, per link on links it may change
        let k = check(Ns::Host, "net.ipv6.conf.all.forwarding", true).unwrap();
        assert!(k.is_forwarding_switch());
        assert_eq!((k.family(), k.link()), (Family::V6, None));
        assert_eq!(
            k.proc_path(),
            std::path::Path::new("/proc/sys/net/ipv6/conf/all/forwarding")
        );
        assert!(denied(check(
            Ns::Container,
            "net.ipv6.conf.all.forwarding",
            true
        )));
        for leaf in ["forwarding", "accept_ra", "accept_dad", "disable_ipv6"] {
            let k = check(Ns::Host, &format!("net.ipv6.conf.cni0.{leaf}"), true).unwrap();
            assert_eq!((k.family(), k.leaf()), (Family::V6, leaf));
            assert!(denied(check(
                Ns::Host,
                &format!("net.ipv6.conf.eth0.{leaf}"),
                true
            )));
        }
        assert!(denied(check(
            Ns::Host,
            "net.ipv6.conf.default.forwarding",
            true
        )));
        assert!(denied(check(
            Ns::Host,
            "net.ipv6.conf.cni0.use_tempaddr",
            true
        )));
        assert!(denied(check(Ns::Host, "kernel.panic", true)));
        assert!(check(Ns::Host, "net.ipv4.conf.cni0/../../kernel.x", true).is_err());
    }
}
