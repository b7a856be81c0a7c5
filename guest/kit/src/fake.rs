//! A node in memory, for policies' native unit tests: [`FakeNode`] implements the kit's
//! [`Node`](crate::policy::Node) (the host calls of the shared commands and of a policy
//! written against it) and records every call, in the order made, in the form
//! `wasm-cni simulate` prints them. It models what a policy's logic depends on (links
//! per namespace, addresses, routes, sysctls, firewall rules, the store; for the
//! inter-node policies this node, its peers, the VXLAN link, FDB and neighbour
//! entries), not the kernel: `simulate` and the runner's tests do that. It does keep
//! the two kernel rules a policy's order of calls depends on: a route's destination is
//! added once, and its gateway must be reachable on its link (a connected address or a
//! gateway-less route there).

use crate::bindings::plugin::cluster::{FdbEntry, Neighbor, Node as ThisNode, Peer};
use crate::bindings::plugin::links::VethPair;
use crate::bindings::plugin::routes::Route;
use crate::bindings::plugin::types::{ErrorKind, HostError, LinkInfo, Netns};
use crate::bindings::policy::Request;
use crate::config::Net;
use crate::ipam::Store;
use crate::policy::Node;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// A store in memory.
#[derive(Default, Debug)]
pub struct MapStore(pub BTreeMap<String, String>);

impl Store for MapStore {
    fn get(&mut self, k: &str) -> Result<Option<String>, String> {
        Ok(self.0.get(k).cloned())
    }
    fn put(&mut self, k: &str, v: &str) -> Result<(), String> {
        self.0.insert(k.into(), v.into());
        Ok(())
    }
    fn delete(&mut self, k: &str) -> Result<bool, String> {
        Ok(self.0.remove(k).is_some())
    }
    fn list(&mut self, p: &str) -> Result<Vec<String>, String> {
        Ok(self
            .0
            .keys()
            .filter(|k| k.starts_with(p))
            .cloned()
            .collect())
    }
}

fn ns_name(ns: Netns) -> &'static str {
    match ns {
        Netns::Host => "host",
        Netns::Container => "container",
    }
}

fn error(kind: ErrorKind, message: String) -> HostError {
    HostError { kind, message }
}

fn opt<T: std::fmt::Debug>(v: &Option<T>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "none".into(),
    }
}

/// The network config of the inter-node policies' tests, dual-stack: host network
/// 10.0.0.0/16 and fd00:10::/64, pod network 200.200.0.0/16 and fd00:200::/32, this
/// node's pod subnets 200.200.1.0/24 and fd00:200:1::/64.
pub const CLUSTER_DUAL: &str = r#"{"cniVersion":"1.0.0","name":"lab",
    "myHostNetwork":["10.0.0.0/16","fd00:10::/64"],
    "myPodNetwork":["200.200.0.0/16","fd00:200::/32"],
    "myPodSubnet":["200.200.1.0/24","fd00:200:1::/64"]}"#;

/// The lab's worker-1 network config, IPv4 only.
pub const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lab","myHostNetwork":"10.0.0.0/16",
    "myPodNetwork":"200.200.0.0/16","myPodSubnet":"200.200.1.0/24"}"#;

/// The same, dual-stack pods on an IPv4 node network.
pub const DUAL: &str = r#"{"cniVersion":"1.0.0","name":"lab","myHostNetwork":"10.0.0.0/16",
    "myPodNetwork":["200.200.0.0/16","fd00:200::/32"],
    "myPodSubnet":["200.200.1.0/24","fd00:200:1::/64"]}"#;

/// An ADD/CHECK/DEL request for the pod `cid`: interface `eth0`, host link `wc-<cid>`,
/// a network namespace, nothing requested, network config `config`.
pub fn request(cid: &str, config: &str) -> Request {
    Request {
        container_id: cid.into(),
        ifname: "eth0".into(),
        host_link: format!("wc-{cid}"),
        has_netns: true,
        args: Vec::new(),
        ips: Vec::new(),
        mac: None,
        config: config.into(),
    }
}

