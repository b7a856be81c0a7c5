//! The generated bindings of every contract version the runner serves (private to this
//! module tree) and the guest's imports. The work of each import is written once, in
//! the version-neutral `State::op_*` helpers below (transcript, timing, the call onto
//! the `Gate`, where grants and the journal live); each version's Host traits are
//! thin adapters that convert that version's types and call them. What a version sees
//! differently (0.1.0: IPv4-only `list` answers, no `container-mac`) is an argument
//! of the helper, never a second copy of it.
//!
//! Adding a version: a `mod vN` with its `bindgen!`, `same_in_every_version!(vN)`, the
//! interfaces that changed written out beside v1/v2, and its world in `wasm::World`.

use crate::cni::config::Peer;
use crate::gate::{lock, Gate, Shared};
use crate::node::{Family, FdbEntry, LinkInfo, NeighborEntry, Ns, OpError, OpKind};
use std::fmt::Debug;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// `wasm-cni:plugin@0.2.0`, the current contract (`wit/world.wit`).
pub mod v2 {
    wasmtime::component::bindgen!({
        // the file alone, not the directory: its deps/ holds the 0.1.0 package, whose
        // names would then be versioned in both modules
        path: "../wit/world.wit",
        world: "wasm-cni:plugin/cni-policy@0.2.0",
    });
}

/// The 0.2.0 world `cni-node-policy`: `cni-policy` plus the `node-policy` export. Its
/// imports are `v2`'s (mapped with `with`, so one set of Host impls serves both); only
/// the `node-policy` export's bindings are used from here.
pub mod v2n {
    wasmtime::component::bindgen!({
        path: "../wit/world.wit",
        world: "wasm-cni:plugin/cni-node-policy@0.2.0",
        with: {
            "wasm-cni:plugin/types": super::v2::wasm_cni::plugin::types,
            "wasm-cni:plugin/links": super::v2::wasm_cni::plugin::links,
            "wasm-cni:plugin/addresses": super::v2::wasm_cni::plugin::addresses,
            "wasm-cni:plugin/routes": super::v2::wasm_cni::plugin::routes,
            "wasm-cni:plugin/firewall": super::v2::wasm_cni::plugin::firewall,
            "wasm-cni:plugin/sysctl": super::v2::wasm_cni::plugin::sysctl,
            "wasm-cni:plugin/store": super::v2::wasm_cni::plugin::store,
            "wasm-cni:plugin/log": super::v2::wasm_cni::plugin::log,
            "wasm-cni:plugin/cluster": super::v2::wasm_cni::plugin::cluster,
            "wasm-cni:plugin/lock": super::v2::wasm_cni::plugin::lock,
        },
    });
}

/// `wasm-cni:plugin@0.1.0`, frozen (`wit/deps/plugin-0.1.0`): IPv4 only.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/plugin-0.1.0",
        world: "wasm-cni:plugin/cni-policy@0.1.0",
    });
}

/// The guest's memory: the total over all its linear memories and tables (a component
/// may have many), and how many of each it may create. Remembers whether it refused a
/// growth, to name the limit hit.
pub struct MemoryLimits {
    pub max_bytes: usize,
    /// Bytes of memories and tables (8 bytes an element) in use now.
    pub total: usize,
    pub hit: bool,
}

/// At most this many core instances, memories and tables in one guest: enough for a
/// component built by any of the toolchains in the guide, far from what a bomb needs.
pub const MAX_INSTANCES: usize = 64;
pub const MAX_MEMORIES: usize = 8;
pub const MAX_TABLES: usize = 32;
const TABLE_ELEMENT: usize = 8;

impl MemoryLimits {
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.max_bytes {
            self.hit = true;
            return false;
        }
        self.total = total;
        true
    }
}

impl wasmtime::ResourceLimiter for MemoryLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > 100_000 {
            return Ok(false);
        }
        Ok(self.grow(current * TABLE_ELEMENT, desired * TABLE_ELEMENT))
    }
    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Everything a guest call's store holds.
