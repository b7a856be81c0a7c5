//! The generated bindings (private to this module tree) and the guest's imports, each a
//! thin adapter onto the `Gate`, where grants and the journal live.

use crate::gate::{lock, Gate, Shared};
use crate::node::{Ns, OpError, OpKind};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "cni-policy",
});

pub use self::exports::wasm_cni::plugin0_2_0::policy;
use self::wasm_cni::plugin0_2_0::{addresses, firewall, links, log, routes, store, sysctl, types};

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

fn ns(n: types::Netns) -> Ns {
    match n {
        types::Netns::Host => Ns::Host,
        types::Netns::Container => Ns::Container,
    }
}

impl From<OpError> for types::HostError {
    fn from(e: OpError) -> Self {
        types::HostError {
            kind: match e.kind {
                OpKind::Denied => types::ErrorKind::Denied,
                OpKind::NotFound => types::ErrorKind::NotFound,
                OpKind::AlreadyExists => types::ErrorKind::AlreadyExists,
                OpKind::InvalidArgument => types::ErrorKind::InvalidArgument,
                OpKind::Failed => types::ErrorKind::Failed,
            },
            message: e.message,
        }
    }
}

/// What an import returns to the guest.
type HostResult<T> = Result<T, types::HostError>;

impl State {
    /// Run one host operation, timing it for the call log's breakdown and, when the
    /// gate keeps a transcript (`wasm-cni simulate`), writing down the call as the
    /// guest made it and what it got back.
    fn timed<T: std::fmt::Debug>(
        &mut self,
        op: &'static str,
        args: impl FnOnce() -> String,
        f: impl FnOnce(&mut Gate) -> Result<T, OpError>,
    ) -> HostResult<T> {
        let mut g = lock(&self.gate);
        let t = std::time::Instant::now();
        let r = f(&mut g);
        g.note(op, t.elapsed());
        if let Some(tr) = &mut g.transcript {
            let answer = match &r {
                Ok(v) => format!("ok {v:?}"),
                Err(e) => format!("error {}: {}", kind_name(e.kind), e.message),
            };
            tr.push(format!("{op}({}) -> {answer}", args()));
        }
        Ok(r?)
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
fn route_args(n: types::Netns, r: &routes::Route) -> String {
    format!(
        "{}, {{destination: {}, gateway: {}, link: {}}}",
        ns(n),
        quoted(&r.destination),
        quoted_or_none(&r.gateway),
        quoted_or_none(&r.link)
    )
}

fn link_info(l: crate::node::LinkInfo) -> types::LinkInfo {
    types::LinkInfo {
        name: l.name,
        index: l.index,
        mac: l.mac,
        mtu: l.mtu,
        up: l.up,
    }
}

impl types::Host for State {}

impl links::Host for State {
    fn get(&mut self, n: types::Netns, name: String) -> HostResult<Option<types::LinkInfo>> {
        self.timed(
            "links.get",
            || format!("{}, {}", ns(n), quoted(&name)),
            |s| s.link_get(ns(n), &name).map(|l| l.map(link_info)),
        )
    }
    fn create_bridge(&mut self, name: String, mtu: Option<u32>) -> HostResult<types::LinkInfo> {
        self.timed(
            "links.create-bridge",
            || format!("{}, {}", quoted(&name), or_none(&mtu)),
            |s| s.create_bridge(&name, mtu).map(link_info),
        )
    }
    fn create_veth(
        &mut self,
        host_name: String,
        container_name: String,
        mtu: Option<u32>,
        // the contract branch passes it on; ignored here until then
        _container_mac: Option<String>,
    ) -> HostResult<links::VethPair> {
        self.timed(
            "links.create-veth",
            || {
                format!(
                    "{}, {}, {}",
                    quoted(&host_name),
                    quoted(&container_name),
                    or_none(&mtu)
                )
            },
            |s| {
                s.create_veth(&host_name, &container_name, mtu)
                    .map(|(h, c)| links::VethPair {
                        host: link_info(h),
                        container: link_info(c),
                    })
            },
        )
    }
    fn set_master(&mut self, name: String, bridge: String) -> HostResult<()> {
        self.timed(
            "links.set-master",
            || format!("{}, {}", quoted(&name), quoted(&bridge)),
            |s| s.set_master(&name, &bridge),
        )
    }
    fn set_up(&mut self, n: types::Netns, name: String) -> HostResult<()> {
        self.timed(
            "links.set-up",
            || format!("{}, {}", ns(n), quoted(&name)),
            |s| s.set_up(ns(n), &name),
        )
    }
    fn set_mtu(&mut self, n: types::Netns, name: String, mtu: u32) -> HostResult<()> {
        self.timed(
            "links.set-mtu",
            || format!("{}, {}, {mtu}", ns(n), quoted(&name)),
            |s| s.set_mtu(ns(n), &name, mtu),
        )
    }
    fn delete(&mut self, n: types::Netns, name: String) -> HostResult<()> {
        self.timed(
            "links.delete",
            || format!("{}, {}", ns(n), quoted(&name)),
            |s| s.delete_link(ns(n), &name),
        )
    }
    fn attachment_link(&mut self, container_id: String, ifname: String) -> String {
        let mut g = lock(&self.gate);
        let name = g.attachment_link(&container_id, &ifname);
        if let Some(tr) = &mut g.transcript {
            tr.push(format!(
                "links.attachment-link({}, {}) -> {}",
                quoted(&container_id),
                quoted(&ifname),
                quoted(&name)
            ));
        }
        name
    }
}

impl addresses::Host for State {
    fn add(&mut self, n: types::Netns, link: String, address: String) -> HostResult<()> {
        self.timed(
            "addresses.add",
            || format!("{}, {}, {}", ns(n), quoted(&link), quoted(&address)),
            |s| s.address_add(ns(n), &link, &address),
        )
    }
    fn remove(&mut self, n: types::Netns, link: String, address: String) -> HostResult<()> {
        self.timed(
            "addresses.remove",
            || format!("{}, {}, {}", ns(n), quoted(&link), quoted(&address)),
            |s| s.address_remove(ns(n), &link, &address),
        )
    }
    fn list(&mut self, n: types::Netns, link: String) -> HostResult<Vec<String>> {
        self.timed(
            "addresses.list",
            || format!("{}, {}", ns(n), quoted(&link)),
            |s| s.address_list(ns(n), &link),
        )
    }
}

impl routes::Host for State {
    fn add(&mut self, n: types::Netns, r: routes::Route) -> HostResult<()> {
        self.timed(
            "routes.add",
            || route_args(n, &r),
            |s| {
                s.route_add(
                    ns(n),
                    &r.destination,
                    r.gateway.as_deref(),
                    r.link.as_deref(),
                )
            },
        )
    }
    fn remove(&mut self, n: types::Netns, r: routes::Route) -> HostResult<()> {
        self.timed(
            "routes.remove",
            || route_args(n, &r),
            |s| {
                s.route_remove(
                    ns(n),
                    &r.destination,
                    r.gateway.as_deref(),
                    r.link.as_deref(),
                )
            },
        )
    }
    fn list(&mut self, n: types::Netns, link: Option<String>) -> HostResult<Vec<routes::Route>> {
        self.timed(
            "routes.list",
            || format!("{}, {}", ns(n), quoted_or_none(&link)),
            |s| {
                Ok(s.route_list(ns(n), link.as_deref())?
                    .into_iter()
                    .map(|r| routes::Route {
                        destination: r.destination.to_string(),
                        gateway: r.gateway.map(|g| g.to_string()),
                        link: r.link,
                    })
                    .collect())
            },
        )
    }
}

impl firewall::Host for State {
    fn allow_forward(&mut self, network: String) -> HostResult<()> {
        self.timed(
            "firewall.allow-forward",
            || quoted(&network),
            |s| s.allow_forward(&network),
        )
    }
    fn masquerade(&mut self, source: String, except: Vec<String>) -> HostResult<()> {
        self.timed(
            "firewall.masquerade",
            || format!("{}, {except:?}", quoted(&source)),
            |s| s.masquerade(&source, &except),
        )
    }
}

impl sysctl::Host for State {
    fn get(&mut self, n: types::Netns, key: String) -> HostResult<String> {
        self.timed(
            "sysctl.get",
            || format!("{}, {}", ns(n), quoted(&key)),
            |s| s.sysctl_get(ns(n), &key),
        )
    }
    fn set(&mut self, n: types::Netns, key: String, value: String) -> HostResult<()> {
        self.timed(
            "sysctl.set",
            || format!("{}, {}, {}", ns(n), quoted(&key), quoted(&value)),
            |s| s.sysctl_set(ns(n), &key, &value),
        )
    }
}

impl store::Host for State {
    fn get(&mut self, key: String) -> HostResult<Option<String>> {
        self.timed("store.get", || quoted(&key), |s| s.store_get(&key))
    }
    fn put(&mut self, key: String, value: String) -> HostResult<()> {
        self.timed(
            "store.put",
            || format!("{}, {}", quoted(&key), quoted(&value)),
            |s| s.store_put(&key, &value),
        )
    }
    fn delete(&mut self, key: String) -> HostResult<bool> {
        self.timed("store.delete", || quoted(&key), |s| s.store_delete(&key))
    }
    fn list(&mut self, prefix: String) -> HostResult<Vec<String>> {
        self.timed("store.list", || quoted(&prefix), |s| s.store_list(&prefix))
    }
}

impl log::Host for State {
    fn write(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => "DEBUG",
            log::Level::Info => "INFO",
            log::Level::Warn => "WARN",
            log::Level::Error => "ERROR",
        };
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
