//! An in-memory node for `wasm-cni simulate`: links, addresses, routes, sysctls,
//! firewall rules, the VXLAN link with its FDB, neighbours and the store, answering
//! like the kernel for what it covers
//! (EEXIST on a second create, ENODEV for a missing link, ENETDOWN for a route on a down
//! link, ENETUNREACH for a gateway no route reaches). It is serialized to the session
//! file between calls, so ADD pod-1, ADD pod-2, DEL pod-1 build on each other.
//!
//! Deterministic on purpose: link indexes count up, MACs are a hash of namespace and
//! name, nothing depends on time, so the same session gives byte-for-byte the same output.

use crate::mac::Mac;
use crate::node::PlainRoute as Route;
use crate::node::{
    stable_hash, Family, FdbEntry, LinkInfo, NeighborEntry, Node, Ns, OpError, OpResult, RouteSpec,
    SavedAddress, SavedRoute, StoreUsage, SysctlKey, SysctlValue, VxlanSpec,
};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What kind of link (the kernel's `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Loopback,
    Device,
    Bridge,
    Veth,
    Vxlan,
}

/// A VXLAN link's tunnel settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vxlan {
    pub vni: u32,
    pub port: u16,
    pub local: String,
}

/// A permanent FDB entry of a VXLAN link, as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fdb {
    pub mac: String,
    pub remote: String,
}

/// A permanent neighbour entry, as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    pub address: String,
    pub mac: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Link {
    pub index: u32,
    pub kind: Kind,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    /// The bridge it is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// A veth's other end: (namespace key, name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<(String, String)>,
    /// Addresses, CIDR text, in the order added.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// A VXLAN link's tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<Vxlan>,
    /// A VXLAN link's permanent FDB entries, in the order added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fdb: Vec<Fdb>,
    /// Permanent neighbour entries, in the order added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<Neighbor>,
}

impl Link {
    /// The kernel flushes a link's neighbours of `family` (permanent ones too) when it
    /// stops doing IP of that family there: link down, last IPv4 address removed,
    /// IPv6 disabled or MTU below 1280.
    fn flush_neighbors(&mut self, family: Option<Family>) {
        self.neighbors
            .retain(|n| family.is_some_and(|f| (f == Family::V6) != n.address.contains(':')));
    }
}

/// One network namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Namespace {
    pub links: BTreeMap<String, Link>,
    /// Routes added explicitly (connected routes are derived from addresses).
    pub routes: Vec<Route>,
    pub sysctls: BTreeMap<String, String>,
}

/// The whole simulated node; the session file is this, as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct World {
    /// `host`, and `pod:<container id>` for each container namespace.
    pub namespaces: BTreeMap<String, Namespace>,
    pub next_index: u32,
    /// nftables tables: table -> chain -> rule (an IPv6 table is keyed `ip6 <table>`) (each chain holds one rule set, rewritten
    /// whole, like the runner's firewall module does).
    pub firewall: BTreeMap<String, BTreeMap<String, String>>,
    /// The network's store.
    pub store: BTreeMap<String, String>,
    /// The attachment that created each owned store key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub store_owners: BTreeMap<String, String>,
    /// The runner's record of live attachments' addresses: address -> attachment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, String>,
    /// The guest (digest) that set up each live attachment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub guests: BTreeMap<String, String>,
    /// The last ADD result per attachment (`container/ifname`), which a runtime would
    /// cache and send back as `prevResult` with CHECK and DEL.
    #[serde(default)]
    pub results: BTreeMap<String, serde_json::Value>,
    /// The network's lock: whether the call is inside it, and how often it entered
    /// (the call's state, not the node's: never saved). No other call contends.
    #[serde(skip)]
    pub locked: bool,
    #[serde(skip)]
    pub lock_entries: u32,
}

pub const HOST: &str = "host";

/// The namespace key of a container.
pub fn pod_ns(container_id: &str) -> String {
    format!("pod:{container_id}")
}

fn mac_for(ns: &str, name: &str) -> String {
    let b = stable_hash(ns, name).to_be_bytes();
    // locally administered, unicast, like the kernel's random MACs
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        (b[0] & 0xfe) | 0x02,
        b[1],
        b[2],
        b[3],
        b[4],
        b[5]
    )
}

impl World {
    /// A fresh node: `lo`, and `eth0` with `node_ip` and a default route via `gateway`
    /// (of the same family).
    pub fn new(node_ip: IpNetwork, gateway: IpAddr) -> World {
        let mut w = World {
            next_index: 1,
            ..World::default()
        };
        let mut host = Namespace::default();
        // the IPv6 switch is absent while off (see `sysctl_get`): the state (and
        // `simulate`'s output) of an IPv4 network stays what it was
        host.sysctls
            .insert(SysctlKey::IP_FORWARD.into(), "0".into());
        w.namespaces.insert(HOST.into(), host);
        w.add_link(HOST, "lo", Kind::Loopback, 65536);
        w.add_link(HOST, "eth0", Kind::Device, 1500);
        let host = w.namespaces.get_mut(HOST).expect("just added");
        for (name, addr) in [
            ("lo", "127.0.0.1/8".to_string()),
            ("eth0", node_ip.to_string()),
        ] {
            let l = host.links.get_mut(name).expect("just added");
            l.up = true;
            l.addresses.push(addr);
        }
        host.routes.push(Route {
            destination: default_route(Family::of(&node_ip)).into(),
            gateway: Some(gateway.to_string()),
            link: "eth0".into(),
        });
        w
    }

    /// Another address of the node on `eth0`, and the default route of its family via
    /// `gateway` (a dual-stack node).
    pub fn add_node_address(&mut self, node_ip: IpNetwork, gateway: IpAddr) {
        if let Some(host) = self.namespaces.get_mut(HOST) {
            if let Some(l) = host.links.get_mut("eth0") {
                l.addresses.push(node_ip.to_string());
            }
            host.routes.push(Route {
                destination: default_route(Family::of(&node_ip)).into(),
                gateway: Some(gateway.to_string()),
                link: "eth0".into(),
            });
        }
    }

    /// A container namespace with its `lo` (what the runtime creates before ADD).
    pub fn ensure_pod_ns(&mut self, key: &str) {
        if !self.namespaces.contains_key(key) {
            self.namespaces.insert(key.into(), Namespace::default());
            self.add_link(key, "lo", Kind::Loopback, 65536);
            let l = self
                .namespaces
                .get_mut(key)
                .and_then(|n| n.links.get_mut("lo"));
            if let Some(l) = l {
                l.up = true;
                l.addresses.push("127.0.0.1/8".into());
            }
        }
    }

    /// The runtime destroyed a container namespace: its links go, and with them the
    /// host ends of their veths (as the kernel does).
    pub fn remove_ns(&mut self, key: &str) {
        if let Some(ns) = self.namespaces.remove(key) {
            for l in ns.links.values() {
                if let Some((pns, pname)) = &l.peer {
                    self.drop_link(pns, pname);
                }
            }
        }
    }

