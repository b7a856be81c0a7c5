//! The node the gate changes, behind one trait: `kernel::Kernel` does it for real
//! (netlink, nftables, /proc/sys, the store directory); `model::Model` does it in
//! memory for `wasm-cni simulate` and the gate's unit tests. The grant checks and the
//! journal sit above this, in `gate`, so both get exactly the same gate. This file is
//! also the vocabulary both backends share (namespaces, links, routes, sysctl keys).

use std::time::Duration;

pub(crate) mod error;
pub(crate) mod kernel;
pub(crate) mod model;
pub(crate) mod store_key;

pub(crate) use error::{OpError, OpKind, OpResult};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
pub(crate) use store_key::{check_key as check_store_key, MAX_VALUE as MAX_STORE_VALUE};

/// Which namespace an operation acts on (WIT `netns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ns {
    Host,
    Container,
}

impl std::fmt::Display for Ns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ns::Host => "host",
            Ns::Container => "container",
        })
    }
}

/// What the runner reports about a link (WIT `link-info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    /// Index of the bridge this link is attached to.
    pub master: Option<u32>,
}

/// A route of the main table (WIT `route`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// Either family; the gate checks that `gateway` is of the same one.
    pub destination: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub link: Option<String>,
}

/// A route as a backend without kernel messages keeps it (the model's form, also
/// what its session file stores).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlainRoute {
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub link: String,
}

/// A route exactly as the node had it, to put back after an undo.
#[derive(Clone, Debug)]
pub enum SavedRoute {
    /// The kernel's own route message (protocol, scope, source, metric, gateway...).
    Kernel(Box<rtnetlink::packet_route::route::RouteMessage>),
    Plain(PlainRoute),
}

/// An address exactly as the node had it.
#[derive(Clone, Debug)]
pub enum SavedAddress {
    /// The kernel's own address message (flags, scope, label, broadcast...).
    Kernel(Box<rtnetlink::packet_route::address::AddressMessage>),
    /// The address in CIDR form.
    Plain(String),
}

/// An IP family: of an address, a network, or a sysctl subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNetwork) -> Family {
        Self::of_ip(net.ip())
    }
    pub fn of_ip(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
    /// The longest prefix of the family (a host route).
    pub fn max_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
    /// `IPv4` / `IPv6`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
    /// Index for per-family arrays.
    pub fn index(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }
}

/// The network of `n` (host bits cleared), of either family.
pub fn network_of(n: IpNetwork) -> IpNetwork {
    IpNetwork::new(n.network(), n.prefix()).expect("the prefix of a valid network")
}

/// A sysctl key of the shape the grants know, parsed once (`Grants::sysctl_key`) and
/// passed on typed: a node-wide forwarding switch (`net.ipv4.ip_forward`,
/// `net.ipv6.conf.all.forwarding`) or `net.ipv{4,6}.conf.<link>.<leaf>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlKey {
    text: String,
    /// (family, link, leaf) of a per-link key; none for a forwarding switch.
    per_link: Option<(Family, String, String)>,
    /// The family of a forwarding switch (unused for per-link keys).
    switch: Family,
}

impl SysctlKey {
    pub const IP_FORWARD: &'static str = "net.ipv4.ip_forward";
    pub const IPV6_FORWARDING: &'static str = "net.ipv6.conf.all.forwarding";

    /// The node-wide forwarding switch of `family`: writing it makes the kernel copy it
    /// into every link's `forwarding` of that family.
    pub fn forwarding_switch(family: Family) -> SysctlKey {
        let text = match family {
            Family::V4 => Self::IP_FORWARD,
            Family::V6 => Self::IPV6_FORWARDING,
        };
        SysctlKey {
            text: text.into(),
            per_link: None,
            switch: family,
        }
    }

    pub fn per_link(family: Family, link: &str, leaf: &str) -> SysctlKey {
        let v = if family == Family::V4 { 4 } else { 6 };
        SysctlKey {
            text: format!("net.ipv{v}.conf.{link}.{leaf}"),
            per_link: Some((family, link.into(), leaf.into())),
            switch: family,
        }
    }

    /// The key's shape only (no grant check): `None` for anything else.
    pub fn parse(text: &str) -> Option<SysctlKey> {
        if text == Self::IP_FORWARD {
            return Some(Self::forwarding_switch(Family::V4));
        }
        if text == Self::IPV6_FORWARDING {
            return Some(Self::forwarding_switch(Family::V6));
        }
        let (family, rest) = if let Some(r) = text.strip_prefix("net.ipv4.conf.") {
            (Family::V4, r)
        } else {
            (Family::V6, text.strip_prefix("net.ipv6.conf.")?)
        };
        let (link, leaf) = rest.rsplit_once('.')?;
        (!link.is_empty() && !leaf.is_empty()).then(|| Self::per_link(family, link, leaf))
    }