pub struct State {
    pub gate: Shared,
    pub limits: MemoryLimits,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    /// The guest's WASI stderr (panic messages end up here), kept for the log.
    pub stderr: MemoryOutputPipe,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What an import returns to the guest, before the version's error type.
type OpAnswer<T> = Result<T, OpError>;

/// A route as both versions' records carry it (text).
pub(crate) struct RouteText {
    pub destination: String,
    pub gateway: Option<String>,
    pub link: Option<String>,
}

/// Which address families a `list` answer carries: a 0.1.0 guest was promised IPv4.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Families {
    Both,
    Ipv4Only,
}

impl Families {
    /// Whether CIDR text `t` is shown (parsed, not guessed from its characters).
    fn shows(self, t: &str) -> bool {
        self == Families::Both || t.parse::<ipnetwork::Ipv4Network>().is_ok()
    }
}

/// `create-veth`'s `container-mac`, as the guest's version has it: absent in 0.1.0
/// (so its transcript shows the call as that guest made it).
#[derive(Clone, Copy)]
enum MacArg<'a> {
    Absent,
    Given(Option<&'a str>),
}

impl State {
    /// Run one host operation, timing it for the call log's breakdown and, when the
    /// gate keeps a transcript (`wasm-cni simulate`), writing down the call as the
    /// guest made it and what it got back.
    fn timed<T: Debug>(
        &mut self,
        op: &'static str,
        args: impl FnOnce() -> String,
        f: impl FnOnce(&mut Gate) -> Result<T, OpError>,
    ) -> OpAnswer<T> {
        let mut g = lock(&self.gate);
        let t = std::time::Instant::now();
        let waited = g.lock_wait;
        let r = f(&mut g);
        // a wait for the network's lock is the call log's `lock_us`, not host time
        let d = t.elapsed().saturating_sub(g.lock_wait - waited);
        g.note(op, d);
        if let Some(tr) = &mut g.transcript {
            let answer = match &r {
                Ok(v) => format!("ok {v:?}"),
                Err(e) => format!("error {}: {}", kind_name(e.kind), e.message),
            };
            tr.push(format!("{op}({}) -> {answer}", args()));
        }
        r
    }

    // The helpers that answer records take `to`, the version's conversion, so that a
    // transcript shows the answer as the guest's bindings have it.
    fn op_link_get<L: Debug>(
        &mut self,
        n: Ns,
        name: &str,
        to: impl FnOnce(LinkInfo) -> L,
    ) -> OpAnswer<Option<L>> {
        self.timed(
            "links.get",
            || format!("{n}, {}", quoted(name)),
            |s| Ok(s.link_get(n, name)?.map(to)),
        )
    }
    fn op_create_bridge<L: Debug>(
        &mut self,
        name: &str,
        mtu: Option<u32>,
        to: impl FnOnce(LinkInfo) -> L,
    ) -> OpAnswer<L> {
        self.timed(
            "links.create-bridge",
            || format!("{}, {}", quoted(name), or_none(&mtu)),
            |s| s.create_bridge(name, mtu).map(to),
        )
    }
    fn op_create_veth<P: Debug>(
        &mut self,
        host_name: &str,
        container_name: &str,
        mtu: Option<u32>,
        mac: MacArg,
        to: impl FnOnce(LinkInfo, LinkInfo) -> P,
    ) -> OpAnswer<P> {
        let container_mac = match mac {
            MacArg::Absent => None,
            MacArg::Given(m) => m,
        };
        self.timed(
            "links.create-veth",
            || {
                let mut a = format!(
                    "{}, {}, {}",
                    quoted(host_name),
                    quoted(container_name),
                    or_none(&mtu)
                );
                if let MacArg::Given(m) = mac {
                    a.push_str(&format!(", {}", m.map_or("none".into(), quoted)));
                }
                a
            },
            |s| {
                s.create_veth(host_name, container_name, mtu, container_mac)
                    .map(|(h, c)| to(h, c))
            },
        )
    }
    fn op_set_master(&mut self, name: &str, bridge: &str) -> OpAnswer<()> {
        self.timed(
            "links.set-master",
            || format!("{}, {}", quoted(name), quoted(bridge)),
            |s| s.set_master(name, bridge),
        )
    }
    fn op_set_up(&mut self, n: Ns, name: &str) -> OpAnswer<()> {
        self.timed(
            "links.set-up",
            || format!("{n}, {}", quoted(name)),
            |s| s.set_up(n, name),
        )
    }
    fn op_set_mtu(&mut self, n: Ns, name: &str, mtu: u32) -> OpAnswer<()> {
        self.timed(
            "links.set-mtu",
            || format!("{n}, {}, {mtu}", quoted(name)),
            |s| s.set_mtu(n, name, mtu),
        )
    }
    fn op_delete_link(&mut self, n: Ns, name: &str) -> OpAnswer<()> {
        self.timed(
            "links.delete",
            || format!("{n}, {}", quoted(name)),
            |s| s.delete_link(n, name),
        )
    }
    fn op_attachment_link(&mut self, container_id: &str, ifname: &str) -> String {
        let mut g = lock(&self.gate);
        let name = g.attachment_link(container_id, ifname);
        if let Some(tr) = &mut g.transcript {
            tr.push(format!(
                "links.attachment-link({}, {}) -> {}",
                quoted(container_id),
                quoted(ifname),
                quoted(&name)
            ));
        }
        name
    }