    fn add_link(&mut self, ns: &str, name: &str, kind: Kind, mtu: u32) -> &mut Link {
        let index = self.next_index;
        self.next_index += 1;
        let n = self.namespaces.entry(ns.into()).or_default();
        n.links.insert(
            name.into(),
            Link {
                index,
                kind,
                mac: if kind == Kind::Loopback {
                    "00:00:00:00:00:00".into()
                } else {
                    mac_for(ns, name)
                },
                mtu,
                up: false,
                master: None,
                peer: None,
                addresses: Vec::new(),
                vxlan: None,
                fdb: Vec::new(),
                neighbors: Vec::new(),
            },
        );
        n.links.get_mut(name).expect("just inserted")
    }

    /// Remove a link with its routes, its addresses and its ports' attachment.
    fn drop_link(&mut self, ns: &str, name: &str) -> Option<Link> {
        let n = self.namespaces.get_mut(ns)?;
        let l = n.links.remove(name)?;
        n.routes.retain(|r| r.link != name);
        // per-link sysctls (net.ipv4.conf.<link>.x) go with the link
        n.sysctls
            .retain(|k, _| SysctlKey::parse(k).is_none_or(|k| k.link() != Some(name)));
        for other in n.links.values_mut() {
            if other.master.as_deref() == Some(name) {
                other.master = None;
            }
        }
        Some(l)
    }

