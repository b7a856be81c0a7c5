//! Everything the sandbox does to the node, behind one trait. `Kernel` does it for real
//! (netlink, nftables, /proc/sys, the store directory); `sim::Model` does it in memory
//! for `wasm-cni simulate`. The grant checks and the journal sit above this, in
//! `sandbox`, so both get exactly the same gate.

use crate::firewall;
use crate::netlink::{LinkInfo, Netlink, RouteSpec};
use crate::netns::Ns;
use crate::op_error::OpResult;
use crate::store::Store;
use crate::sysctl;
use ipnetwork::Ipv4Network;
use std::net::Ipv4Addr;

/// A route exactly as the node had it, to put back after an undo.
#[derive(Clone, Debug)]
pub enum SavedRoute {
    /// The kernel's own route message (protocol, scope, source, metric, gateway...).
    Kernel(Box<rtnetlink::packet_route::route::RouteMessage>),
    /// The simulator's route.
    Model(crate::sim::Route),
}

/// An address exactly as the node had it.
#[derive(Clone, Debug)]
pub enum SavedAddress {
    /// The kernel's own address message (flags, scope, label, broadcast...).
    Kernel(Box<rtnetlink::packet_route::address::AddressMessage>),
    Model(String),
}

/// One sysctl's value, with its path under /proc/sys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlValue {
    pub key: String,
    pub parts: Vec<String>,
    pub value: String,
}

/// How much the network's store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    pub keys: u64,
    pub bytes: u64,
}