    fn op_address_add(&mut self, n: Ns, link: &str, address: &str) -> OpAnswer<()> {
        self.timed(
            "addresses.add",
            || format!("{n}, {}, {}", quoted(link), quoted(address)),
            |s| s.address_add(n, link, address),
        )
    }
    fn op_address_remove(&mut self, n: Ns, link: &str, address: &str) -> OpAnswer<()> {
        self.timed(
            "addresses.remove",
            || format!("{n}, {}, {}", quoted(link), quoted(address)),
            |s| s.address_remove(n, link, address),
        )
    }
    fn op_address_list(&mut self, n: Ns, link: &str, f: Families) -> OpAnswer<Vec<String>> {
        self.timed(
            "addresses.list",
            || format!("{n}, {}", quoted(link)),
            |s| {
                let mut l = s.address_list(n, link)?;
                l.retain(|a| f.shows(a));
                Ok(l)
            },
        )
    }

    fn op_route_add(&mut self, n: Ns, r: &RouteText) -> OpAnswer<()> {
        self.timed(
            "routes.add",
            || route_args(n, r),
            |s| s.route_add(n, &r.destination, r.gateway.as_deref(), r.link.as_deref()),
        )
    }
    fn op_route_remove(&mut self, n: Ns, r: &RouteText) -> OpAnswer<()> {
        self.timed(
            "routes.remove",
            || route_args(n, r),
            |s| s.route_remove(n, &r.destination, r.gateway.as_deref(), r.link.as_deref()),
        )
    }
    fn op_route_list<R: Debug>(
        &mut self,
        n: Ns,
        link: Option<&str>,
        f: Families,
        to: impl Fn(RouteText) -> R,
    ) -> OpAnswer<Vec<R>> {
        self.timed(
            "routes.list",
            || format!("{n}, {}", link.map_or("none".into(), quoted)),
            |s| {
                // a 0.1.0 guest's list dumps only the IPv4 table: a node with N pods
                // has about 3N IPv6 kernel routes it would otherwise pay for
                let routes = match f {
                    Families::Both => s.route_list(n, link)?,
                    Families::Ipv4Only => s.route_list_of(n, link, Family::V4)?,
                };
                Ok(routes
                    .into_iter()
                    .map(|r| RouteText {
                        destination: r.destination.to_string(),
                        gateway: r.gateway.map(|g| g.to_string()),
                        link: r.link,
                    })
                    .filter(|r| f.shows(&r.destination))
                    .map(to)
                    .collect())
            },
        )
    }

    fn op_allow_forward(&mut self, network: &str) -> OpAnswer<()> {
        self.timed(
            "firewall.allow-forward",
            || quoted(network),
            |s| s.allow_forward(network),
        )
    }
    fn op_masquerade(&mut self, source: &str, except: &[String]) -> OpAnswer<()> {
        self.timed(
            "firewall.masquerade",
            || format!("{}, {except:?}", quoted(source)),
            |s| s.masquerade(source, except),
        )
    }

    fn op_sysctl_get(&mut self, n: Ns, key: &str) -> OpAnswer<String> {
        self.timed(
            "sysctl.get",
            || format!("{n}, {}", quoted(key)),
            |s| s.sysctl_get(n, key),
        )
    }
    fn op_sysctl_set(&mut self, n: Ns, key: &str, value: &str) -> OpAnswer<()> {
        self.timed(
            "sysctl.set",
            || format!("{n}, {}, {}", quoted(key), quoted(value)),
            |s| s.sysctl_set(n, key, value),
        )
    }