    /// Connected routes: the network of each address (not /32) on an up link.
    fn connected(ns: &Namespace) -> Vec<Route> {
        let mut out = Vec::new();
        for (name, l) in &ns.links {
            if !l.up || l.kind == Kind::Loopback {
                continue;
            }
            for a in &l.addresses {
                if let Ok(n) = a.parse::<IpNetwork>() {
                    if n.prefix() < Family::of(&n).max_prefix() {
                        let net = crate::node::network_of(n);
                        out.push(Route {
                            destination: net.to_string(),
                            gateway: None,
                            link: name.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    fn routes_of(ns: &Namespace) -> Vec<Route> {
        let mut all = Self::connected(ns);
        all.extend(ns.routes.iter().cloned());
        // IPv4 first, as the kernel backend lists them
        all.sort_by_key(|r| r.destination.contains(':'));
        all
    }
}

/// The default route's destination of `family`.
fn default_route(family: Family) -> &'static str {
    match family {
        Family::V4 => "0.0.0.0/0",
        Family::V6 => "::/0",
    }
}

/// The model as a `Node`: the host namespace and the current call's container.
pub struct Model {
    pub world: World,
    /// The namespace key CNI_NETNS stands for in this call, if any.
    pub container: Option<String>,
}

impl Model {
    fn key(&self, ns: Ns) -> OpResult<String> {
        match ns {
            Ns::Host => Ok(HOST.into()),
            Ns::Container => self
                .container
                .clone()
                .ok_or_else(|| OpError::not_found("no container namespace in this call (ENOENT)")),
        }
    }

    fn space(&mut self, ns: Ns) -> OpResult<&mut Namespace> {
        let k = self.key(ns)?;
        self.world
            .namespaces
            .get_mut(&k)
            .ok_or_else(|| OpError::not_found(format!("namespace {k} is gone (ENOENT)")))
    }

    fn link(&mut self, ns: Ns, name: &str) -> OpResult<&mut Link> {
        self.space(ns)?.links.get_mut(name).ok_or_else(|| {
            OpError::from_errno(
                libc::ENODEV,
                format!("link {name:?} not found in the {ns} namespace (ENODEV)"),
            )
        })
    }

    fn info(name: &str, l: &Link, masters: &BTreeMap<String, Link>) -> LinkInfo {
        LinkInfo {
            name: name.into(),
            index: l.index,
            mac: l.mac.clone(),
            mtu: l.mtu,
            up: l.up,
            master: l
                .master
                .as_ref()
                .and_then(|m| masters.get(m))
                .map(|m| m.index),
        }
    }

    /// IPv6 is off on a host link: disabled, or an MTU below IPv6's minimum.
    fn ipv6_off(&mut self, name: &str) -> OpResult<bool> {
        let off = SysctlKey::per_link(Family::V6, name, "disable_ipv6");
        let disabled = self.sysctl_get(Ns::Host, &off).is_ok_and(|v| v == "1");
        Ok(disabled || self.link(Ns::Host, name)?.mtu < 1280)
    }

    fn exists(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        if self.space(ns)?.links.contains_key(name) {
            return Err(OpError::from_errno(
                libc::EEXIST,
                format!("link {name:?} already exists in the {ns} namespace (EEXIST)"),
            ));
        }
        Ok(())
    }
}

fn route_text(r: &RouteSpec) -> String {
    let mut s = r.destination.to_string();
    if let Some(g) = r.gateway {
        s.push_str(&format!(" via {g}"));
    }
    if let Some(l) = &r.link {
        s.push_str(&format!(" dev {l}"));
    }
    s
}

impl Node for Model {
    fn create_vxlan(&mut self, spec: &VxlanSpec) -> OpResult<LinkInfo> {
        let name = spec.name.as_str();
        self.exists(Ns::Host, name)?;
        if spec.vni >= 1 << 24 {
            return Err(OpError::from_errno(
                libc::ERANGE,
                format!(
                    "create VXLAN link {name:?}: VNI {} is over 16777215 (ERANGE)",
                    spec.vni
                ),
            ));
        }
        if let Some(m) = spec.mtu.filter(|m| !(68..=65535).contains(m)) {
            return Err(OpError::from_errno(
                libc::EINVAL,
                format!("create VXLAN link {name:?}: MTU {m} is outside 68..65535 (EINVAL)"),
            ));
        }
        // port 0 is the kernel's default port
        let port = if spec.port == 0 { 8472 } else { spec.port };
        let family = Family::of_ip(spec.local);
        // the kernel takes one VXLAN link per VNI, port and family in a namespace
        let taken = self.space(Ns::Host)?.links.iter().find(|(_, l)| {
            l.vxlan.as_ref().is_some_and(|v| {
                v.vni == spec.vni
                    && v.port == port
                    && v.local.parse().is_ok_and(|ip| Family::of_ip(ip) == family)
            })
        });
        if let Some((other, _)) = taken {
            return Err(OpError::from_errno(
                libc::EEXIST,
                format!(
                    "create VXLAN link {name:?}: {other:?} has VNI {} on port {port} already (EEXIST)",
                    spec.vni
                ),
            ));
        }
        // the runner's default MTU leaves room for the encapsulation on a 1500 uplink
        let mtu = spec.mtu.unwrap_or(match family {
            Family::V4 => 1450,
            Family::V6 => 1430,
        });
        let l = self.world.add_link(HOST, name, Kind::Vxlan, mtu);
        l.vxlan = Some(Vxlan {
            vni: spec.vni,
            port,
            local: spec.local.to_string(),
        });
        if let Some(m) = spec.mac {
            l.mac = m.to_string();
        }
        let l = l.clone();
        Ok(Self::info(name, &l, &BTreeMap::new()))
    }

    fn list_fdb(&mut self, link: &str) -> OpResult<Vec<FdbEntry>> {
        Ok(self
            .link(Ns::Host, link)?
            .fdb
            .iter()
            .filter_map(|f| {
                Some(FdbEntry {
                    mac: f.mac.parse().ok()?,
                    remote: f.remote.parse().ok()?,
                })
            })
            .collect())
    }

    fn add_fdb(&mut self, link: &str, entry: &FdbEntry) -> OpResult<()> {
        let (mac, remote) = (entry.mac.to_string(), entry.remote);
        let what = format!("FDB entry {mac} dst {remote} on {link:?}");
        let l = self
            .link(Ns::Host, link)
            .map_err(|e| e.context(format!("add FDB entry {mac} dst {remote}")))?;
        // the kernel's answer differs per link type; the gate allows FDB entries only
        // on the network's VXLAN link, so the model keeps them only there
        let Some(v) = &l.vxlan else {
            return Err(OpError::from_errno(
                libc::EOPNOTSUPP,
                format!("{what}: {link:?} is not a VXLAN link (EOPNOTSUPP)"),
            ));
        };
        let local_v6 = v.local.contains(':');
        if local_v6 != remote.is_ipv6() {
            return Err(OpError::from_errno(
                libc::EAFNOSUPPORT,
                format!(
                    "{what}: the remote is not of the family of the link's local address {} (EAFNOSUPPORT)",
                    v.local
                ),
            ));
        }
        // the kernel keys the table by MAC: a second remote for it is refused too
        if let Some(f) = l.fdb.iter().find(|f| f.mac == mac) {
            return Err(OpError::from_errno(
                libc::EEXIST,
                format!(
                    "{what}: {link:?} has an entry for {mac} (dst {}) (EEXIST)",
                    f.remote
                ),
            ));
        }
        l.fdb.push(Fdb {
            mac,
            remote: remote.to_string(),
        });
        Ok(())
    }

    fn remove_fdb(&mut self, link: &str, entry: &FdbEntry) -> OpResult<()> {
        let want = Fdb {
            mac: entry.mac.to_string(),
            remote: entry.remote.to_string(),
        };
        let l = self
            .link(Ns::Host, link)
            .map_err(|e| e.context(format!("remove FDB entry {} dst {}", want.mac, want.remote)))?;
        let before = l.fdb.len();
        l.fdb.retain(|f| *f != want);
        if l.fdb.len() == before {
            return Err(OpError::from_errno(
                libc::ENOENT,
                format!(
                    "FDB entry {} dst {} on {link:?}: not found (ENOENT)",
                    want.mac, want.remote
                ),
            ));
        }
        Ok(())
    }

    fn list_neighbors(&mut self, link: &str) -> OpResult<Vec<NeighborEntry>> {
        let mut v: Vec<NeighborEntry> = self
            .link(Ns::Host, link)?
            .neighbors
            .iter()
            .filter_map(|n| {
                Some(NeighborEntry {
                    address: n.address.parse().ok()?,
                    mac: n.mac.parse().ok()?,
                })
            })
            .collect();
        v.sort_by_key(|n| n.address.is_ipv6());
        Ok(v)
    }

    fn add_neighbor(&mut self, link: &str, entry: &NeighborEntry) -> OpResult<()> {
        let (address, mac) = (entry.address.to_string(), entry.mac.to_string());
        let what = format!("neighbour {address} lladdr {mac} on {link:?}");
        let ctx = |e: OpError| e.context(format!("add neighbour {address} lladdr {mac}"));
        if entry.address.is_ipv6() && self.ipv6_off(link).map_err(ctx)? {
            return Err(OpError::from_errno(
                libc::EINVAL,
                format!("{what}: IPv6 is disabled on the link (EINVAL)"),
            ));
        }
        let l = self.link(Ns::Host, link).map_err(ctx)?;
        if let Some(n) = l.neighbors.iter().find(|n| n.address == address) {
            return Err(OpError::from_errno(
                libc::EEXIST,
                format!(
                    "{what}: {link:?} has an entry for {address} (lladdr {}) (EEXIST)",
                    n.mac
                ),
            ));
        }
        l.neighbors.push(Neighbor { address, mac });
        Ok(())
    }

    fn remove_neighbor(&mut self, link: &str, address: IpAddr) -> OpResult<NeighborEntry> {
        let text = address.to_string();
        let l = self
            .link(Ns::Host, link)
            .map_err(|e| e.context(format!("remove neighbour {text}")))?;
        let not_found = || {
            OpError::from_errno(
                libc::ENOENT,
                format!("neighbour {text} on {link:?}: not found (ENOENT)"),
            )
        };
        let i = l
            .neighbors
            .iter()
            .position(|n| n.address == text)
            .ok_or_else(not_found)?;
        let n = l.neighbors.remove(i);
        let mac: Mac = n
            .mac
            .parse()
            .map_err(|e| OpError::failed(format!("neighbour {text} on {link:?}: {e}")))?;
        Ok(NeighborEntry { address, mac })
    }

    fn get_link(&mut self, ns: Ns, name: &str) -> OpResult<Option<LinkInfo>> {
        let space = self.space(ns)?;
        Ok(space
            .links
            .get(name)
            .map(|l| Self::info(name, l, &space.links)))
    }

    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo> {
        self.exists(Ns::Host, name)?;
        let l = self
            .world
            .add_link(HOST, name, Kind::Bridge, mtu.unwrap_or(1500))
            .clone();
        Ok(Self::info(name, &l, &BTreeMap::new()))
    }

    fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: Option<u32>,
        peer_mac: Option<crate::mac::Mac>,
    ) -> OpResult<(LinkInfo, LinkInfo)> {
        let pod = self.key(Ns::Container)?;
        self.space(Ns::Container)?;
        self.exists(Ns::Host, host)?;
        self.exists(Ns::Container, peer)?;
        let mtu = mtu.unwrap_or(1500);
        let h = self.world.add_link(HOST, host, Kind::Veth, mtu);
        h.peer = Some((pod.clone(), peer.into()));
        let h = h.clone();
        let p = self.world.add_link(&pod, peer, Kind::Veth, mtu);
        p.peer = Some((HOST.into(), host.into()));
        if let Some(m) = peer_mac {
            p.mac = m.to_string();
        }
        let p = p.clone();
        let none = BTreeMap::new();
        Ok((Self::info(host, &h, &none), Self::info(peer, &p, &none)))
    }

    fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()> {
        let kind = self.link(Ns::Host, bridge)?.kind;
        if kind != Kind::Bridge {
            return Err(OpError::invalid(format!(
                "{bridge:?} is not a bridge (EOPNOTSUPP)"
            )));
        }
        self.link(Ns::Host, name)?.master = Some(bridge.into());
        Ok(())
    }

    fn unset_master(&mut self, name: &str) -> OpResult<()> {
        self.link(Ns::Host, name)?.master = None;
        Ok(())
    }

    fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.link(ns, name)?.up = true;
        Ok(())
    }

    fn set_down(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        let l = self.link(ns, name)?;
        l.up = false;
        // the kernel flushes a link's IPv6 addresses when it goes down (keep_addr_on_down
        // is 0), and the IPv6 routes through it, and its neighbours of both families
        l.addresses.retain(|a| !a.contains(':'));
        l.flush_neighbors(None);
        self.space(ns)?
            .routes
            .retain(|r| !(r.link == name && r.destination.contains(':')));
        Ok(())
    }

    fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()> {
        let l = self.link(ns, name)?;
        l.mtu = mtu;
        if mtu < 1280 {
            // too small for IPv6: the kernel drops the link's IPv6 addresses,
            // neighbours and the routes through it
            l.addresses.retain(|a| !a.contains(':'));
            l.flush_neighbors(Some(Family::V6));
            self.space(ns)?
                .routes
                .retain(|r| !(r.link == name && r.destination.contains(':')));
        }
        Ok(())
    }

    fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        let key = self.key(ns)?;
        self.link(ns, name)?;
        let l = self.world.drop_link(&key, name).expect("checked above");
        // a veth goes with its peer
        if let Some((pns, pname)) = l.peer {
            self.world.drop_link(&pns, &pname);
        }
        Ok(())
    }

    fn list_addresses(&mut self, ns: Ns, link: &str) -> OpResult<Vec<IpNetwork>> {
        let mut v: Vec<IpNetwork> = self
            .link(ns, link)?
            .addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        v.sort_by_key(|n| n.is_ipv6());
        Ok(v)
    }

    fn add_address(&mut self, ns: Ns, link: &str, addr: IpNetwork) -> OpResult<()> {
        if addr.is_ipv6() {
            let off = SysctlKey::per_link(Family::V6, link, "disable_ipv6");
            if self.sysctl_get(ns, &off).is_ok_and(|v| v == "1") {
                return Err(OpError::from_errno(
                    libc::EACCES,
                    format!("address {addr} on {link:?}: IPv6 is disabled on the link (EACCES)"),
                ));
            }
        }
        let l = self.link(ns, link)?;
        let text = addr.to_string();
        // IPv6: the same address with another prefix is the same address
        let same = |a: &String| {
            *a == text
                || (addr.is_ipv6() && a.parse::<IpNetwork>().is_ok_and(|n| n.ip() == addr.ip()))
        };
        if l.addresses.iter().any(same) {
            return Err(OpError::from_errno(
                libc::EEXIST,
                format!("address {text} already on {link:?} (EEXIST)"),
            ));
        }
        l.addresses.push(text);
        Ok(())
    }

    fn remove_address(&mut self, ns: Ns, link: &str, addr: IpNetwork) -> OpResult<SavedAddress> {
        let l = self.link(ns, link)?;
        let text = addr.to_string();
        let before = l.addresses.len();
        l.addresses.retain(|a| a != &text);
        if l.addresses.len() == before {
            return Err(OpError::from_errno(
                libc::EADDRNOTAVAIL,
                format!("address {text} is not on {link:?} (EADDRNOTAVAIL)"),
            ));
        }
        if addr.is_ipv4() && !l.addresses.iter().any(|a| !a.contains(':')) {
            // the last IPv4 address gone, the kernel stops IPv4 on the link
            l.flush_neighbors(Some(Family::V4));
        }
        Ok(SavedAddress::Plain(text))
    }

    fn restore_address(&mut self, ns: Ns, link: &str, saved: &SavedAddress) -> OpResult<()> {
        if let SavedAddress::Plain(text) = saved {
            let l = self.link(ns, link)?;
            if l.addresses.contains(text) {
                return Err(OpError::from_errno(
                    libc::EEXIST,
                    format!("address {text} already on {link:?} (EEXIST)"),
                ));
            }
            l.addresses.push(text.clone());
        }
        Ok(())
    }

    fn save_addresses(
        &mut self,
        ns: Ns,
        link: &str,
        family: Family,
    ) -> OpResult<Vec<SavedAddress>> {
        Ok(self
            .link(ns, link)?
            .addresses
            .iter()
            .filter(|a| a.contains(':') == (family == Family::V6))
            .map(|a| SavedAddress::Plain(a.clone()))
            .collect())
    }

    fn default_route_links(&mut self, ns: Ns) -> OpResult<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for r in World::routes_of(self.space(ns)?) {
            if (r.destination == "0.0.0.0/0" || r.destination == "::/0") && !out.contains(&r.link) {
                out.push(r.link);
            }
        }
        Ok(out)
    }

    fn list_routes(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>> {
        Ok(World::routes_of(self.space(ns)?)
            .into_iter()
            .filter(|r| link.is_none_or(|l| l == r.link))
            .filter_map(|r| {
                Some(RouteSpec {
                    destination: r.destination.parse().ok()?,
                    gateway: r.gateway.as_deref().and_then(|g| g.parse().ok()),
                    link: Some(r.link),
                })
            })
            .collect())
    }

    fn add_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        let what = route_text(r);
        if r.gateway
            .is_some_and(|g| Family::of_ip(g) != Family::of(&r.destination))
        {
            return Err(OpError::invalid(format!(
                "route {what}: the gateway is not of the destination's family (EINVAL)"
            )));
        }
        let space = self.space(ns)?;
        let table = World::routes_of(space);
        if table
            .iter()
            .any(|t| t.destination == r.destination.to_string())
        {
            return Err(OpError::from_errno(
                libc::EEXIST,
                format!("route {what}: a route to {} exists (EEXIST)", r.destination),
            ));
        }
        // the kernel resolves the gateway through a route without a gateway, the
        // longest prefix that holds it
        let reach = |g: IpAddr| {
            // an IPv6 link-local gateway is on the named link by definition
            if crate::node::kernel::netlink::is_link_local(g) {
                if let Some(l) = &r.link {
                    return Some(l.clone());
                }
            }
            table
                .iter()
                .filter(|t| t.gateway.is_none())
                .filter(|t| r.link.as_ref().is_none_or(|l| *l == t.link))
                .filter_map(|t| {
                    let n = t.destination.parse::<IpNetwork>().ok()?;
                    n.contains(g).then_some((n.prefix(), &t.link))
                })
                .max_by_key(|(p, _)| *p)
                .map(|(_, l)| l.clone())
        };
        let link = match (&r.link, r.gateway) {
            (Some(l), _) if !space.links.contains_key(l) => {
                return Err(OpError::from_errno(
                    libc::ENODEV,
                    format!("route {what}: link {l:?} not found (ENODEV)"),
                ))
            }
            (_, Some(g)) => reach(g).ok_or_else(|| {
                // IPv6 answers "No route to host" where IPv4 answers "unreachable"
                let (errno, name) = if g.is_ipv6() {
                    (libc::EHOSTUNREACH, "EHOSTUNREACH")
                } else {
                    (libc::ENETUNREACH, "ENETUNREACH")
                };
                OpError::from_errno(
                    errno,
                    format!("route {what}: gateway {g} is not reachable ({name})"),
                )
            })?,
            (Some(l), None) => l.clone(),
            (None, None) => {
                return Err(OpError::invalid(format!(
                    "route {what}: needs a link or a gateway (EINVAL)"
                )))
            }
        };
        if !space.links.get(&link).is_some_and(|l| l.up) {
            return Err(OpError::from_errno(
                libc::ENETDOWN,
                format!("route {what}: link {link:?} is down (ENETDOWN)"),
            ));
        }
        space.routes.push(Route {
            destination: r.destination.to_string(),
            gateway: r.gateway.map(|g| g.to_string()),
            link,
        });
        Ok(())
    }

    fn unroute(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        self.remove_route(ns, r).map(|_| ())
    }

    fn remove_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<SavedRoute> {
        let space = self.space(ns)?;
        let dst = r.destination.to_string();
        let gw = r.gateway.map(|g| g.to_string());
        let pos = space.routes.iter().position(|t| {
            t.destination == dst
                && (gw.is_none() || t.gateway == gw)
                && r.link.as_ref().is_none_or(|l| *l == t.link)
        });
        match pos {
            Some(i) => Ok(SavedRoute::Plain(space.routes.remove(i))),
            None => Err(OpError::from_errno(
                libc::ESRCH,
                format!("route {}: no such route (ESRCH)", route_text(r)),
            )),
        }
    }

    fn save_routes(&mut self, ns: Ns, family: Family) -> OpResult<Vec<SavedRoute>> {
        Ok(self
            .space(ns)?
            .routes
            .iter()
            .filter(|r| r.destination.contains(':') == (family == Family::V6))
            .cloned()
            .map(SavedRoute::Plain)
            .collect())
    }

    fn restore_route(&mut self, ns: Ns, saved: &SavedRoute) -> OpResult<()> {
        let SavedRoute::Plain(r) = saved else {
            return Ok(());
        };
        let space = self.space(ns)?;
        if !space.links.contains_key(&r.link) {
            return Err(OpError::from_errno(
                libc::ENODEV,
                format!(
                    "route to {}: link {:?} not found (ENODEV)",
                    r.destination, r.link
                ),
            ));
        }
        if space.routes.contains(r) {
            return Err(OpError::from_errno(
                libc::EEXIST,
                format!("route to {} exists (EEXIST)", r.destination),
            ));
        }
        space.routes.push(r.clone());
        Ok(())
    }

    fn save_table(&mut self, family: Family, table: &str) -> OpResult<Option<String>> {
        Ok(self
            .world
            .firewall
            .get(&table_key(family, table))
            .map(|t| serde_json::to_string(t).expect("a map of strings serializes")))
    }

    fn restore_table(&mut self, family: Family, table: &str, saved: Option<&str>) -> OpResult<()> {
        let key = table_key(family, table);
        match saved {
            None => {
                self.world.firewall.remove(&key);
            }
            Some(text) => {
                let t = serde_json::from_str(text)
                    .map_err(|e| OpError::failed(format!("restoring table {key}: {e}")))?;
                self.world.firewall.insert(key, t);
            }
        }
        Ok(())
    }

    fn allow_forward(&mut self, table: &str, net: IpNetwork) -> OpResult<()> {
        let f = Family::of(&net);
        let ip = nft_ip(f);
        self.world
            .firewall
            .entry(table_key(f, table))
            .or_default()
            .insert(
                format!("forward {net}"),
                format!("{ip} saddr {net} accept; {ip} daddr {net} accept"),
            );
        Ok(())
    }

    fn masquerade(&mut self, table: &str, source: IpNetwork, except: &[IpNetwork]) -> OpResult<()> {
        let f = Family::of(&source);
        let ip = nft_ip(f);
        let mut rule = format!("{ip} saddr {source}");
        if !except.is_empty() {
            let set: Vec<String> = except.iter().map(|n| n.to_string()).collect();
            rule.push_str(&format!(" {ip} daddr != {{ {} }}", set.join(", ")));
        }
        rule.push_str(" masquerade");
        self.world
            .firewall
            .entry(table_key(f, table))
            .or_default()
            .insert(format!("postrouting {source}"), rule);
        Ok(())
    }

    fn sysctl_get(&mut self, ns: Ns, key: &SysctlKey) -> OpResult<String> {
        let space = self.space(ns)?;
        if let Some(v) = space.sysctls.get(key.as_str()) {
            return Ok(v.clone());
        }
        if key.is_forwarding_switch() {
            // the IPv6 switch is kept only while on (and a session file of an older
            // runner has none): off, as on a boot
            return Ok("0".into());
        }
        let link_exists = key.link().is_some_and(|l| space.links.contains_key(l));
        if !link_exists {
            return Err(OpError::from_errno(
                libc::ENOENT,
                format!("sysctl {key}: no such key in the {ns} namespace (ENOENT)"),
            ));
        }
        // per-link keys exist while the link does; `forwarding` follows the namespace's
        // switch of its family (the kernel copies it to every device); IPv6 links accept
        // router advertisements and run DAD by default, except that the host links the
        // runner creates take no router advertisements; the others default to 0
        if key.leaf() == "forwarding" {
            let switch = SysctlKey::forwarding_switch(key.family());
            return self.sysctl_get(ns, &switch);
        }
        let on = key.family() == Family::V6
            && match key.leaf() {
                "accept_ra" => ns == Ns::Container,
                "accept_dad" => true,
                _ => false,
            };
        Ok(if on { "1" } else { "0" }.into())
    }

    fn sysctl_set(&mut self, ns: Ns, key: &SysctlKey, value: &str) -> OpResult<()> {
        self.sysctl_get(ns, key)?;
        let space = self.space(ns)?;
        if key.is_forwarding_switch() {
            // the kernel copies the switch into every link's forwarding of its family
            let family = key.family();
            space.sysctls.retain(|k, _| {
                SysctlKey::parse(k).is_none_or(|k| {
                    !(k.family() == family && k.leaf() == "forwarding" && k.link().is_some())
                })
            });
        }
        if key.is_forwarding_switch() && key.family() == Family::V6 && value == "0" {
            space.sysctls.remove(key.as_str());
        } else {
            space.sysctls.insert(key.as_str().into(), value.into());
        }
        if key.family() == Family::V6 && key.leaf() == "disable_ipv6" && value == "1" {
            // the kernel drops the link's IPv6 addresses, neighbours and routes
            let link = key.link().unwrap_or_default().to_string();
            if let Some(l) = space.links.get_mut(&link) {
                l.addresses.retain(|a| !a.contains(':'));
                l.flush_neighbors(Some(Family::V6));
            }
            space
                .routes
                .retain(|r| !(r.link == link && r.destination.contains(':')));
        }
        // a per-link value equal to what the link has anyway is not kept explicitly:
        // the kernel has no such distinction, so neither may the model's state
        if !key.is_forwarding_switch() {
            space.sysctls.remove(key.as_str());
            if self.sysctl_get(ns, key)? != value {
                self.space(ns)?
                    .sysctls
                    .insert(key.as_str().into(), value.into());
            }
        }
        Ok(())
    }

    fn forwarding_values(&mut self, ns: Ns, family: Family) -> OpResult<Vec<SysctlValue>> {
        let names: Vec<String> = self.space(ns)?.links.keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            let key = SysctlKey::per_link(family, &name, "forwarding");
            let value = self.sysctl_get(ns, &key)?;
            out.push(SysctlValue { key, value });
        }
        Ok(out)
    }

    fn lock_enter(
        &mut self,
        _timeout: std::time::Duration,
        _interruptible: bool,
    ) -> OpResult<Option<std::time::Duration>> {
        if self.world.locked {
            return Ok(None);
        }
        self.world.locked = true;
        self.world.lock_entries += 1;
        Ok(Some(std::time::Duration::ZERO))
    }

    fn lock_leave(&mut self) {
        self.world.locked = false;
    }

    fn store_get(&mut self, key: &str) -> OpResult<Option<String>> {
        Ok(self.world.store.get(key).cloned())
    }

    fn store_put(&mut self, key: &str, value: &str) -> OpResult<()> {
        if value.len() > crate::node::MAX_STORE_VALUE {
            return Err(OpError::invalid(format!(
                "store put {key:?}: value of {} bytes is over the {}-byte limit",
                value.len(),
                crate::node::MAX_STORE_VALUE
            )));
        }
        self.world.store.insert(key.into(), value.into());
        Ok(())
    }

    fn store_delete(&mut self, key: &str) -> OpResult<bool> {
        self.world.store_owners.remove(key);
        Ok(self.world.store.remove(key).is_some())
    }

    fn store_owner(&mut self, key: &str) -> OpResult<Option<String>> {
        Ok(self.world.store_owners.get(key).cloned())
    }

    fn store_set_owner(&mut self, key: &str, owner: &str) -> OpResult<()> {
        self.world.store_owners.insert(key.into(), owner.into());
        Ok(())
    }

    fn store_list(&mut self, prefix: &str) -> OpResult<Vec<String>> {
        Ok(self
            .world
            .store
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn store_usage(&mut self) -> OpResult<StoreUsage> {
        Ok(StoreUsage {
            keys: self.world.store.len() as u64,
            bytes: self.world.store.values().map(|v| v.len() as u64).sum(),
        })
    }

    fn address_holder(&mut self, ip: IpAddr) -> OpResult<Option<String>> {
        Ok(self.world.held.get(&ip.to_string()).cloned())
    }

    fn held_addresses(&mut self) -> OpResult<Vec<IpAddr>> {
        Ok(self
            .world
            .held
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect())
    }

    fn hold_addresses(&mut self, attachment: &str, ips: &[IpAddr], guest: &str) -> OpResult<()> {
        self.release_addresses(attachment)?;
        for ip in ips {
            self.world.held.insert(ip.to_string(), attachment.into());
        }
        if !guest.is_empty() {
            self.world.guests.insert(attachment.into(), guest.into());
        }
        Ok(())
    }

    fn guests_in_use(&mut self) -> OpResult<Vec<String>> {
        let mut v: Vec<String> = self.world.guests.values().cloned().collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn release_addresses(&mut self, attachment: &str) -> OpResult<()> {
        self.world.held.retain(|_, a| a != attachment);
        self.world.guests.remove(attachment);
        Ok(())
    }

    fn holders(&mut self) -> OpResult<Vec<String>> {
        let mut v: Vec<String> = self.world.held.values().cloned().collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// The model's key of a firewall table: the name for `ip` (as session files of older
/// runners have it), `ip6 <name>` for IPv6.
fn table_key(family: Family, table: &str) -> String {
    match family {
        Family::V4 => table.to_string(),
        Family::V6 => format!("ip6 {table}"),
    }
}

fn nft_ip(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

/// The node as text: namespaces with links, addresses and routes; firewall; store.
pub fn describe(w: &World) -> String {
    let mut out = String::new();
    for (key, ns) in &w.namespaces {
        out.push_str(&format!("namespace {key}\n"));
        for (name, l) in &ns.links {
            let mut line = format!(
                "  link {name} #{} {:?} {} mtu {} {}",
                l.index,
                l.kind,
                l.mac,
                l.mtu,
                if l.up { "up" } else { "down" }
            )
            .to_lowercase();
            if let Some(m) = &l.master {
                line.push_str(&format!(" master {m}"));
            }
            if let Some((pns, pname)) = &l.peer {
                line.push_str(&format!(" peer {pname}@{pns}"));
            }
            if let Some(v) = &l.vxlan {
                line.push_str(&format!(" vni {} port {} local {}", v.vni, v.port, v.local));
            }
            if !l.addresses.is_empty() {
                line.push_str(&format!(" addr {}", l.addresses.join(" ")));
            }
            out.push_str(&line);
            out.push('\n');
        }
        for (name, l) in &ns.links {
            for f in &l.fdb {
                out.push_str(&format!("  fdb {} dst {} dev {name}\n", f.mac, f.remote));
            }
            for n in &l.neighbors {
                out.push_str(&format!(
                    "  neigh {} lladdr {} dev {name}\n",
                    n.address, n.mac
                ));
            }
        }
        for r in World::routes_of(ns) {
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            out.push_str(&format!("  route {}{via} dev {}\n", r.destination, r.link));
        }
        for (k, v) in &ns.sysctls {
            out.push_str(&format!("  sysctl {k} = {v}\n"));
        }
    }
    for (table, chains) in &w.firewall {
        // an IPv6 table's key names its family already
        if table.starts_with("ip6 ") {
            out.push_str(&format!("firewall table {table}\n"));
        } else {
            out.push_str(&format!("firewall table ip {table}\n"));
        }
        for (chain, rule) in chains {
            out.push_str(&format!("  {chain}: {rule}\n"));
        }
    }
    out.push_str("store\n");
    for (k, v) in &w.store {
        out.push_str(&format!("  {k} = {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::fixtures::{fdb, neigh, vxlan};
    use crate::node::OpKind;

    fn model() -> Model {
        let mut w = World::new("10.0.0.2/24".parse().unwrap(), "10.0.0.1".parse().unwrap());
        w.ensure_pod_ns("pod:c1");
        Model {
            world: w,
            container: Some("pod:c1".into()),
        }
    }

    fn route(dst: &str, gw: Option<&str>, link: Option<&str>) -> RouteSpec {
        RouteSpec {
            destination: dst.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            link: link.map(str::to_string),
        }
    }

    #[test]
    fn answers_like_the_kernel() {
        let mut m = model();
        m.create_bridge("cni0", None).unwrap();
        let e = m.create_bridge("cni0", None).unwrap_err();
        assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
        let e = m.set_up(Ns::Host, "nope").unwrap_err();
        assert_eq!(e.kind, OpKind::NotFound, "{e}");
        // a requested MAC is recorded; without one the model derives one
        let (_, c) = m
            .create_veth(
                "wc2",
                "eth2",
                None,
                Some("0a:58:00:00:00:02".parse().unwrap()),
            )
            .unwrap();
        assert_eq!(c.mac, "0a:58:00:00:00:02");
        let (_, c) = m.create_veth("wc3", "eth3", None, None).unwrap();
        assert_eq!(c.mac, mac_for(&pod_ns("c1"), "eth3"));
        m.create_veth("wc1", "eth0", None, None).unwrap();
        m.add_address(Ns::Container, "eth0", "200.200.1.2/24".parse().unwrap())
            .unwrap();
        // a route on a down link, and via a gateway no route reaches, are refused
        let e = m
            .add_route(
                Ns::Container,
                &route("0.0.0.0/0", Some("200.200.1.1"), Some("eth0")),
            )
            .unwrap_err();
        assert!(e.message.contains("ENETUNREACH"), "{e}");
        m.set_up(Ns::Container, "eth0").unwrap();
        m.add_route(
            Ns::Container,
            &route("0.0.0.0/0", Some("200.200.1.1"), Some("eth0")),
        )
        .unwrap();
        let e = m
            .add_route(
                Ns::Container,
                &route("0.0.0.0/0", Some("200.200.1.1"), Some("eth0")),
            )
            .unwrap_err();
        assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
        // deleting the host end takes the pod end, its addresses and routes along
        m.delete_link(Ns::Host, "wc1").unwrap();
        assert_eq!(m.get_link(Ns::Container, "eth0").unwrap(), None);
        assert!(m.list_routes(Ns::Container, None).unwrap().is_empty());
        assert_eq!(
            m.delete_link(Ns::Host, "wc1").unwrap_err().kind,
            OpKind::NotFound
        );
        assert_eq!(m.default_route_links(Ns::Host).unwrap(), vec!["eth0"]);
    }

    #[test]
    fn per_link_sysctls_live_and_die_with_the_link() {
        let mut m = model();
        m.create_bridge("cni0", None).unwrap();
        let key = &SysctlKey::parse("net.ipv4.conf.cni0.proxy_arp").unwrap();
        m.sysctl_set(Ns::Host, key, "1").unwrap();
        assert_eq!(m.sysctl_get(Ns::Host, key).unwrap(), "1");
        m.delete_link(Ns::Host, "cni0").unwrap();
        assert_eq!(
            m.sysctl_get(Ns::Host, key).unwrap_err().kind,
            OpKind::NotFound
        );
        m.create_bridge("cni0", None).unwrap();
        assert_eq!(m.sysctl_get(Ns::Host, key).unwrap(), "0");
        m.sysctl_set(Ns::Host, &SysctlKey::forwarding_switch(Family::V4), "1")
            .unwrap();
        let fwd = &SysctlKey::per_link(Family::V4, "cni0", "forwarding");
        assert_eq!(m.sysctl_get(Ns::Host, fwd).unwrap(), "1");
    }

    #[test]
    fn a_vanished_namespace_takes_its_veth_host_ends() {
        let mut m = model();
        m.create_veth("wc1", "eth0", None, None).unwrap();
        m.world.remove_ns("pod:c1");
        assert_eq!(m.get_link(Ns::Host, "wc1").unwrap(), None);
    }

    #[test]
    fn a_vxlan_link_is_a_host_link_down_with_the_encapsulation_mtu() {
        let mut m = model();
        let l = m
            .create_vxlan(&vxlan("wcni.1", 1, "10.0.0.2", None))
            .unwrap();
        assert_eq!((l.mtu, l.up, l.master), (1450, false, None));
        assert_eq!(l.mac, mac_for(HOST, "wcni.1"));
        assert_eq!(m.get_link(Ns::Host, "wcni.1").unwrap(), Some(l));
        // the name is taken, by it or by another link
        let e = m
            .create_vxlan(&vxlan("wcni.1", 2, "10.0.0.2", None))
            .unwrap_err();
        assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
        let e = m
            .create_vxlan(&vxlan("eth0", 2, "10.0.0.2", None))
            .unwrap_err();
        assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
        // one link per VNI, port and family, as the kernel has it
        let e = m
            .create_vxlan(&vxlan("vx2", 1, "10.0.0.9", None))
            .unwrap_err();
        assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
        assert!(e.message.contains("\"wcni.1\""), "{e}");
        let mut v6 = vxlan("vx6", 1, "fd00:10::2", None);
        v6.mac = Some("0e:cc:00:00:00:02".parse().unwrap());
        let l6 = m.create_vxlan(&v6).unwrap();
        assert_eq!((l6.mtu, l6.mac.as_str()), (1430, "0e:cc:00:00:00:02"));
        let mut big = vxlan("vx3", 1 << 24, "10.0.0.2", None);
        assert_eq!(
            m.create_vxlan(&big).unwrap_err().kind,
            OpKind::InvalidArgument
        );
        big.vni = 3;
        big.mtu = Some(9000);
        assert_eq!(m.create_vxlan(&big).unwrap().mtu, 9000);
        // addresses and routes on it behave as on any link
        m.add_address(Ns::Host, "wcni.1", "200.200.1.0/32".parse().unwrap())
            .unwrap();
        let r = route("200.200.2.0/32", None, Some("wcni.1"));
        assert_eq!(
            m.add_route(Ns::Host, &r).unwrap_err().kind,
            OpKind::Failed,
            "down"
        );
        m.set_up(Ns::Host, "wcni.1").unwrap();
        m.add_route(Ns::Host, &r).unwrap();
        m.add_route(
            Ns::Host,
            &route("200.200.2.0/24", Some("200.200.2.0"), Some("wcni.1")),
        )
        .unwrap();
        assert_eq!(m.list_routes(Ns::Host, Some("wcni.1")).unwrap().len(), 2);
        let key = SysctlKey::per_link(Family::V6, "wcni.1", "accept_ra");
        assert_eq!(m.sysctl_get(Ns::Host, &key).unwrap(), "0");
    }

    #[test]
    fn fdb_entries_answer_like_the_kernel() {
        let mut m = model();
        m.create_vxlan(&vxlan("wcni.1", 1, "10.0.0.2", None))
            .unwrap();
        m.create_bridge("cni0", None).unwrap();
        let a = fdb("0e:cc:0a:00:00:04", "10.0.0.4");
        m.add_fdb("wcni.1", &a).unwrap();
        let e = m.add_fdb("wcni.1", &a).unwrap_err();
        assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
        assert!(e.message.contains("0e:cc:0a:00:00:04"), "{e}");
        // keyed by MAC: another remote for it is refused too
        let e = m
            .add_fdb("wcni.1", &fdb("0e:cc:0a:00:00:04", "10.0.0.5"))
            .unwrap_err();
        assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
        // the remote's family is the local address's
        let e = m
            .add_fdb("wcni.1", &fdb("0e:cc:0a:00:00:05", "fd00:10::5"))
            .unwrap_err();
        assert_eq!(e.errno, Some(libc::EAFNOSUPPORT), "{e}");
        assert_eq!(e.kind, OpKind::Failed, "{e}");
        let e = m.add_fdb("nope", &a).unwrap_err();
        assert_eq!(e.kind, OpKind::NotFound, "{e}");
        assert!(
            e.message.contains("nope") && e.message.contains("0e:cc:0a:00:00:04"),
            "{e}"
        );
        assert_eq!(m.add_fdb("cni0", &a).unwrap_err().kind, OpKind::Failed);
        let b = fdb("0e:cc:0a:00:00:06", "10.0.0.6");
        m.add_fdb("wcni.1", &b).unwrap();
        assert_eq!(m.list_fdb("wcni.1").unwrap(), vec![a, b]);
        // an entry survives the link going down (the kernel keeps permanent ones)
        m.set_up(Ns::Host, "wcni.1").unwrap();
        m.set_down(Ns::Host, "wcni.1").unwrap();
        assert_eq!(m.list_fdb("wcni.1").unwrap().len(), 2);
        // removal is of the exact entry
        let e = m
            .remove_fdb("wcni.1", &fdb("0e:cc:0a:00:00:04", "10.0.0.9"))
            .unwrap_err();
        assert_eq!(e.kind, OpKind::NotFound, "{e}");
        m.remove_fdb("wcni.1", &a).unwrap();
        assert_eq!(
            m.remove_fdb("wcni.1", &a).unwrap_err().kind,
            OpKind::NotFound
        );
        assert_eq!(m.list_fdb("wcni.1").unwrap(), vec![b]);
        assert!(describe(&m.world).contains("  fdb 0e:cc:0a:00:00:06 dst 10.0.0.6 dev wcni.1\n"));
        // the entries go with the link
        m.delete_link(Ns::Host, "wcni.1").unwrap();
        assert_eq!(m.list_fdb("wcni.1").unwrap_err().kind, OpKind::NotFound);
        m.create_vxlan(&vxlan("wcni.1", 1, "10.0.0.2", None))
            .unwrap();
        assert!(m.list_fdb("wcni.1").unwrap().is_empty());
    }

    #[test]
    fn neighbours_answer_like_the_kernel() {
        let mut m = model();
        m.create_vxlan(&vxlan("wcni.1", 1, "10.0.0.2", None))
            .unwrap();
        let v4 = neigh("200.200.2.0", "0e:cc:0a:00:00:04");
        let v6 = neigh("fd00:200:200:2::", "0e:cc:0a:00:00:04");
        m.add_neighbor("wcni.1", &v6).unwrap();
        m.add_neighbor("wcni.1", &v4).unwrap();
        for dup in [v4, neigh("200.200.2.0", "0e:cc:0a:00:00:05")] {
            let e = m.add_neighbor("wcni.1", &dup).unwrap_err();
            assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
            assert!(e.message.contains("200.200.2.0"), "{e}");
        }
        let e = m.add_neighbor("nope", &v4).unwrap_err();
        assert_eq!(e.kind, OpKind::NotFound, "{e}");
        // IPv4 first
        assert_eq!(m.list_neighbors("wcni.1").unwrap(), vec![v4, v6]);
        let e = m
            .remove_neighbor("wcni.1", "200.200.9.0".parse().unwrap())
            .unwrap_err();
        assert_eq!(e.kind, OpKind::NotFound, "{e}");
        assert_eq!(
            m.remove_neighbor("wcni.1", v6.address).unwrap(),
            v6,
            "the entry as it was"
        );
        assert_eq!(m.list_neighbors("wcni.1").unwrap(), vec![v4]);
        assert!(describe(&m.world)
            .contains("  neigh 200.200.2.0 lladdr 0e:cc:0a:00:00:04 dev wcni.1\n"));
        // the kernel drops the link's neighbours when it goes down...
        m.add_neighbor("wcni.1", &v6).unwrap();
        m.set_up(Ns::Host, "wcni.1").unwrap();
        m.set_down(Ns::Host, "wcni.1").unwrap();
        assert!(m.list_neighbors("wcni.1").unwrap().is_empty());
        // ...its IPv4 ones with its last IPv4 address...
        m.add_address(Ns::Host, "wcni.1", "200.200.1.0/32".parse().unwrap())
            .unwrap();
        m.add_neighbor("wcni.1", &v4).unwrap();
        m.add_neighbor("wcni.1", &v6).unwrap();
        m.remove_address(Ns::Host, "wcni.1", "200.200.1.0/32".parse().unwrap())
            .unwrap();
        assert_eq!(m.list_neighbors("wcni.1").unwrap(), vec![v6]);
        // ...and its IPv6 ones when IPv6 stops there; none can be added then
        m.add_neighbor("wcni.1", &v4).unwrap();
        m.set_mtu(Ns::Host, "wcni.1", 1200).unwrap();
        assert_eq!(m.list_neighbors("wcni.1").unwrap(), vec![v4]);
        let e = m.add_neighbor("wcni.1", &v6).unwrap_err();
        assert_eq!(e.kind, OpKind::InvalidArgument, "{e}");
        m.set_mtu(Ns::Host, "wcni.1", 1450).unwrap();
        m.add_neighbor("wcni.1", &v6).unwrap();
        let off = SysctlKey::per_link(Family::V6, "wcni.1", "disable_ipv6");
        m.sysctl_set(Ns::Host, &off, "1").unwrap();
        assert_eq!(m.list_neighbors("wcni.1").unwrap(), vec![v4]);
        assert_eq!(
            m.add_neighbor("wcni.1", &v6).unwrap_err().kind,
            OpKind::InvalidArgument
        );
        // neighbours of any link; they go with it
        m.create_bridge("cni0", None).unwrap();
        m.add_neighbor("cni0", &v4).unwrap();
        m.delete_link(Ns::Host, "cni0").unwrap();
        m.create_bridge("cni0", None).unwrap();
        assert!(m.list_neighbors("cni0").unwrap().is_empty());
    }

    #[test]
    fn survives_the_session_file() {
        let mut m = model();
        m.create_bridge("cni0", Some(1400)).unwrap();
        m.store_put("last", "200.200.1.2").unwrap();
        m.create_vxlan(&vxlan("wcni.1", 7, "10.0.0.2", None))
            .unwrap();
        m.add_fdb("wcni.1", &fdb("0e:cc:0a:00:00:04", "10.0.0.4"))
            .unwrap();
        m.add_neighbor("wcni.1", &neigh("200.200.2.0", "0e:cc:0a:00:00:04"))
            .unwrap();
        let text = serde_json::to_string(&m.world).unwrap();
        let back: World = serde_json::from_str(&text).unwrap();
        assert_eq!(describe(&back), describe(&m.world));
        assert!(describe(&back).contains(" vxlan "), "{}", describe(&back));
        let mut again = Model {
            world: back,
            container: None,
        };
        assert_eq!(again.list_fdb("wcni.1").unwrap().len(), 1);
        assert_eq!(again.list_neighbors("wcni.1").unwrap().len(), 1);
        // a session file of an older runner, without the new fields, still loads
        let old = r#"{"namespaces":{"host":{"links":{"cni0":{"index":1,"kind":"bridge","mac":"02:00:00:00:00:01","mtu":1500,"up":false}},"routes":[],"sysctls":{}}},"next_index":2,"firewall":{},"store":{}}"#;
        let w: World = serde_json::from_str(old).unwrap();
        assert!(w.namespaces["host"].links["cni0"].fdb.is_empty());
    }
}