    /// As the guest wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// A node-wide forwarding switch of either family?
    pub fn is_forwarding_switch(&self) -> bool {
        self.per_link.is_none()
    }
    pub fn family(&self) -> Family {
        self.per_link.as_ref().map_or(self.switch, |p| p.0)
    }
    /// The link of a per-link key.
    pub fn link(&self) -> Option<&str> {
        self.per_link.as_ref().map(|p| p.1.as_str())
    }
    /// The last part (`forwarding`, `disable_ipv6`, `ip_forward`).
    pub fn leaf(&self) -> &str {
        match (&self.per_link, self.switch) {
            (Some(p), _) => &p.2,
            (None, Family::V4) => "ip_forward",
            (None, Family::V6) => "forwarding",
        }
    }
    /// Its file under /proc/sys.
    pub fn proc_path(&self) -> PathBuf {
        let mut p = PathBuf::from("/proc/sys");
        match &self.per_link {
            None if self.switch == Family::V4 => p.push("net/ipv4/ip_forward"),
            None => p.push("net/ipv6/conf/all/forwarding"),
            Some((f, link, leaf)) => {
                p.push(if *f == Family::V4 {
                    "net/ipv4/conf"
                } else {
                    "net/ipv6/conf"
                });
                // a link name may hold dots (eth0.100): one path component
                p.push(link);
                p.push(leaf);
            }
        }
        p
    }
}

impl std::fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One sysctl's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlValue {
    pub key: SysctlKey,
    pub value: String,
}

/// FNV-1a over `a`, a zero byte and `b`: stable across runs, builds and platforms
/// (std's hasher is not), for names and MACs a later call must compute again.
pub(crate) fn stable_hash(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0u8]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How much the network's store holds.
/// The network's VXLAN link, as `create_vxlan` makes it: in the host namespace, down,
/// address learning off, no lower device (the kernel routes the UDP by `local`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub local: IpAddr,
    pub mtu: Option<u32>,
    pub mac: Option<crate::mac::Mac>,
}

/// A permanent forwarding-database entry of a VXLAN link (`bridge fdb add MAC dev L
/// dst REMOTE self permanent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FdbEntry {
    pub mac: crate::mac::Mac,
    pub remote: IpAddr,
}

/// A permanent neighbour entry (`ip neigh add ADDRESS lladdr MAC dev L nud permanent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NeighborEntry {
    pub address: IpAddr,
    pub mac: crate::mac::Mac,
}