    fn op_lock_acquire(&mut self) -> OpAnswer<()> {
        self.timed("lock.acquire", String::new, |s| s.lock_acquire())
    }
    fn op_lock_release(&mut self) {
        let _ = self.timed("lock.release", String::new, |s| {
            s.lock_release();
            Ok(())
        });
    }
    fn op_store_get(&mut self, key: &str) -> OpAnswer<Option<String>> {
        self.timed("store.get", || quoted(key), |s| s.store_get(key))
    }
    fn op_store_put(&mut self, key: &str, value: &str) -> OpAnswer<()> {
        self.timed(
            "store.put",
            || format!("{}, {}", quoted(key), quoted(value)),
            |s| s.store_put(key, value),
        )
    }
    fn op_store_delete(&mut self, key: &str) -> OpAnswer<bool> {
        self.timed("store.delete", || quoted(key), |s| s.store_delete(key))
    }
    fn op_store_list(&mut self, prefix: &str) -> OpAnswer<Vec<String>> {
        self.timed("store.list", || quoted(prefix), |s| s.store_list(prefix))
    }

    fn op_this_node<N: Debug>(
        &mut self,
        to: impl FnOnce(LinkInfo, Vec<String>, String) -> N,
    ) -> OpAnswer<N> {
        self.timed("cluster.this-node", String::new, |s| {
            let (uplink, ips, vxlan) = s.this_node()?;
            Ok(to(
                uplink,
                ips.iter().map(|i| i.to_string()).collect(),
                vxlan,
            ))
        })
    }
    fn op_peers<P: Debug>(&mut self, to: impl Fn(Peer) -> P) -> OpAnswer<Vec<P>> {
        self.timed("cluster.peers", String::new, |s| {
            Ok(s.peers()?.into_iter().map(to).collect())
        })
    }
    #[allow(clippy::too_many_arguments)]
    fn op_create_vxlan<L: Debug>(
        &mut self,
        name: &str,
        vni: u32,
        port: u16,
        local: &str,
        mtu: Option<u32>,
        mac: Option<&str>,
        to: impl FnOnce(LinkInfo) -> L,
    ) -> OpAnswer<L> {
        self.timed(
            "cluster.create-vxlan",
            || {
                format!(
                    "{}, {vni}, {port}, {}, {}, {}",
                    quoted(name),
                    quoted(local),
                    or_none(&mtu),
                    mac.map_or("none".into(), quoted)
                )
            },
            |s| s.create_vxlan(name, vni, port, local, mtu, mac).map(to),
        )
    }
    fn op_fdb_add(&mut self, link: &str, mac: &str, remote: &str) -> OpAnswer<()> {
        self.timed(
            "cluster.fdb-add",
            || fdb_args(link, mac, remote),
            |s| s.fdb_add(link, mac, remote),
        )
    }
    fn op_fdb_remove(&mut self, link: &str, mac: &str, remote: &str) -> OpAnswer<()> {
        self.timed(
            "cluster.fdb-remove",
            || fdb_args(link, mac, remote),
            |s| s.fdb_remove(link, mac, remote),
        )
    }
    fn op_fdb_list<F: Debug>(
        &mut self,
        link: &str,
        to: impl Fn(FdbEntry) -> F,
    ) -> OpAnswer<Vec<F>> {
        self.timed(
            "cluster.fdb-list",
            || quoted(link),
            |s| Ok(s.fdb_list(link)?.into_iter().map(to).collect()),
        )
    }
    fn op_neighbor_add(&mut self, link: &str, address: &str, mac: &str) -> OpAnswer<()> {
        self.timed(
            "cluster.neighbor-add",
            || {
                format!(
                    "{}, {{address: {}, mac: {}}}",
                    quoted(link),
                    quoted(address),
                    quoted(mac)
                )
            },
            |s| s.neighbor_add(link, address, mac),
        )
    }
    fn op_neighbor_remove(&mut self, link: &str, address: &str) -> OpAnswer<()> {
        self.timed(
            "cluster.neighbor-remove",
            || format!("{}, {}", quoted(link), quoted(address)),
            |s| s.neighbor_remove(link, address),
        )
    }
    fn op_neighbor_list<N: Debug>(
        &mut self,
        link: &str,
        to: impl Fn(NeighborEntry) -> N,
    ) -> OpAnswer<Vec<N>> {
        self.timed(
            "cluster.neighbor-list",
            || quoted(link),
            |s| Ok(s.neighbor_list(link)?.into_iter().map(to).collect()),
        )
    }