/// A route call's arguments: `host, "10.1.0.0/16" via "10.0.0.1" dev "eth0"`.
fn route_args(ns: Netns, route: &Route) -> String {
    format!(
        "{}, {:?} via {} dev {}",
        ns_name(ns),
        route.destination,
        opt(&route.gateway),
        opt(&route.link)
    )
}

/// A node in memory (see the module's doc).
#[derive(Debug)]
pub struct FakeNode {
    /// Every call, in order: `links.create-veth("wc1", "eth0", none, none)`.
    pub calls: Vec<String>,
    /// Links per namespace (`"host"`, `"container"`), by name.
    pub links: BTreeMap<(&'static str, String), LinkInfo>,
    /// Bridge ports: link -> bridge.
    pub masters: BTreeMap<String, String>,
    /// Addresses per (namespace, link), in CIDR form.
    pub addresses: BTreeMap<(&'static str, String), Vec<String>>,
    /// Routes per namespace: (destination, gateway, link).
    pub routes: Vec<(&'static str, String, Option<String>, Option<String>)>,
    /// Sysctls per (namespace, key). Host `net.ipv4.ip_forward` and
    /// `net.ipv6.conf.all.forwarding` start at `0`; a link's keys exist while it does.
    pub sysctls: BTreeMap<(&'static str, String), String>,
    /// Firewall rules, as `allow-forward <net>` and `masquerade <src> except <a,b>`.
    pub firewall: BTreeSet<String>,
    pub store: MapStore,
    /// Log lines.
    pub log: Vec<String>,
    /// Operations that fail (`"links.delete"`, `"store.list"`, ...): host calls with
    /// `denied`, store calls with an I/O error.
    pub fail: BTreeSet<&'static str>,
    /// What `cluster.this-node` answers (`None`: `not-found`, as a runner without an
    /// uplink would). [`FakeNode::cluster`] sets it and makes its uplink.
    pub this_node: Option<ThisNode>,
    /// What `cluster.peers` answers.
    pub peers: Vec<Peer>,
    /// VXLAN links made by `create-vxlan`: name -> (vni, port, local).
    pub vxlans: BTreeMap<String, (u32, u16, String)>,
    /// FDB entries per VXLAN link: (mac, remote), in the order added.
    pub fdb: BTreeMap<String, Vec<(String, String)>>,
    /// Neighbour entries per VXLAN link: (address, mac), in the order added.
    pub neighbors: BTreeMap<String, Vec<(String, String)>>,
    /// The network's lock as the runner keeps it: inside or not (a store call outside
    /// enters it, as the runner's does), and the store calls made outside after the
    /// policy released it (a critical section that ends too early).
    pub locked: bool,
    pub released: bool,
    pub store_after_release: Vec<String>,
    next_index: u32,
}

impl Default for FakeNode {
    fn default() -> Self {
        let mut sysctls = BTreeMap::new();
        for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
            sysctls.insert(("host", key.to_string()), "0".to_string());
        }
        FakeNode {
            calls: Vec::new(),
            links: BTreeMap::new(),
            masters: BTreeMap::new(),
            addresses: BTreeMap::new(),
            routes: Vec::new(),
            sysctls,
            firewall: BTreeSet::new(),
            store: MapStore::default(),
            log: Vec::new(),
            fail: BTreeSet::new(),
            this_node: None,
            peers: Vec::new(),
            vxlans: BTreeMap::new(),
            fdb: BTreeMap::new(),
            neighbors: BTreeMap::new(),
            locked: false,
            released: false,
            store_after_release: Vec::new(),
            next_index: 2,
        }
    }
}

impl FakeNode {
    /// The calls made, without the store's and the lock's (to read a policy's wiring).
    pub fn host_calls(&self) -> Vec<&str> {
        self.calls
            .iter()
            .map(String::as_str)
            .filter(|c| !c.starts_with("store.") && !c.starts_with("lock."))
            .collect()
    }

    /// The calls that change something (no look-ups, lists, store reads or log lines):
    /// what a second, idempotent run must not make.
    pub fn changes(&self) -> Vec<&str> {
        const READS: [&str; 10] = [
            "links.get(",
            "addresses.list(",
            "routes.list(",
            "sysctl.get(",
            "cluster.this-node(",
            "cluster.peers(",
            "cluster.fdb-list(",
            "cluster.neighbor-list(",
            "store.get(",
            "store.list(",
        ];
        self.calls
            .iter()
            .map(String::as_str)
            .filter(|c| !READS.iter().any(|r| c.starts_with(r)) && !c.starts_with("log.write("))
            .collect()
    }

    /// The container namespace holds one pod at a time: empty it for the next pod's
    /// ADD (the host side stays), and forget the calls made so far.
    pub fn next_pod(&mut self) {
        self.links.retain(|(ns, _), _| *ns == "host");
        self.addresses.retain(|(ns, _), _| *ns == "host");
        self.routes.retain(|(ns, ..)| *ns == "host");
        self.calls.clear();
    }

    /// Make this node part of a cluster: an uplink `uplink` (up, MTU `mtu`, with
    /// `addresses` in CIDR form, e.g. `10.0.0.3/24`), this node's IPs (those addresses
    /// without prefix), and the VXLAN link name `vxlan_link`.
    pub fn cluster(&mut self, uplink: &str, mtu: u32, addresses: &[&str], vxlan_link: &str) {
        let mut link = self.add_link(Netns::Host, uplink, true);
        link.mtu = mtu;
        self.links
            .insert(("host", uplink.to_string()), link.clone());
        self.addresses.insert(
            ("host", uplink.to_string()),
            addresses.iter().map(|a| a.to_string()).collect(),
        );
        self.this_node = Some(ThisNode {
            uplink: link,
            ips: addresses
                .iter()
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect(),
            vxlan_link: vxlan_link.to_string(),
        });
    }

    /// A peer as `cluster.peers` gives it: `ips` and `pod_cidrs` IPv4 first.
    pub fn peer(name: &str, ips: &[&str], pod_cidrs: &[&str]) -> Peer {
        Peer {
            name: name.to_string(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            pod_cidrs: pod_cidrs.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// This node of [`CLUSTER_DUAL`]: 10.0.0.3 and fd00:10::3 on `eth0` (MTU 1500),
    /// VXLAN link `wcni.1`, with `peers` (e.g. [`FakeNode::worker`]s).
    pub fn in_cluster(peers: Vec<Peer>) -> FakeNode {
        let mut n = FakeNode::default();
        n.cluster("eth0", 1500, &["10.0.0.3/16", "fd00:10::3/64"], "wcni.1");
        n.peers = peers;
        n
    }

    /// The peer `worker-<i>` of [`CLUSTER_DUAL`] (`i` up to 253): node IPs 10.0.0.<i+2>
    /// and fd00:10::<i+2>, pod CIDRs 200.200.<i>.0/24 and fd00:200:<i>::/64 (the
    /// numbers written in decimal in both families).
    pub fn worker(i: u8) -> Peer {
        let host = u32::from(i) + 2;
        FakeNode::peer(
            &format!("worker-{i}"),
            &[&format!("10.0.0.{host}"), &format!("fd00:10::{host}")],
            &[&format!("200.200.{i}.0/24"), &format!("fd00:200:{i}::/64")],
        )
    }

    /// The host routes through `link`, as `dst via gw` or `dst` text, in order.
    pub fn routes_on(&self, link: &str) -> Vec<String> {
        self.routes
            .iter()
            .filter(|(ns, _, _, l)| *ns == "host" && l.as_deref() == Some(link))
            .map(|(_, d, g, _)| match g {
                Some(g) => format!("{d} via {g}"),
                None => d.clone(),
            })
            .collect()
    }

    /// Is `gw` reachable on `link` in `ns`: inside one of its addresses' networks, or
    /// covered by a route through it without a gateway.
    fn reachable(&self, ns: &'static str, link: &str, gw: &str) -> bool {
        let Ok(gw) = gw.parse::<IpAddr>() else {
            return false;
        };
        let covers = |cidr: &str| Net::parse(cidr, false).is_ok_and(|n| n.contains(gw));
        let connected = self
            .addresses
            .get(&(ns, link.to_string()))
            .is_some_and(|list| list.iter().any(|a| covers(a)));
        connected
            || self.routes.iter().any(|(n, d, g, l)| {
                *n == ns && g.is_none() && l.as_deref() == Some(link) && covers(d)
            })
    }

    /// A host link, as if made earlier (e.g. another pod's, or the bridge).
    pub fn add_link(&mut self, ns: Netns, name: &str, up: bool) -> LinkInfo {
        let index = self.next_index;
        self.next_index += 1;
        let info = LinkInfo {
            name: name.to_string(),
            index,
            mac: format!("02:00:00:00:00:{:02x}", index % 256),
            mtu: 1500,
            up,
        };
        self.links
            .insert((ns_name(ns), name.to_string()), info.clone());
        info
    }

    fn call(&mut self, op: &'static str, args: String) -> Result<(), HostError> {
        self.calls.push(format!("{op}({args})"));
        if self.fail.contains(op) {
            return Err(error(ErrorKind::Denied, format!("{op}: denied")));
        }
        Ok(())
    }

    fn store_call(&mut self, op: &'static str, args: String) -> Result<(), String> {
        self.calls.push(format!("{op}({args})"));
        if !self.locked {
            if self.released {
                self.store_after_release.push(format!("{op}({args})"));
            }
            self.locked = true;
        }
        if self.fail.contains(op) {
            return Err("store: I/O error".into());
        }
        Ok(())
    }

    fn link(&self, ns: Netns, name: &str) -> Result<&LinkInfo, HostError> {
        self.links
            .get(&(ns_name(ns), name.to_string()))
            .ok_or_else(|| {
                error(
                    ErrorKind::NotFound,
                    format!("link {name:?} in {}: not found", ns_name(ns)),
                )
            })
    }
}

impl Store for FakeNode {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        self.store_call("store.get", format!("{key:?}"))?;
        self.store.get(key)
    }
    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.store_call("store.put", format!("{key:?}, {value:?}"))?;
        self.store.put(key, value)
    }
    fn delete(&mut self, key: &str) -> Result<bool, String> {
        self.store_call("store.delete", format!("{key:?}"))?;
        self.store.delete(key)
    }
    fn list(&mut self, prefix: &str) -> Result<Vec<String>, String> {
        self.store_call("store.list", format!("{prefix:?}"))?;
        self.store.list(prefix)
    }
}

impl Node for FakeNode {
    fn lock_acquire(&mut self) -> Result<(), HostError> {
        self.call("lock.acquire", String::new())?;
        self.locked = true;
        Ok(())
    }

    fn lock_release(&mut self) {
        self.calls.push("lock.release()".into());
        if self.locked {
            self.released = true;
        }
        self.locked = false;
    }

    fn link_get(&mut self, ns: Netns, name: &str) -> Result<Option<LinkInfo>, HostError> {
        self.call("links.get", format!("{}, {name:?}", ns_name(ns)))?;
        Ok(self.links.get(&(ns_name(ns), name.to_string())).cloned())
    }

    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<LinkInfo, HostError> {
        self.call("links.create-bridge", format!("{name:?}, {}", opt(&mtu)))?;
        if self.link(Netns::Host, name).is_ok() {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("link {name:?} exists"),
            ));
        }
        Ok(self.add_link(Netns::Host, name, false))
    }

    fn create_veth(
        &mut self,
        host: &str,
        container: &str,
        mtu: Option<u32>,
        container_mac: Option<&str>,
    ) -> Result<VethPair, HostError> {
        self.call(
            "links.create-veth",
            format!(
                "{host:?}, {container:?}, {}, {}",
                opt(&mtu),
                opt(&container_mac)
            ),
        )?;
        if self.link(Netns::Host, host).is_ok() || self.link(Netns::Container, container).is_ok() {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("link {host:?} exists"),
            ));
        }
        let host = self.add_link(Netns::Host, host, false);
        let mut peer = self.add_link(Netns::Container, container, false);
        if let Some(mac) = container_mac {
            peer.mac = mac.to_string();
            self.links
                .insert(("container", container.to_string()), peer.clone());
        }
        Ok(VethPair {
            host,
            container: peer,
        })
    }