/// The VXLAN values of the node tests, from text (the model's and the kernel's tests
/// build the same ones).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{FdbEntry, NeighborEntry, VxlanSpec};

    /// A VXLAN link on the Linux and flannel port, 8472, with the kernel's MTU.
    pub fn vxlan(name: &str, vni: u32, local: &str, mac: Option<&str>) -> VxlanSpec {
        VxlanSpec {
            name: name.into(),
            vni,
            port: 8472,
            local: local.parse().unwrap(),
            mtu: None,
            mac: mac.map(|m| m.parse().unwrap()),
        }
    }

    pub fn fdb(mac: &str, remote: &str) -> FdbEntry {
        FdbEntry {
            mac: mac.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    pub fn neigh(address: &str, mac: &str) -> NeighborEntry {
        NeighborEntry {
            address: address.parse().unwrap(),
            mac: mac.parse().unwrap(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    pub keys: u64,
    pub bytes: u64,
}

/// The operations behind the guest's imports, after the grant check.
pub trait Node: Send {
    fn get_link(&mut self, ns: Ns, name: &str) -> OpResult<Option<LinkInfo>>;
    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo>;
    /// The host end in the host namespace, the peer in the container namespace (with
    /// `peer_mac` when given, else one the node picks).
    fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: Option<u32>,
        peer_mac: Option<crate::mac::Mac>,
    ) -> OpResult<(LinkInfo, LinkInfo)>;
    fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()>;
    /// Detach a host link from its bridge.
    fn unset_master(&mut self, name: &str) -> OpResult<()>;
    fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()>;
    fn set_down(&mut self, ns: Ns, name: &str) -> OpResult<()>;
    fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()>;
    fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()>;

    /// Both families, IPv4 first, without the kernel's own link-locals (`fe80::/10`).
    fn list_addresses(&mut self, ns: Ns, link: &str) -> OpResult<Vec<IpNetwork>>;
    fn add_address(&mut self, ns: Ns, link: &str, addr: IpNetwork) -> OpResult<()>;
    /// Remove an address; returns it as the node had it.
    fn remove_address(&mut self, ns: Ns, link: &str, addr: IpNetwork) -> OpResult<SavedAddress>;
    fn restore_address(&mut self, ns: Ns, link: &str, saved: &SavedAddress) -> OpResult<()>;
    /// The link's addresses of `family` as the node has them (without link-locals), to
    /// put back after the kernel flushed them: it drops a link's IPv6 addresses when the
    /// link goes down or its MTU drops below 1280.
    fn save_addresses(&mut self, ns: Ns, link: &str, family: Family)
        -> OpResult<Vec<SavedAddress>>;

    /// Names of the links that carry a default route (the uplinks).
    fn default_route_links(&mut self, ns: Ns) -> OpResult<Vec<String>>;
    fn list_routes(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>>;
    /// The routes of one family only (a 0.1.0 guest's IPv4 view): the kernel dumps just
    /// that family, so an IPv4 listing costs what it did before IPv6.
    fn list_routes_of(
        &mut self,
        ns: Ns,
        link: Option<&str>,
        family: Family,
    ) -> OpResult<Vec<RouteSpec>> {
        let mut v = self.list_routes(ns, link)?;
        v.retain(|r| Family::of(&r.destination) == family);
        Ok(v)
    }
    fn add_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()>;
    /// Delete a route `add_route` added, by its key (no listing: undo stays linear).
    fn unroute(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()>;
    /// Remove a route; returns it as the node had it.
    fn remove_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<SavedRoute>;
    /// Every route of `family` in the main table, as the node has them.
    fn save_routes(&mut self, ns: Ns, family: Family) -> OpResult<Vec<SavedRoute>>;
    /// Put a saved route back (`already-exists` if it is there).
    fn restore_route(&mut self, ns: Ns, saved: &SavedRoute) -> OpResult<()>;

    /// The table of `family` (`ip` or `ip6`) as text that `restore_table` puts back
    /// exactly; none if absent.
    fn save_table(&mut self, family: Family, table: &str) -> OpResult<Option<String>>;
    /// Replace the table, atomically, by what `save_table` gave (none: delete it).
    fn restore_table(&mut self, family: Family, table: &str, saved: Option<&str>) -> OpResult<()>;
    /// In the table of `net`'s family.
    fn allow_forward(&mut self, table: &str, net: IpNetwork) -> OpResult<()>;
    /// In the table of `source`'s family; `except` are of that family (the gate checks).
    fn masquerade(&mut self, table: &str, source: IpNetwork, except: &[IpNetwork]) -> OpResult<()>;

    fn sysctl_get(&mut self, ns: Ns, key: &SysctlKey) -> OpResult<String>;
    fn sysctl_set(&mut self, ns: Ns, key: &SysctlKey, value: &str) -> OpResult<()>;
    /// The `forwarding` values of `family` that writing its forwarding switch resets
    /// (`default` and every link's), as (key, value).
    fn forwarding_values(&mut self, ns: Ns, family: Family) -> OpResult<Vec<SysctlValue>>;

    /// Enter the network's lock, waiting at most `timeout`; `interruptible`: give up
    /// when the call is being stopped. Returns how long it waited, `None` when already
    /// inside. A timeout is `failed` with errno EAGAIN.
    fn lock_enter(&mut self, timeout: Duration, interruptible: bool) -> OpResult<Option<Duration>>;
    /// Leave the network's lock (nothing when outside).
    fn lock_leave(&mut self);

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
    fn address_holder(&mut self, ip: IpAddr) -> OpResult<Option<String>>;
    /// Every recorded address.
    fn held_addresses(&mut self) -> OpResult<Vec<IpAddr>>;
    /// Record a successful ADD's addresses and the guest (its digest) that set the
    /// attachment up (replacing what the attachment held).
    fn hold_addresses(&mut self, attachment: &str, ips: &[IpAddr], guest: &str) -> OpResult<()>;
    /// The digests of the guests that set up live attachments.
    fn guests_in_use(&mut self) -> OpResult<Vec<String>>;
    /// Forget an attachment's addresses (DEL, GC).
    fn release_addresses(&mut self, attachment: &str) -> OpResult<()>;
    /// Attachments with recorded addresses.
    fn holders(&mut self) -> OpResult<Vec<String>>;

    /// Create the VXLAN link of `spec` in the host namespace (`already-exists` if the
    /// name is taken).
    fn create_vxlan(&mut self, spec: &VxlanSpec) -> OpResult<LinkInfo>;
    /// The permanent FDB entries with a remote on host link `link`.
    fn list_fdb(&mut self, link: &str) -> OpResult<Vec<FdbEntry>>;
    /// `already-exists` if the link has that entry (same MAC and remote).
    fn add_fdb(&mut self, link: &str, entry: &FdbEntry) -> OpResult<()>;
    /// `not-found` if absent.
    fn remove_fdb(&mut self, link: &str, entry: &FdbEntry) -> OpResult<()>;
    /// The permanent neighbour entries of host link `link`, IPv4 first.
    fn list_neighbors(&mut self, link: &str) -> OpResult<Vec<NeighborEntry>>;
    /// `already-exists` if the link has an entry for that address.
    fn add_neighbor(&mut self, link: &str, entry: &NeighborEntry) -> OpResult<()>;
    /// Remove the entry of `address`; returns it as it was (for the undo). `not-found`
    /// if absent.
    fn remove_neighbor(&mut self, link: &str, address: IpAddr) -> OpResult<NeighborEntry>;

    /// The backend itself, for `simulate` to take its model back after a call.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}