/// The operations behind the guest's imports, after the grant check.
pub trait Node: Send {
    fn get_link(&mut self, ns: Ns, name: &str) -> OpResult<Option<LinkInfo>>;
    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo>;
    /// The host end in the host namespace, the peer in the container namespace.
    fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: Option<u32>,
    ) -> OpResult<(LinkInfo, LinkInfo)>;
    fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()>;
    /// Detach a host link from its bridge.
    fn unset_master(&mut self, name: &str) -> OpResult<()>;
    fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()>;
    fn set_down(&mut self, ns: Ns, name: &str) -> OpResult<()>;
    fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()>;
    fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()>;

    fn list_addresses(&mut self, ns: Ns, link: &str) -> OpResult<Vec<Ipv4Network>>;
    fn add_address(&mut self, ns: Ns, link: &str, addr: Ipv4Network) -> OpResult<()>;
    /// Remove an address; returns it as the node had it.
    fn remove_address(&mut self, ns: Ns, link: &str, addr: Ipv4Network) -> OpResult<SavedAddress>;
    fn restore_address(&mut self, ns: Ns, link: &str, saved: &SavedAddress) -> OpResult<()>;

    /// Names of the links that carry a default route (the uplinks).
    fn default_route_links(&mut self, ns: Ns) -> OpResult<Vec<String>>;
    fn list_routes(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>>;
    fn add_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()>;
    /// Delete a route `add_route` added, by its key (no listing: undo stays linear).
    fn unroute(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()>;
    /// Remove a route; returns it as the node had it.
    fn remove_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<SavedRoute>;
    /// Every route of the main table, as the node has them.
    fn save_routes(&mut self, ns: Ns) -> OpResult<Vec<SavedRoute>>;
    /// Put a saved route back (`already-exists` if it is there).
    fn restore_route(&mut self, ns: Ns, saved: &SavedRoute) -> OpResult<()>;

    /// The table as text that `restore_table` puts back exactly; none if absent.
    fn save_table(&mut self, table: &str) -> OpResult<Option<String>>;
    /// Replace the table, atomically, by what `save_table` gave (none: delete it).
    fn restore_table(&mut self, table: &str, saved: Option<&str>) -> OpResult<()>;
    fn allow_forward(&mut self, table: &str, net: Ipv4Network) -> OpResult<()>;
    fn masquerade(
        &mut self,
        table: &str,
        source: Ipv4Network,
        except: &[Ipv4Network],
    ) -> OpResult<()>;
    fn delete_table(&mut self, table: &str) -> OpResult<()>;

    /// `parts`: the key's path under /proc/sys, as the grant check split it.
    fn sysctl_get(&mut self, ns: Ns, key: &str, parts: &[&str]) -> OpResult<String>;
    fn sysctl_set(&mut self, ns: Ns, key: &str, parts: &[&str], value: &str) -> OpResult<()>;
    /// The IPv4 `forwarding` values that writing `ip_forward` resets (`default` and
    /// every link's), as (key, value).
    fn forwarding_values(&mut self, ns: Ns) -> OpResult<Vec<SysctlValue>>;

    fn store_get(&mut self, key: &str) -> OpResult<Option<String>>;
    fn store_put(&mut self, key: &str, value: &str) -> OpResult<()>;
    /// Remove the key (and its owner).
    fn store_delete(&mut self, key: &str) -> OpResult<bool>;
    /// The attachment whose call created the key, if one did.
    fn store_owner(&mut self, key: &str) -> OpResult<Option<String>>;
    fn store_set_owner(&mut self, key: &str, owner: &str) -> OpResult<()>;
    fn store_list(&mut self, prefix: &str) -> OpResult<Vec<String>>;
    /// The store's size, taken for this call (the backend may forget it until
    /// `store_set_usage` gives it back).
    fn store_usage(&mut self) -> OpResult<StoreUsage>;
    fn store_set_usage(&mut self, _usage: StoreUsage) -> OpResult<()> {
        Ok(())
    }

    /// The runner's own record of live attachments' addresses (from their ADD results).
    /// Which attachment holds `ip`, if any.
    fn address_holder(&mut self, ip: Ipv4Addr) -> OpResult<Option<String>>;
    /// Every recorded address.
    fn held_addresses(&mut self) -> OpResult<Vec<Ipv4Addr>>;
    /// Record a successful ADD's addresses (replacing what the attachment held).
    fn hold_addresses(&mut self, attachment: &str, ips: &[Ipv4Addr]) -> OpResult<()>;
    /// Forget an attachment's addresses (DEL, GC).
    fn release_addresses(&mut self, attachment: &str) -> OpResult<()>;
    /// Attachments with recorded addresses.
    fn holders(&mut self) -> OpResult<Vec<String>>;

    /// The simulator's model, given back after a call (the kernel has none).
    fn into_world(self: Box<Self>) -> Option<crate::sim::World> {
        None
    }
}

/// The real node: the kernel (through netlink, nftables and /proc/sys) and the
/// network's store directory.
pub struct Kernel {
    pub net: Netlink,
    pub store: Store,
}

impl Node for Kernel {
    fn get_link(&mut self, ns: Ns, name: &str) -> OpResult<Option<LinkInfo>> {
        self.net.get_link(ns, name)
    }
    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo> {
        self.net.create_bridge(name, mtu)
    }
    fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: Option<u32>,
    ) -> OpResult<(LinkInfo, LinkInfo)> {
        self.net.create_veth(host, peer, mtu)
    }
    fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()> {
        self.net.set_master(name, bridge)
    }
    fn unset_master(&mut self, name: &str) -> OpResult<()> {
        self.net.unset_master(name)
    }
    fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.net.set_up(ns, name, true)
    }
    fn set_down(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.net.set_up(ns, name, false)
    }
    fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()> {
        self.net.set_mtu(ns, name, mtu)
    }
    fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.net.delete_link(ns, name)
    }
    fn list_addresses(&mut self, ns: Ns, link: &str) -> OpResult<Vec<Ipv4Network>> {
        self.net.list_addresses(ns, link)
    }
    fn add_address(&mut self, ns: Ns, link: &str, addr: Ipv4Network) -> OpResult<()> {
        self.net.add_address(ns, link, addr)
    }
    fn remove_address(&mut self, ns: Ns, link: &str, addr: Ipv4Network) -> OpResult<SavedAddress> {
        self.net
            .remove_address(ns, link, addr)
            .map(|m| SavedAddress::Kernel(Box::new(m)))
    }
    fn restore_address(&mut self, ns: Ns, link: &str, saved: &SavedAddress) -> OpResult<()> {
        match saved {
            SavedAddress::Kernel(m) => self.net.restore_address(ns, link, m),
            SavedAddress::Model(_) => Ok(()),
        }
    }
    fn default_route_links(&mut self, ns: Ns) -> OpResult<Vec<String>> {
        self.net.default_route_links(ns)
    }
    fn list_routes(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>> {
        self.net.list_routes(ns, link)
    }
    fn add_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        self.net.add_route(ns, r)
    }
    fn unroute(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        self.net.unroute(ns, r)
    }
    fn remove_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<SavedRoute> {
        self.net
            .remove_route(ns, r)
            .map(|m| SavedRoute::Kernel(Box::new(m)))
    }
    fn save_routes(&mut self, ns: Ns) -> OpResult<Vec<SavedRoute>> {
        Ok(self
            .net
            .route_messages(ns)?
            .into_iter()
            .map(|m| SavedRoute::Kernel(Box::new(m)))
            .collect())
    }
    fn restore_route(&mut self, ns: Ns, saved: &SavedRoute) -> OpResult<()> {
        match saved {
            SavedRoute::Kernel(m) => self.net.restore_route(ns, m),
            SavedRoute::Model(_) => Ok(()),
        }
    }
    fn save_table(&mut self, table: &str) -> OpResult<Option<String>> {
        firewall::save_table(table)
    }
    fn restore_table(&mut self, table: &str, saved: Option<&str>) -> OpResult<()> {
        firewall::restore_table(table, saved)
    }
    fn allow_forward(&mut self, table: &str, net: Ipv4Network) -> OpResult<()> {
        firewall::allow_forward(table, net)
    }
    fn masquerade(
        &mut self,
        table: &str,
        source: Ipv4Network,
        except: &[Ipv4Network],
    ) -> OpResult<()> {
        firewall::masquerade(table, source, except)
    }
    fn delete_table(&mut self, table: &str) -> OpResult<()> {
        firewall::delete_table(table)
    }
    fn sysctl_get(&mut self, ns: Ns, key: &str, parts: &[&str]) -> OpResult<String> {
        sysctl::get(&mut self.net.ns, ns, key, parts)
    }
    fn sysctl_set(&mut self, ns: Ns, key: &str, parts: &[&str], value: &str) -> OpResult<()> {
        sysctl::set(&mut self.net.ns, ns, key, parts, value)
    }
    fn forwarding_values(&mut self, ns: Ns) -> OpResult<Vec<SysctlValue>> {
        sysctl::forwarding_values(&mut self.net.ns, ns)
    }
    fn store_get(&mut self, key: &str) -> OpResult<Option<String>> {
        self.store.get(key)
    }
    fn store_put(&mut self, key: &str, value: &str) -> OpResult<()> {
        self.store.put(key, value)
    }
    fn store_owner(&mut self, key: &str) -> OpResult<Option<String>> {
        self.store.owner(key)
    }
    fn store_set_owner(&mut self, key: &str, owner: &str) -> OpResult<()> {
        self.store.set_owner(key, owner)
    }
    fn store_delete(&mut self, key: &str) -> OpResult<bool> {
        self.store.delete(key)
    }
    fn store_list(&mut self, prefix: &str) -> OpResult<Vec<String>> {
        self.store.list(prefix)
    }
    fn store_usage(&mut self) -> OpResult<StoreUsage> {
        self.store.take_usage()
    }
    fn store_set_usage(&mut self, usage: StoreUsage) -> OpResult<()> {
        self.store.set_usage(usage)
    }
    fn address_holder(&mut self, ip: Ipv4Addr) -> OpResult<Option<String>> {
        self.store.address_holder(ip)
    }
    fn held_addresses(&mut self) -> OpResult<Vec<Ipv4Addr>> {
        self.store.held_addresses()
    }
    fn hold_addresses(&mut self, attachment: &str, ips: &[Ipv4Addr]) -> OpResult<()> {
        self.store.hold_addresses(attachment, ips)
    }
    fn release_addresses(&mut self, attachment: &str) -> OpResult<()> {
        self.store.release_addresses(attachment)
    }
    fn holders(&mut self) -> OpResult<Vec<String>> {
        self.store.holders()
    }
}