    /// `level` as the log shows it: DEBUG, INFO, WARN, ERROR.
    fn op_log(&mut self, level: &str, message: String) {
        let m = super::truncate(message, 4096);
        let mut g = lock(&self.gate);
        if let Some(tr) = &mut g.transcript {
            tr.push(format!(
                "log.write({}, {})",
                level.to_lowercase(),
                quoted(&m)
            ));
        }
        g.guest_log(level, &format!("guest: {m}"));
    }
}

fn kind_name(k: OpKind) -> &'static str {
    match k {
        OpKind::Denied => "denied",
        OpKind::NotFound => "not-found",
        OpKind::AlreadyExists => "already-exists",
        OpKind::InvalidArgument => "invalid-argument",
        OpKind::Failed => "failed",
    }
}

/// Arguments as a transcript shows them: WIT names, strings quoted, `none` for absent.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}
fn or_none<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("none".into(), |x| format!("{x}"))
}
fn quoted_or_none(v: &Option<String>) -> String {
    v.as_deref().map_or("none".into(), quoted)
}
fn fdb_args(link: &str, mac: &str, remote: &str) -> String {
    format!(
        "{}, {{mac: {}, remote: {}}}",
        quoted(link),
        quoted(mac),
        quoted(remote)
    )
}
fn route_args(n: Ns, r: &RouteText) -> String {
    format!(
        "{n}, {{destination: {}, gateway: {}, link: {}}}",
        quoted(&r.destination),
        quoted_or_none(&r.gateway),
        quoted_or_none(&r.link)
    )
}