    fn set_master(&mut self, name: &str, bridge: &str) -> Result<(), HostError> {
        self.call("links.set-master", format!("{name:?}, {bridge:?}"))?;
        self.link(Netns::Host, name)?;
        self.link(Netns::Host, bridge)?;
        self.masters.insert(name.to_string(), bridge.to_string());
        Ok(())
    }

    fn set_up(&mut self, ns: Netns, name: &str) -> Result<(), HostError> {
        self.call("links.set-up", format!("{}, {name:?}", ns_name(ns)))?;
        self.link(ns, name)?;
        if let Some(l) = self.links.get_mut(&(ns_name(ns), name.to_string())) {
            l.up = true;
        }
        Ok(())
    }

    fn delete_link(&mut self, ns: Netns, name: &str) -> Result<(), HostError> {
        self.call("links.delete", format!("{}, {name:?}", ns_name(ns)))?;
        self.link(ns, name)?;
        self.links.remove(&(ns_name(ns), name.to_string()));
        self.addresses.remove(&(ns_name(ns), name.to_string()));
        if ns == Netns::Host {
            self.vxlans.remove(name);
            self.fdb.remove(name);
            self.neighbors.remove(name);
        }
        self.routes
            .retain(|(n, _, _, l)| !(*n == ns_name(ns) && l.as_deref() == Some(name)));
        Ok(())
    }

