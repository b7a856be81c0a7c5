//! A node in memory, for policies' native unit tests: [`FakeNode`] implements the kit's
//! [`Node`](crate::policy::Node) (the host calls of the shared commands and of a policy
//! written against it) and records every call, in the order made, in the form
//! `wasm-cni simulate` prints them. It models what a policy's logic depends on (links
//! per namespace, addresses, routes, sysctls, firewall rules, the store), not the
//! kernel: `simulate` and the runner's tests do that.

use crate::bindings::plugin::links::VethPair;
use crate::bindings::plugin::routes::Route;
use crate::bindings::plugin::types::{ErrorKind, HostError, LinkInfo, Netns};
use crate::ipam::Store;
use crate::policy::Node;
use std::collections::{BTreeMap, BTreeSet};

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
            next_index: 2,
        }
    }
}

impl FakeNode {
    /// The calls made, without the store's (to read a policy's wiring).
    pub fn host_calls(&self) -> Vec<&str> {
        self.calls
            .iter()
            .map(String::as_str)
            .filter(|c| !c.starts_with("store."))
            .collect()
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
        self.call(
            "routes.add",
            format!(
                "{}, {:?} via {} dev {}",
                ns_name(ns),
                route.destination,
                opt(&route.gateway),
                opt(&route.link)
            ),
        )?;
        if let Some(link) = &route.link {
            if !self.link(ns, link)?.up {
                return Err(error(
                    ErrorKind::Failed,
                    format!("route to {}: link {link:?} is down", route.destination),
                ));
            }
        }
        self.routes.push((
            ns_name(ns),
            route.destination.clone(),
            route.gateway.clone(),
            route.link.clone(),
        ));
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
        let parts: Vec<&str> = key.split('.').collect();
        if let ["net", _, "conf", link, _] = parts.as_slice() {
            if *link != "all" && *link != "default" {
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
}