/// The adapters whose WIT is the same in every version, for version module `$v`:
/// type conversions, and the Host traits of the interfaces that did not change.
macro_rules! same_in_every_version {
    ($v:ident) => {
        impl From<$v::wasm_cni::plugin::types::Netns> for Ns {
            fn from(n: $v::wasm_cni::plugin::types::Netns) -> Ns {
                match n {
                    $v::wasm_cni::plugin::types::Netns::Host => Ns::Host,
                    $v::wasm_cni::plugin::types::Netns::Container => Ns::Container,
                }
            }
        }

        impl From<OpError> for $v::wasm_cni::plugin::types::HostError {
            fn from(e: OpError) -> Self {
                use $v::wasm_cni::plugin::types::ErrorKind as K;
                $v::wasm_cni::plugin::types::HostError {
                    kind: match e.kind {
                        OpKind::Denied => K::Denied,
                        OpKind::NotFound => K::NotFound,
                        OpKind::AlreadyExists => K::AlreadyExists,
                        OpKind::InvalidArgument => K::InvalidArgument,
                        OpKind::Failed => K::Failed,
                    },
                    message: e.message,
                }
            }
        }

        impl From<LinkInfo> for $v::wasm_cni::plugin::types::LinkInfo {
            fn from(l: LinkInfo) -> Self {
                $v::wasm_cni::plugin::types::LinkInfo {
                    name: l.name,
                    index: l.index,
                    mac: l.mac,
                    mtu: l.mtu,
                    up: l.up,
                }
            }
        }

        impl From<$v::wasm_cni::plugin::routes::Route> for RouteText {
            fn from(r: $v::wasm_cni::plugin::routes::Route) -> Self {
                RouteText {
                    destination: r.destination,
                    gateway: r.gateway,
                    link: r.link,
                }
            }
        }

        impl From<RouteText> for $v::wasm_cni::plugin::routes::Route {
            fn from(r: RouteText) -> Self {
                $v::wasm_cni::plugin::routes::Route {
                    destination: r.destination,
                    gateway: r.gateway,
                    link: r.link,
                }
            }
        }

        impl $v::wasm_cni::plugin::types::Host for State {}

        impl $v::wasm_cni::plugin::firewall::Host for State {
            fn allow_forward(
                &mut self,
                network: String,
            ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
                Ok(self.op_allow_forward(&network)?)
            }
            fn masquerade(
                &mut self,
                source: String,
                except: Vec<String>,
            ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
                Ok(self.op_masquerade(&source, &except)?)
            }
        }

        impl $v::wasm_cni::plugin::sysctl::Host for State {
            fn get(
                &mut self,
                n: $v::wasm_cni::plugin::types::Netns,
                key: String,
            ) -> Result<String, $v::wasm_cni::plugin::types::HostError> {
                Ok(self.op_sysctl_get(n.into(), &key)?)
            }
            fn set(
                &mut self,
                n: $v::wasm_cni::plugin::types::Netns,
                key: String,
                value: String,
            ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
                Ok(self.op_sysctl_set(n.into(), &key, &value)?)
            }
        }

        impl $v::wasm_cni::plugin::store::Host for State {
            fn get(
                &mut self,
                key: String,
            ) -> Result<Option<String>, $v::wasm_cni::plugin::types::HostError> {
                Ok(self.op_store_get(&key)?)
            }
            fn put(
                &mut self,
                key: String,
                value: String,
            ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
                Ok(self.op_store_put(&key, &value)?)
            }
            fn delete(
                &mut self,
                key: String,
            ) -> Result<bool, $v::wasm_cni::plugin::types::HostError> {
                Ok(self.op_store_delete(&key)?)
            }
            fn list(
                &mut self,
                prefix: String,
            ) -> Result<Vec<String>, $v::wasm_cni::plugin::types::HostError> {
                Ok(self.op_store_list(&prefix)?)
            }
        }

        impl $v::wasm_cni::plugin::log::Host for State {
            fn write(&mut self, level: $v::wasm_cni::plugin::log::Level, message: String) {
                use $v::wasm_cni::plugin::log::Level as L;
                let level = match level {
                    L::Debug => "DEBUG",
                    L::Info => "INFO",
                    L::Warn => "WARN",
                    L::Error => "ERROR",
                };
                self.op_log(level, message)
            }
        }
    };
}

/// The `links` methods other than `create-veth`, and the `addresses` and `routes`
/// methods other than `list`, for version module `$v` (used inside its impl blocks).
macro_rules! links_same {
    ($v:ident) => {
        fn get(
            &mut self,
            n: $v::wasm_cni::plugin::types::Netns,
            name: String,
        ) -> Result<
            Option<$v::wasm_cni::plugin::types::LinkInfo>,
            $v::wasm_cni::plugin::types::HostError,
        > {
            Ok(self.op_link_get(n.into(), &name, Into::into)?)
        }
        fn create_bridge(
            &mut self,
            name: String,
            mtu: Option<u32>,
        ) -> Result<$v::wasm_cni::plugin::types::LinkInfo, $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_create_bridge(&name, mtu, Into::into)?)
        }
        fn set_master(
            &mut self,
            name: String,
            bridge: String,
        ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_set_master(&name, &bridge)?)
        }
        fn set_up(
            &mut self,
            n: $v::wasm_cni::plugin::types::Netns,
            name: String,
        ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_set_up(n.into(), &name)?)
        }
        fn set_mtu(
            &mut self,
            n: $v::wasm_cni::plugin::types::Netns,
            name: String,
            mtu: u32,
        ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_set_mtu(n.into(), &name, mtu)?)
        }
        fn delete(
            &mut self,
            n: $v::wasm_cni::plugin::types::Netns,
            name: String,
        ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_delete_link(n.into(), &name)?)
        }
        fn attachment_link(&mut self, container_id: String, ifname: String) -> String {
            self.op_attachment_link(&container_id, &ifname)
        }
    };
}

macro_rules! addresses_same {
    ($v:ident) => {
        fn add(
            &mut self,
            n: $v::wasm_cni::plugin::types::Netns,
            link: String,
            address: String,
        ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_address_add(n.into(), &link, &address)?)
        }
        fn remove(
            &mut self,
            n: $v::wasm_cni::plugin::types::Netns,
            link: String,
            address: String,
        ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_address_remove(n.into(), &link, &address)?)
        }
    };
}

