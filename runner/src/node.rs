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
    fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()>;
    fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()>;
    fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()>;

    fn list_addresses(&mut self, ns: Ns, link: &str) -> OpResult<Vec<Ipv4Network>>;
    fn add_address(&mut self, ns: Ns, link: &str, addr: Ipv4Network) -> OpResult<()>;
    fn remove_address(&mut self, ns: Ns, link: &str, addr: Ipv4Network) -> OpResult<()>;

    /// Names of the links that carry a default route (the uplinks).
    fn default_route_links(&mut self, ns: Ns) -> OpResult<Vec<String>>;
    fn list_routes(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>>;
    fn add_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()>;
    fn remove_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()>;

    fn table_exists(&mut self, table: &str) -> OpResult<bool>;
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

    fn store_get(&mut self, key: &str) -> OpResult<Option<String>>;
    fn store_put(&mut self, key: &str, value: &str) -> OpResult<()>;
    fn store_delete(&mut self, key: &str) -> OpResult<bool>;
    fn store_list(&mut self, prefix: &str) -> OpResult<Vec<String>>;

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
    fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.net.set_up(ns, name)
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
    fn remove_address(&mut self, ns: Ns, link: &str, addr: Ipv4Network) -> OpResult<()> {
        self.net.remove_address(ns, link, addr)
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
    fn remove_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        self.net.remove_route(ns, r)
    }
    fn table_exists(&mut self, table: &str) -> OpResult<bool> {
        firewall::table_exists(table)
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
    fn store_get(&mut self, key: &str) -> OpResult<Option<String>> {
        self.store.get(key)
    }
    fn store_put(&mut self, key: &str, value: &str) -> OpResult<()> {
        self.store.put(key, value)
    }
    fn store_delete(&mut self, key: &str) -> OpResult<bool> {
        self.store.delete(key)
    }
    fn store_list(&mut self, prefix: &str) -> OpResult<Vec<String>> {
        self.store.list(prefix)
    }
}