    fn attachment_link(&mut self, container_id: &str, ifname: &str) -> String {
        self.calls.push(format!(
            "links.attachment-link({container_id:?}, {ifname:?})"
        ));
        format!("wc-{container_id}-{ifname}")
    }

    fn address_add(&mut self, ns: Netns, link: &str, address: &str) -> Result<(), HostError> {
        self.call(
            "addresses.add",
            format!("{}, {link:?}, {address:?}", ns_name(ns)),
        )?;
        self.link(ns, link)?;
        let list = self
            .addresses
            .entry((ns_name(ns), link.to_string()))
            .or_default();
        if list.iter().any(|a| a == address) {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("address {address} on {link:?}: exists"),
            ));
        }
        list.push(address.to_string());
        Ok(())
    }

    fn address_list(&mut self, ns: Netns, link: &str) -> Result<Vec<String>, HostError> {
        self.call("addresses.list", format!("{}, {link:?}", ns_name(ns)))?;
        self.link(ns, link)?;
        Ok(self
            .addresses
            .get(&(ns_name(ns), link.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    fn route_add(&mut self, ns: Netns, route: &Route) -> Result<(), HostError> {
        self.call("routes.add", route_args(ns, route))?;
        if let Some(link) = &route.link {
            if !self.link(ns, link)?.up {
                return Err(error(
                    ErrorKind::Failed,
                    format!("route to {}: link {link:?} is down", route.destination),
                ));
            }
            if let Some(gw) = &route.gateway {
                if !self.reachable(ns_name(ns), link, gw) {
                    return Err(error(
                        ErrorKind::Failed,
                        format!(
                            "route to {} via {gw}: Network is unreachable",
                            route.destination
                        ),
                    ));
                }
            }
        }
        if self
            .routes
            .iter()
            .any(|(n, d, ..)| *n == ns_name(ns) && *d == route.destination)
        {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("route to {}: exists", route.destination),
            ));
        }
        self.routes.push((
            ns_name(ns),
            route.destination.clone(),
            route.gateway.clone(),
            route.link.clone(),
        ));
        Ok(())
    }

    fn route_remove(&mut self, ns: Netns, route: &Route) -> Result<(), HostError> {
        self.call("routes.remove", route_args(ns, route))?;
        let at = self.routes.iter().position(|(n, d, g, l)| {
            *n == ns_name(ns)
                && *d == route.destination
                && (route.gateway.is_none() || *g == route.gateway)
                && (route.link.is_none() || *l == route.link)
        });
        match at {
            Some(i) => {
                self.routes.remove(i);
                Ok(())
            }
            None => Err(error(
                ErrorKind::NotFound,
                format!("route to {}: not found", route.destination),
            )),
        }
    }

    fn set_mtu(&mut self, ns: Netns, name: &str, mtu: u32) -> Result<(), HostError> {
        self.call("links.set-mtu", format!("{}, {name:?}, {mtu}", ns_name(ns)))?;
        self.link(ns, name)?;
        if let Some(l) = self.links.get_mut(&(ns_name(ns), name.to_string())) {
            l.mtu = mtu;
        }
        Ok(())
    }

    fn route_list(&mut self, ns: Netns, link: Option<&str>) -> Result<Vec<Route>, HostError> {
        self.call("routes.list", format!("{}, {}", ns_name(ns), opt(&link)))?;
        Ok(self
            .routes
            .iter()
            .filter(|(n, _, _, l)| *n == ns_name(ns) && (link.is_none() || l.as_deref() == link))
            .map(|(_, d, g, l)| Route {
                destination: d.clone(),
                gateway: g.clone(),
                link: l.clone(),
            })
            .collect())
    }

    fn sysctl_get(&mut self, ns: Netns, key: &str) -> Result<String, HostError> {
        self.call("sysctl.get", format!("{}, {key:?}", ns_name(ns)))?;
        self.sysctls
            .get(&(ns_name(ns), key.to_string()))
            .cloned()
            .ok_or_else(|| error(ErrorKind::NotFound, format!("sysctl {key}: not found")))
    }

    fn sysctl_set(&mut self, ns: Netns, key: &str, value: &str) -> Result<(), HostError> {
        self.call("sysctl.set", format!("{}, {key:?}, {value:?}", ns_name(ns)))?;
        // a link's key: the link must be there (`net.ipv6.conf.<link>.accept_dad`)
        // (link names may hold dots, `wcni.1`: the leaf is after the last one)
        let per_link = key
            .strip_prefix("net.ipv4.conf.")
            .or_else(|| key.strip_prefix("net.ipv6.conf."))
            .and_then(|rest| rest.rsplit_once('.'));
        if let Some((link, _)) = per_link {
            if link != "all" && link != "default" {
                self.link(ns, link)?;
            }
        }
        self.sysctls
            .insert((ns_name(ns), key.to_string()), value.to_string());
        Ok(())
    }

    fn allow_forward(&mut self, network: &str) -> Result<(), HostError> {
        self.call("firewall.allow-forward", format!("{network:?}"))?;
        self.firewall.insert(format!("allow-forward {network}"));
        Ok(())
    }

    fn masquerade(&mut self, source: &str, except: &[String]) -> Result<(), HostError> {
        self.call("firewall.masquerade", format!("{source:?}, {except:?}"))?;
        self.firewall
            .insert(format!("masquerade {source} except {}", except.join(",")));
        Ok(())
    }

    fn info(&mut self, msg: &str) {
        self.calls.push(format!("log.write(info, {msg:?})"));
        self.log.push(msg.to_string());
    }

    fn warn(&mut self, msg: &str) {
        self.calls.push(format!("log.write(warn, {msg:?})"));
        self.log.push(msg.to_string());
    }

    fn this_node(&mut self) -> Result<ThisNode, HostError> {
        self.call("cluster.this-node", String::new())?;
        self.this_node
            .clone()
            .ok_or_else(|| error(ErrorKind::NotFound, "no uplink: no default route".into()))
    }

    fn peers(&mut self) -> Result<Vec<Peer>, HostError> {
        self.call("cluster.peers", String::new())?;
        Ok(self.peers.clone())
    }

    fn create_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        port: u16,
        local: &str,
        mtu: Option<u32>,
        mac: Option<&str>,
    ) -> Result<LinkInfo, HostError> {
        self.call(
            "cluster.create-vxlan",
            format!(
                "{name:?}, {vni}, {port}, {local:?}, {}, {}",
                opt(&mtu),
                opt(&mac)
            ),
        )?;
        if self.link(Netns::Host, name).is_ok() {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("link {name:?} exists"),
            ));
        }
        let mut info = self.add_link(Netns::Host, name, false);
        if let Some(mtu) = mtu {
            info.mtu = mtu;
        }
        if let Some(mac) = mac {
            info.mac = mac.to_string();
        }
        self.links.insert(("host", name.to_string()), info.clone());
        self.vxlans
            .insert(name.to_string(), (vni, port, local.to_string()));
        Ok(info)
    }

    fn fdb_add(&mut self, link: &str, entry: &FdbEntry) -> Result<(), HostError> {
        self.call(
            "cluster.fdb-add",
            format!("{link:?}, {:?} -> {:?}", entry.mac, entry.remote),
        )?;
        self.link(Netns::Host, link)?;
        let list = self.fdb.entry(link.to_string()).or_default();
        let e = (entry.mac.clone(), entry.remote.clone());
        if list.contains(&e) {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("fdb {} dst {} on {link:?}: exists", e.0, e.1),
            ));
        }
        list.push(e);
        Ok(())
    }

    fn fdb_remove(&mut self, link: &str, entry: &FdbEntry) -> Result<(), HostError> {
        self.call(
            "cluster.fdb-remove",
            format!("{link:?}, {:?} -> {:?}", entry.mac, entry.remote),
        )?;
        let list = self.fdb.entry(link.to_string()).or_default();
        let before = list.len();
        list.retain(|(m, r)| !(*m == entry.mac && *r == entry.remote));
        if list.len() == before {
            return Err(error(
                ErrorKind::NotFound,
                format!(
                    "fdb {} dst {} on {link:?}: not found",
                    entry.mac, entry.remote
                ),
            ));
        }
        Ok(())
    }

    fn fdb_list(&mut self, link: &str) -> Result<Vec<FdbEntry>, HostError> {
        self.call("cluster.fdb-list", format!("{link:?}"))?;
        self.link(Netns::Host, link)?;
        Ok(self
            .fdb
            .get(link)
            .into_iter()
            .flatten()
            .map(|(mac, remote)| FdbEntry {
                mac: mac.clone(),
                remote: remote.clone(),
            })
            .collect())
    }

    fn neighbor_add(&mut self, link: &str, entry: &Neighbor) -> Result<(), HostError> {
        self.call(
            "cluster.neighbor-add",
            format!("{link:?}, {:?} at {:?}", entry.address, entry.mac),
        )?;
        self.link(Netns::Host, link)?;
        let list = self.neighbors.entry(link.to_string()).or_default();
        if list.iter().any(|(a, _)| *a == entry.address) {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("neighbour {} on {link:?}: exists", entry.address),
            ));
        }
        list.push((entry.address.clone(), entry.mac.clone()));
        Ok(())
    }

    fn neighbor_remove(&mut self, link: &str, address: &str) -> Result<(), HostError> {
        self.call("cluster.neighbor-remove", format!("{link:?}, {address:?}"))?;
        let list = self.neighbors.entry(link.to_string()).or_default();
        let before = list.len();
        list.retain(|(a, _)| a != address);
        if list.len() == before {
            return Err(error(
                ErrorKind::NotFound,
                format!("neighbour {address} on {link:?}: not found"),
            ));
        }
        Ok(())
    }

    fn neighbor_list(&mut self, link: &str) -> Result<Vec<Neighbor>, HostError> {
        self.call("cluster.neighbor-list", format!("{link:?}"))?;
        self.link(Netns::Host, link)?;
        let mut out: Vec<Neighbor> = self
            .neighbors
            .get(link)
            .into_iter()
            .flatten()
            .map(|(address, mac)| Neighbor {
                address: address.clone(),
                mac: mac.clone(),
            })
            .collect();
        // IPv4 first, as the runner answers
        out.sort_by_key(|n| n.address.contains(':'));
        Ok(out)
    }
}