macro_rules! routes_same {
    ($v:ident) => {
        fn add(
            &mut self,
            n: $v::wasm_cni::plugin::types::Netns,
            r: $v::wasm_cni::plugin::routes::Route,
        ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_route_add(n.into(), &r.into())?)
        }
        fn remove(
            &mut self,
            n: $v::wasm_cni::plugin::types::Netns,
            r: $v::wasm_cni::plugin::routes::Route,
        ) -> Result<(), $v::wasm_cni::plugin::types::HostError> {
            Ok(self.op_route_remove(n.into(), &r.into())?)
        }
    };
}

same_in_every_version!(v2);
same_in_every_version!(v1);

// 0.2.0: both families, `container-mac`.
impl v2::wasm_cni::plugin::links::Host for State {
    links_same!(v2);
    fn create_veth(
        &mut self,
        host_name: String,
        container_name: String,
        mtu: Option<u32>,
        container_mac: Option<String>,
    ) -> Result<v2::wasm_cni::plugin::links::VethPair, v2::wasm_cni::plugin::types::HostError> {
        let mac = MacArg::Given(container_mac.as_deref());
        let pair = |h: LinkInfo, c: LinkInfo| v2::wasm_cni::plugin::links::VethPair {
            host: h.into(),
            container: c.into(),
        };
        Ok(self.op_create_veth(&host_name, &container_name, mtu, mac, pair)?)
    }
}

impl v2::wasm_cni::plugin::addresses::Host for State {
    addresses_same!(v2);
    fn list(
        &mut self,
        n: v2::wasm_cni::plugin::types::Netns,
        link: String,
    ) -> Result<Vec<String>, v2::wasm_cni::plugin::types::HostError> {
        Ok(self.op_address_list(n.into(), &link, Families::Both)?)
    }
}

impl v2::wasm_cni::plugin::routes::Host for State {
    routes_same!(v2);
    fn list(
        &mut self,
        n: v2::wasm_cni::plugin::types::Netns,
        link: Option<String>,
    ) -> Result<Vec<v2::wasm_cni::plugin::routes::Route>, v2::wasm_cni::plugin::types::HostError>
    {
        Ok(self.op_route_list(n.into(), link.as_deref(), Families::Both, Into::into)?)
    }
}

// 0.1.0: IPv4 only in `list` answers (what a 0.1.0 guest was promised), no `container-mac`.
impl v1::wasm_cni::plugin::links::Host for State {
    links_same!(v1);
    fn create_veth(
        &mut self,
        host_name: String,
        container_name: String,
        mtu: Option<u32>,
    ) -> Result<v1::wasm_cni::plugin::links::VethPair, v1::wasm_cni::plugin::types::HostError> {
        let pair = |h: LinkInfo, c: LinkInfo| v1::wasm_cni::plugin::links::VethPair {
            host: h.into(),
            container: c.into(),
        };
        Ok(self.op_create_veth(&host_name, &container_name, mtu, MacArg::Absent, pair)?)
    }
}

impl v1::wasm_cni::plugin::addresses::Host for State {
    addresses_same!(v1);
    fn list(
        &mut self,
        n: v1::wasm_cni::plugin::types::Netns,
        link: String,
    ) -> Result<Vec<String>, v1::wasm_cni::plugin::types::HostError> {
        Ok(self.op_address_list(n.into(), &link, Families::Ipv4Only)?)
    }
}

impl v1::wasm_cni::plugin::routes::Host for State {
    routes_same!(v1);
    fn list(
        &mut self,
        n: v1::wasm_cni::plugin::types::Netns,
        link: Option<String>,
    ) -> Result<Vec<v1::wasm_cni::plugin::routes::Route>, v1::wasm_cni::plugin::types::HostError>
    {
        Ok(self.op_route_list(n.into(), link.as_deref(), Families::Ipv4Only, Into::into)?)
    }
}

// 0.2.0 `lock`: the explicit critical section.
impl v2::wasm_cni::plugin::lock::Host for State {
    fn acquire(&mut self) -> Result<(), v2::wasm_cni::plugin::types::HostError> {
        Ok(self.op_lock_acquire()?)
    }
    fn release(&mut self) {
        self.op_lock_release()
    }
}

