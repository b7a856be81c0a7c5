//! The real node: the kernel (links, addresses and routes over netlink, the firewall
//! through nft, sysctls in /proc/sys) in the runner's and the container's network
//! namespaces, and the network's store directory.

pub(crate) mod firewall;
pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod store;
pub(crate) mod sysctl;
#[cfg(test)]
mod tests;

use super::{
    Family, FdbEntry, LinkInfo, NeighborEntry, Node, Ns, OpKind, OpResult, RouteSpec, SavedAddress,
    SavedRoute, StoreUsage, SysctlKey, SysctlValue, VxlanSpec,
};
use ipnetwork::IpNetwork;
use netlink::Netlink;
use netns::Namespaces;
use std::net::IpAddr;
use std::path::PathBuf;
use store::Store;

/// The real node: the kernel (through netlink, nftables and /proc/sys) and the
/// network's store directory.
pub(crate) struct Kernel {
    /// The host namespace (where the runner runs) and the call's container namespace.
    ns: Namespaces,
    net: Netlink,
    store: Store,
}

impl Kernel {
    /// `container`: CNI_NETNS, if the namespace exists.
    pub fn new(container: Option<PathBuf>, store: Store) -> std::io::Result<Kernel> {
        Ok(Kernel {
            ns: Namespaces::new(container)?,
            net: Netlink::default(),
            store,
        })
    }

    /// Netlink with the socket of `which` namespace open.
    fn nl(&mut self, which: Ns) -> OpResult<&mut Netlink> {
        self.net.open(which, &mut self.ns)?;
        Ok(&mut self.net)
    }
}

impl Kernel {
    /// A host link the runner creates takes no router advertisements: a pod's RA on it
    /// would give the node a default route or addresses through that pod (the kernel's
    /// accept_ra 1 takes them while the link does not forward IPv6, as on every node of
    /// an IPv4 network; CVE-2020-10749). The grants never let a guest turn it back on.
    fn no_router_advertisements(&mut self, name: &str) -> OpResult<()> {
        let key = SysctlKey::per_link(Family::V6, name, "accept_ra");
        match sysctl::set(&mut self.ns, Ns::Host, &key, "0") {
            Err(e) if e.kind == OpKind::NotFound => Ok(()), // a kernel without IPv6
            r => r,
        }
    }
}

impl Node for Kernel {
    fn create_vxlan(&mut self, spec: &VxlanSpec) -> OpResult<LinkInfo> {
        let l = self.nl(Ns::Host)?.create_vxlan(spec)?;
        self.no_router_advertisements(&spec.name)?;
        Ok(l)
    }
    fn list_fdb(&mut self, link: &str) -> OpResult<Vec<FdbEntry>> {
        self.nl(Ns::Host)?.list_fdb(link)
    }
    fn add_fdb(&mut self, link: &str, entry: &FdbEntry) -> OpResult<()> {
        self.nl(Ns::Host)?.add_fdb(link, entry)
    }
    fn remove_fdb(&mut self, link: &str, entry: &FdbEntry) -> OpResult<()> {
        self.nl(Ns::Host)?.remove_fdb(link, entry)
    }
    fn list_neighbors(&mut self, link: &str) -> OpResult<Vec<NeighborEntry>> {
        self.nl(Ns::Host)?.list_neighbors(link)
    }
    fn add_neighbor(&mut self, link: &str, entry: &NeighborEntry) -> OpResult<()> {
        self.nl(Ns::Host)?.add_neighbor(link, entry)
    }
    fn remove_neighbor(&mut self, link: &str, address: IpAddr) -> OpResult<NeighborEntry> {
        self.nl(Ns::Host)?.remove_neighbor(link, address)
    }

    fn get_link(&mut self, ns: Ns, name: &str) -> OpResult<Option<LinkInfo>> {
        self.nl(ns)?.get_link(ns, name)
    }
    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo> {
        let l = self.nl(Ns::Host)?.create_bridge(name, mtu)?;
        self.no_router_advertisements(name)?;
        Ok(l)
    }
    fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: Option<u32>,
        peer_mac: Option<crate::mac::Mac>,
    ) -> OpResult<(LinkInfo, LinkInfo)> {
        self.net.open(Ns::Host, &mut self.ns)?;
        self.net.open(Ns::Container, &mut self.ns)?;
        let container = self.ns.container()?;
        let pair = self.net.create_veth(host, peer, mtu, peer_mac, container)?;
        self.no_router_advertisements(host)?;
        Ok(pair)
    }
    fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()> {
        self.nl(Ns::Host)?.set_master(name, bridge)
    }
    fn unset_master(&mut self, name: &str) -> OpResult<()> {
        self.nl(Ns::Host)?.unset_master(name)
    }
    fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.nl(ns)?.set_up(ns, name, true)
    }
    fn set_down(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.nl(ns)?.set_up(ns, name, false)
    }
    fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()> {
        self.nl(ns)?.set_mtu(ns, name, mtu)
    }
    fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.nl(ns)?.delete_link(ns, name)
    }
    fn list_addresses(&mut self, ns: Ns, link: &str) -> OpResult<Vec<IpNetwork>> {
        self.nl(ns)?.list_addresses(ns, link)
    }
    fn add_address(&mut self, ns: Ns, link: &str, addr: IpNetwork) -> OpResult<()> {
        self.nl(ns)?.add_address(ns, link, addr)
    }
    fn remove_address(&mut self, ns: Ns, link: &str, addr: IpNetwork) -> OpResult<SavedAddress> {
        self.nl(ns)?
            .remove_address(ns, link, addr)
            .map(|m| SavedAddress::Kernel(Box::new(m)))
    }
    fn restore_address(&mut self, ns: Ns, link: &str, saved: &SavedAddress) -> OpResult<()> {
        match saved {
            SavedAddress::Kernel(m) => self.nl(ns)?.restore_address(ns, link, m),
            SavedAddress::Plain(_) => Ok(()),
        }
    }
    fn save_addresses(
        &mut self,
        ns: Ns,
        link: &str,
        family: Family,
    ) -> OpResult<Vec<SavedAddress>> {
        Ok(self
            .nl(ns)?
            .address_messages(ns, link, family)?
            .into_iter()
            .map(|m| SavedAddress::Kernel(Box::new(m)))
            .collect())
    }
    fn default_route_links(&mut self, ns: Ns) -> OpResult<Vec<String>> {
        self.nl(ns)?.default_route_links(ns)
    }
    fn list_routes(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>> {
        self.nl(ns)?.list_routes(ns, link, None)
    }
    fn list_routes_of(
        &mut self,
        ns: Ns,
        link: Option<&str>,
        family: Family,
    ) -> OpResult<Vec<RouteSpec>> {
        self.nl(ns)?.list_routes(ns, link, Some(family))
    }
    fn add_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        self.nl(ns)?.add_route(ns, r)
    }
    fn unroute(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        self.nl(ns)?.unroute(ns, r)
    }
    fn remove_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<SavedRoute> {
        self.nl(ns)?
            .remove_route(ns, r)
            .map(|m| SavedRoute::Kernel(Box::new(m)))
    }
    fn save_routes(&mut self, ns: Ns, family: Family) -> OpResult<Vec<SavedRoute>> {
        Ok(self
            .nl(ns)?
            .route_messages(ns, Some(family))?
            .into_iter()
            .map(|m| SavedRoute::Kernel(Box::new(m)))
            .collect())
    }
    fn restore_route(&mut self, ns: Ns, saved: &SavedRoute) -> OpResult<()> {
        match saved {
            SavedRoute::Kernel(m) => self.nl(ns)?.restore_route(ns, m),
            SavedRoute::Plain(_) => Ok(()),
        }
    }
    fn save_table(&mut self, family: Family, table: &str) -> OpResult<Option<String>> {
        firewall::save_table(family, table)
    }
    fn restore_table(&mut self, family: Family, table: &str, saved: Option<&str>) -> OpResult<()> {
        firewall::restore_table(family, table, saved)
    }
    fn allow_forward(&mut self, table: &str, net: IpNetwork) -> OpResult<()> {
        firewall::allow_forward(table, net)
    }
    fn masquerade(&mut self, table: &str, source: IpNetwork, except: &[IpNetwork]) -> OpResult<()> {
        firewall::masquerade(table, source, except)
    }
    fn sysctl_get(&mut self, ns: Ns, key: &SysctlKey) -> OpResult<String> {
        sysctl::get(&mut self.ns, ns, key)
    }
    fn sysctl_set(&mut self, ns: Ns, key: &SysctlKey, value: &str) -> OpResult<()> {
        sysctl::set(&mut self.ns, ns, key, value)
    }
    fn forwarding_values(&mut self, ns: Ns, family: Family) -> OpResult<Vec<SysctlValue>> {
        sysctl::forwarding_values(&mut self.ns, ns, family)
    }
    fn lock_enter(
        &mut self,
        timeout: std::time::Duration,
        interruptible: bool,
    ) -> OpResult<Option<std::time::Duration>> {
        let stop = || interruptible && crate::supervisor::stopping();
        self.store.enter(timeout, &stop).map_err(|e| match e {
            crate::error::Error::TryAgain(m) => crate::node::OpError {
                errno: Some(libc::EAGAIN),
                ..crate::node::OpError::failed(m)
            },
            e => crate::node::OpError::failed(e.to_string()),
        })
    }
    fn lock_leave(&mut self) {
        self.store.leave()
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
    fn address_holder(&mut self, ip: IpAddr) -> OpResult<Option<String>> {
        self.store.address_holder(ip)
    }
    fn held_addresses(&mut self) -> OpResult<Vec<IpAddr>> {
        self.store.held_addresses()
    }
    fn hold_addresses(&mut self, attachment: &str, ips: &[IpAddr], guest: &str) -> OpResult<()> {
        self.store.hold_addresses(attachment, ips, guest)
    }
    fn guests_in_use(&mut self) -> OpResult<Vec<String>> {
        self.store.guests_in_use()
    }
    fn release_addresses(&mut self, attachment: &str) -> OpResult<()> {
        self.store.release_addresses(attachment)
    }
    fn holders(&mut self) -> OpResult<Vec<String>> {
        self.store.holders()
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}