// 0.2.0 `cluster`: the cluster's nodes, the VXLAN link and its entries.
impl v2::wasm_cni::plugin::cluster::Host for State {
    fn this_node(
        &mut self,
    ) -> Result<v2::wasm_cni::plugin::cluster::Node, v2::wasm_cni::plugin::types::HostError> {
        let node = |uplink: LinkInfo, ips, vxlan_link| v2::wasm_cni::plugin::cluster::Node {
            uplink: uplink.into(),
            ips,
            vxlan_link,
        };
        Ok(self.op_this_node(node)?)
    }
    fn peers(
        &mut self,
    ) -> Result<Vec<v2::wasm_cni::plugin::cluster::Peer>, v2::wasm_cni::plugin::types::HostError>
    {
        let peer = |p: Peer| v2::wasm_cni::plugin::cluster::Peer {
            name: p.name,
            ips: p.ips.iter().map(|i| i.to_string()).collect(),
            pod_cidrs: p.pod_cidrs.iter().map(|c| c.to_string()).collect(),
        };
        Ok(self.op_peers(peer)?)
    }
    fn create_vxlan(
        &mut self,
        name: String,
        vni: u32,
        port: u16,
        local: String,
        mtu: Option<u32>,
        mac: Option<String>,
    ) -> Result<v2::wasm_cni::plugin::types::LinkInfo, v2::wasm_cni::plugin::types::HostError> {
        Ok(self.op_create_vxlan(&name, vni, port, &local, mtu, mac.as_deref(), Into::into)?)
    }
    fn fdb_add(
        &mut self,
        link: String,
        e: v2::wasm_cni::plugin::cluster::FdbEntry,
    ) -> Result<(), v2::wasm_cni::plugin::types::HostError> {
        Ok(self.op_fdb_add(&link, &e.mac, &e.remote)?)
    }
    fn fdb_remove(
        &mut self,
        link: String,
        e: v2::wasm_cni::plugin::cluster::FdbEntry,
    ) -> Result<(), v2::wasm_cni::plugin::types::HostError> {
        Ok(self.op_fdb_remove(&link, &e.mac, &e.remote)?)
    }
    fn fdb_list(
        &mut self,
        link: String,
    ) -> Result<Vec<v2::wasm_cni::plugin::cluster::FdbEntry>, v2::wasm_cni::plugin::types::HostError>
    {
        let entry = |e: FdbEntry| v2::wasm_cni::plugin::cluster::FdbEntry {
            mac: e.mac.to_string(),
            remote: e.remote.to_string(),
        };
        Ok(self.op_fdb_list(&link, entry)?)
    }
    fn neighbor_add(
        &mut self,
        link: String,
        e: v2::wasm_cni::plugin::cluster::Neighbor,
    ) -> Result<(), v2::wasm_cni::plugin::types::HostError> {
        Ok(self.op_neighbor_add(&link, &e.address, &e.mac)?)
    }
    fn neighbor_remove(
        &mut self,
        link: String,
        address: String,
    ) -> Result<(), v2::wasm_cni::plugin::types::HostError> {
        Ok(self.op_neighbor_remove(&link, &address)?)
    }
    fn neighbor_list(
        &mut self,
        link: String,
    ) -> Result<Vec<v2::wasm_cni::plugin::cluster::Neighbor>, v2::wasm_cni::plugin::types::HostError>
    {
        let entry = |e: NeighborEntry| v2::wasm_cni::plugin::cluster::Neighbor {
            address: e.address.to_string(),
            mac: e.mac.to_string(),
        };
        Ok(self.op_neighbor_list(&link, entry)?)
    }
}

#[cfg(test)]
mod tests {
    use super::Families;

    #[test]
    fn a_0_1_0_guest_sees_ipv4_only() {
        for t in ["200.200.1.2/24", "0.0.0.0/0", "10.0.0.1/32"] {
            assert!(
                Families::Ipv4Only.shows(t) && Families::Both.shows(t),
                "{t}"
            );
        }
        for t in [
            "fd00:200:1::2/64",
            "::/0",
            "fe80::1/64",
            "::ffff:10.0.0.1/128",
        ] {
            assert!(!Families::Ipv4Only.shows(t), "{t}");
            assert!(Families::Both.shows(t), "{t}");
        }
    }
}
