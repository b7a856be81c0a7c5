//! Running a guest: engine and cache (`engine`), bindings and imports (`host`), and one
//! bounded call: a wall-clock deadline (epoch interruption), a memory cap, no WASI
//! filesystem, network, environment or stdio (stdout is discarded, stderr kept for the
//! log).

pub mod check;
pub(crate) mod engine;
pub(crate) mod host;

use crate::cni::output::{AddResult, Dns, Interface, IpConfig, Route};
use crate::error::{Error, Result};
use crate::gate::{Gate, Shared};
use host::{v1, v2, v2n, MemoryLimits, State};
use std::path::Path;
use std::time::{Duration, Instant};
use v2n::exports::wasm_cni::plugin::node_policy;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{Deterministic, WasiCtxBuilder};

pub(crate) use engine::CacheOutcome;

/// A contract version the runner serves. Each has its bindings in `host` (`v1`, `v2`)
/// and its arm in `Guest`; a guest implements exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `wasm-cni:plugin@0.2.0`: both address families, requested ips/mac.
    V0_2,
    /// `wasm-cni:plugin@0.1.0`, frozen: served through its adapter (IPv4-only lists).
    V0_1,
}

/// Every world the runner serves, newest first.
pub const WORLDS: [World; 2] = [World::V0_2, World::V0_1];

impl World {
    /// The world's full name, e.g. `wasm-cni:plugin/cni-policy@0.2.0`.
    pub fn name(self) -> &'static str {
        match self {
            World::V0_2 => "wasm-cni:plugin/cni-policy@0.2.0",
            World::V0_1 => "wasm-cni:plugin/cni-policy@0.1.0",
        }
    }

    /// The package version, e.g. `0.2.0`.
    pub fn version(self) -> &'static str {
        self.name().rsplit_once('@').map_or("", |(_, v)| v)
    }

    /// The world a component implements, from the version of the
    /// `wasm-cni:plugin/policy` interface it exports (semver-compatible, as the linker
    /// matches: a 0.1.3 export is served as 0.1.0).
    pub fn of_exports<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<World> {
        names.into_iter().find_map(|n| {
            let v = n.strip_prefix("wasm-cni:plugin/policy@")?;
            WORLDS
                .into_iter()
                .find(|w| check::compatible(v, w.version()))
        })
    }
}

/// The node-level export (`wasm-cni reconcile`), served in 0.2.x.
pub const NODE_POLICY: &str = "wasm-cni:plugin/node-policy";

/// Does a component of `world` export `node-policy` (of a version compatible with the
/// world's)? A 0.1.0 guest never does.
pub fn exports_node_policy<'a>(world: World, names: impl IntoIterator<Item = &'a str>) -> bool {
    world == World::V0_2
        && names.into_iter().any(|n| {
            n.strip_prefix(NODE_POLICY)
                .and_then(|rest| rest.strip_prefix('@'))
                .is_some_and(|v| check::compatible(v, World::V0_2.version()))
        })
}

/// Whether the compiled guest exports `node-policy`.
pub(crate) fn has_node_policy(engine: &Engine, component: &Component, path: &Path) -> Result<bool> {
    let world = world_of(engine, component, path)?;
    let ty = component.component_type();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    Ok(exports_node_policy(world, names.iter().map(String::as_str)))
}

/// Whether the guest imports `lock` (0.2.0): it then holds the network's lock only in
/// its critical sections (`Gate::explicit_lock`).
pub(crate) fn imports_lock(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(n, _)| n.starts_with("wasm-cni:plugin/lock@"))
}

/// The supported worlds, for messages: `A or B`.
pub fn worlds_text() -> String {
    WORLDS.map(World::name).join(" or ")
}

/// One attachment's request, as the guest gets it.
pub(crate) struct Request {
    pub container_id: String,
    pub ifname: String,
    pub host_link: String,
    pub has_netns: bool,
    pub args: Vec<(String, String)>,
    /// Requested addresses (canonical text, either family, at most one of each) and
    /// MAC: a 0.2.0 guest gets them, a 0.1.0 one still reads the raw config and args.
    pub ips: Vec<String>,
    pub mac: Option<String>,
    pub config: String,
}

/// What to ask the guest.
pub(crate) enum Call {
    Add(Request),
    Del(Request),
    Check(Request),
    Gc {
        config: String,
        valid: Vec<(String, String)>,
    },
    Status {
        config: String,
    },
    /// `node-policy.reconcile` (the guest must export it).
    Reconcile {
        config: String,
    },
}

/// What the guest answered.
pub(crate) enum Reply {
    Added(AddResult),
    Done,
}

/// Time spent in each step of `run`, in microseconds.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Phases {
    pub linker_us: u128,
    pub instantiate_us: u128,
    pub guest_us: u128,
}

fn linker(engine: &Engine, world: World, component: &Component) -> Result<Linker<State>> {
    let mut l: Linker<State> = Linker::new(engine);
    link_wasi(&mut l, engine, component)
        .map_err(|e| Error::Internal(format!("linking WASI: {e}")))?;
    // only the imports of the world the guest exports: a guest links against its own
    // version, and each version's functions cost linker time on every call
    // (measured: both worlds' took 0.04 ms more per call than one)
    let link_err = |e: wasmtime::Error| Error::Internal(format!("linking host functions: {e}"));
    match world {
        World::V0_2 => v2::CniPolicy::add_to_linker::<State, HasSelf<State>>(&mut l, |s| s),
        World::V0_1 => v1::CniPolicy::add_to_linker::<State, HasSelf<State>>(&mut l, |s| s),
    }
    .map_err(link_err)?;
    Ok(l)
}

/// `&mut ResourceTable` as the host of WASI's io interfaces (as wasmtime-wasi links them).
struct WasiIo;

impl wasmtime::component::HasData for WasiIo {
    type Data<'a> = &'a mut ResourceTable;
}

fn io_table(t: &mut State) -> &mut ResourceTable {
    wasmtime_wasi::WasiView::ctx(t).table
}

/// WASI p2 as `wasmtime_wasi::p2::add_to_linker_sync` links it, but only the interfaces
/// the component imports: a Rust guest imports 8 of its 24, and defining the others cost
/// every call linker time (measured in docs/bench.md).
fn link_wasi(
    l: &mut Linker<State>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.split('@').next().unwrap_or(name).to_string())
        .collect();
    let wants = |name: &str| imports.iter().any(|i| i == name);
    // each row: the interface's name, its bindings' module, the host data type and the
    // accessor `add_to_linker_sync` uses for it
    macro_rules! link {
        ($($name:literal => $($m:ident)::+, $data:ty, $get:expr;)*) => {$(
            if wants($name) {
                $($m)::+::add_to_linker::<State, $data>(l, $get)?;
            }
        )*};
    }
    let clocks = <State as WasiClocksView>::clocks;
    let fs = <State as WasiFilesystemView>::filesystem;
    let rand = <State as WasiRandomView>::random;
    let cli = <State as WasiCliView>::cli;
    let net = <State as WasiSocketsView>::sockets;
    link! {
        "wasi:io/error" => wasmtime_wasi::p2::bindings::io::error, WasiIo, io_table;
        "wasi:io/poll" => sync::io::poll, WasiIo, io_table;
        "wasi:io/streams" => sync::io::streams, WasiIo, io_table;
        "wasi:clocks/wall-clock" => clocks::wall_clock, WasiClocks, clocks;
        "wasi:clocks/monotonic-clock" => clocks::monotonic_clock, WasiClocks, clocks;
        "wasi:filesystem/types" => sync::filesystem::types, WasiFilesystem, fs;
        "wasi:filesystem/preopens" => filesystem::preopens, WasiFilesystem, fs;
        "wasi:random/random" => random::random, WasiRandom, rand;
        "wasi:random/insecure" => random::insecure, WasiRandom, rand;
        "wasi:random/insecure-seed" => random::insecure_seed, WasiRandom, rand;
        "wasi:cli/exit" => cli::exit, WasiCli, cli;
        "wasi:cli/environment" => cli::environment, WasiCli, cli;
        "wasi:cli/stdin" => cli::stdin, WasiCli, cli;
        "wasi:cli/stdout" => cli::stdout, WasiCli, cli;
        "wasi:cli/stderr" => cli::stderr, WasiCli, cli;
        "wasi:cli/terminal-input" => cli::terminal_input, WasiCli, cli;
        "wasi:cli/terminal-output" => cli::terminal_output, WasiCli, cli;
        "wasi:cli/terminal-stdin" => cli::terminal_stdin, WasiCli, cli;
        "wasi:cli/terminal-stdout" => cli::terminal_stdout, WasiCli, cli;
        "wasi:cli/terminal-stderr" => cli::terminal_stderr, WasiCli, cli;
        // the context refuses every socket (allow_tcp/udp/ip_name_lookup false); they
        // are linked for guests whose toolchain imports them
        "wasi:sockets/tcp-create-socket" => sockets::tcp_create_socket, WasiSockets, net;
        "wasi:sockets/instance-network" => sockets::instance_network, WasiSockets, net;
        "wasi:sockets/ip-name-lookup" => sockets::ip_name_lookup, WasiSockets, net;
        "wasi:sockets/tcp" => sync::sockets::tcp, WasiSockets, net;
        "wasi:sockets/udp" => sync::sockets::udp, WasiSockets, net;
        "wasi:sockets/udp-create-socket" => sync::sockets::udp_create_socket, WasiSockets, net;
    }
    if wants("wasi:sockets/network") {
        let options = sync::LinkOptions::default();
        sockets::network::add_to_linker::<State, WasiSockets>(l, &(&options).into(), net)?;
    }
    Ok(())
}

/// The world a component implements, from its exports; neither is an error naming
/// both.
pub(crate) fn world_of(engine: &Engine, component: &Component, path: &Path) -> Result<World> {
    let ty = component.component_type();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    World::of_exports(names.iter().map(String::as_str)).ok_or_else(|| Error::Guest {
        path: path.display().to_string(),
        reason: format!(
            "implements neither {} (it exports {})",
            worlds_text(),
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        ),
    })
}

/// A guest ready to instantiate, through its version's bindings (0.2.0: with the
/// `node-policy` export's, when it has one).
enum GuestPre {
    V0_2 {
        pre: wasmtime::component::InstancePre<State>,
        policy: v2::CniPolicyIndices,
        node: Option<node_policy::GuestIndices>,
    },
    V0_1(v1::CniPolicyPre<State>),
}

/// An instantiated guest, through its version's bindings.
enum Guest {
    V0_2 {
        policy: v2::CniPolicy,
        node: Option<node_policy::Guest>,
    },
    V0_1(v1::CniPolicy),
}

impl GuestPre {
    fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Guest> {
        Ok(match self {
            GuestPre::V0_2 { pre, policy, node } => {
                let instance = pre.instantiate(&mut *store)?;
                Guest::V0_2 {
                    policy: policy.load(&mut *store, &instance)?,
                    node: node
                        .as_ref()
                        .map(|n| n.load(&mut *store, &instance))
                        .transpose()?,
                }
            }
            GuestPre::V0_1(p) => Guest::V0_1(p.instantiate(store)?),
        })
    }
}

fn pre(engine: &Engine, component: &Component, path: &Path) -> Result<GuestPre> {
    let world = world_of(engine, component, path)?;
    let l = linker(engine, world, component)?;
    let guest_err = |e: wasmtime::Error| Error::Guest {
        path: path.display().to_string(),
        reason: format!("does not implement {}: {e:#}", world.name()),
    };
    let ip = l.instantiate_pre(component).map_err(guest_err)?;
    Ok(match world {
        World::V0_2 => {
            let node = if has_node_policy(engine, component, path)? {
                Some(node_policy::GuestIndices::new(&ip).map_err(guest_err)?)
            } else {
                None
            };
            GuestPre::V0_2 {
                policy: v2::CniPolicyIndices::new(&ip).map_err(guest_err)?,
                pre: ip,
                node,
            }
        }
        World::V0_1 => GuestPre::V0_1(v1::CniPolicyPre::new(ip).map_err(guest_err)?),
    })
}

/// Check that a file is a component of one of our worlds, and say which (`wasm-cni
/// guest check` tells more).
pub fn validate(path: &Path) -> Result<World> {
    check::check(path).map(|r| r.world)
}

/// A store whose gate touches nothing real: STATUS grants on an empty simulated
/// node (for `guest check` and tests).
fn detached_store(engine: &Engine, memory_mib: u64, timeout: Duration) -> Store<State> {
    let grants = crate::gate::grants::Grants::new(
        crate::gate::grants::Scope::Status,
        false,
        "cni0",
        "wc",
        Vec::new(),
    );
    let model = crate::node::model::Model {
        world: crate::node::model::World::default(),
        container: None,
    };
    let gate = Gate::new(
        grants,
        Box::new(model),
        None,
        crate::calllog::CallLog::discard(),
        "wasm_cni_check".into(),
    );
    new_store(engine, crate::gate::shared(gate), memory_mib, timeout)
}

/// Instantiate the guest once against a simulated node, which type-checks every export
/// it will be called through (the linker checks only imports). Nothing on the real
/// node can be touched: the gate's node is `node::model::Model`.
fn try_instantiate(engine: &Engine, component: &Component, path: &Path) -> Result<World> {
    // the largest limits a network config may set: the check is about the contract,
    // not about whether the guest fits one network's budget
    let world = world_of(engine, component, path)?;
    let mut store = detached_store(engine, 4096, Duration::from_secs(120));
    pre(engine, component, path)?
        .instantiate(&mut store)
        .map(|_| world)
        .map_err(|e| {
            let e = format!("{e:#}");
            Error::Guest {
                path: path.display().to_string(),
                reason: if e.contains("type mismatch") {
                    format!("does not implement {}: {e}", world.name())
                } else {
                    format!("instantiation failed: {e}")
                },
            }
        })
}

/// A guest's strings and lists must stay small: a result is a few hundred bytes.
const MAX_ITEMS: usize = 32;
const MAX_TEXT: usize = 256;

fn check_text(what: &str, s: &str) -> Result<()> {
    if s.len() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(Error::GuestFault(format!(
            "returned an invalid result: {what} is not a short plain string"
        )));
    }
    Ok(())
}

/// The guest's ADD result as ours, field by field (checked by `check_result`). The
/// result records are the same in every version; a macro writes the move once.
macro_rules! result_from {
    ($r:expr, $netns:expr) => {{
        let r = $r;
        AddResult {
            interfaces: r
                .interfaces
                .into_iter()
                .map(|i| Interface {
                    name: i.name,
                    mac: i.mac,
                    sandbox: i.sandbox.then(|| $netns.to_string()),
                })
                .collect(),
            ips: r
                .ips
                .into_iter()
                .map(|ip| IpConfig {
                    address: ip.address,
                    gateway: ip.gateway,
                    interface: ip.interface,
                })
                .collect(),
            routes: r
                .routes
                .into_iter()
                .map(|rt| Route {
                    dst: rt.destination,
                    gw: rt.gateway,
                })
                .collect(),
            dns: r.dns.map(|d| Dns {
                nameservers: d.nameservers,
                domain: d.domain,
                search: d.search,
                options: d.options,
            }),
        }
    }};
}

/// Reject garbage in a guest's ADD result (whatever its version); addresses leave in
/// canonical text (RFC 5952 lower case, no leading zeros), as they were checked, not
/// as the guest spelled them.
fn check_result(mut out: AddResult) -> Result<AddResult> {
    let bad = |m: String| Error::GuestFault(format!("returned an invalid result: {m}"));
    if out.interfaces.len() > MAX_ITEMS || out.ips.len() > MAX_ITEMS || out.routes.len() > MAX_ITEMS
    {
        return Err(bad(format!(
            "more than {MAX_ITEMS} interfaces, ips or routes"
        )));
    }
    for i in &out.interfaces {
        check_text("interface name", &i.name)?;
        check_text("mac", &i.mac)?;
        if !crate::cni::env::valid_ifname(&i.name) {
            return Err(bad(format!("interface name {:?}", i.name)));
        }
    }
    let canonical_ip = |g: &mut String, what: &str| match g.parse::<std::net::IpAddr>() {
        Ok(a) => {
            *g = a.to_string();
            Ok(())
        }
        Err(_) => Err(bad(format!("{what} {g:?} is not an address"))),
    };
    for ip in &mut out.ips {
        match ip.address.parse::<ipnetwork::IpNetwork>() {
            Ok(n) => ip.address = n.to_string(),
            Err(_) => return Err(bad(format!("address {:?} is not CIDR", ip.address))),
        }
        if let Some(g) = &mut ip.gateway {
            canonical_ip(g, "gateway")?;
        }
        if let Some(idx) = ip.interface {
            if idx as usize >= out.interfaces.len() {
                return Err(bad(format!(
                    "ip {} points at interface {idx}, which does not exist",
                    ip.address
                )));
            }
        }
    }
    for rt in &mut out.routes {
        match rt.dst.parse::<ipnetwork::IpNetwork>() {
            Ok(n) => rt.dst = n.to_string(),
            Err(_) => return Err(bad(format!("route destination {:?} is not CIDR", rt.dst))),
        }
        if let Some(g) = &mut rt.gw {
            canonical_ip(g, "route gateway")?;
        }
    }
    if let Some(d) = &out.dns {
        for s in d
            .nameservers
            .iter()
            .chain(&d.search)
            .chain(&d.options)
            .chain(d.domain.iter())
        {
            check_text("dns entry", s)?;
        }
        if d.nameservers.len() + d.search.len() + d.options.len() > MAX_ITEMS {
            return Err(bad("too many dns entries".into()));
        }
    }
    Ok(out)
}

/// What the guest answered, before it is checked: the same for every version.
type Raw = std::result::Result<std::result::Result<Option<AddResult>, Error>, wasmtime::Error>;

/// The policy error as the runner's, whatever the version.
fn policy_error(code: u32, message: String, details: String) -> Error {
    Error::Policy {
        code,
        message: truncate(message, 1024),
        details: truncate(details, 4096),
    }
}

/// Make `call` through one version's exports `$p` (module `$v`), with `$req` turning a
/// `Request` into that version's record. The calls are the same in every version; a
/// macro writes them once.
macro_rules! call_policy {
    ($v:ident, $p:expr, $store:expr, $call:expr, $netns:expr, $req:expr) => {{
        use $v::exports::wasm_cni::plugin::policy;
        let p = $p;
        let store = $store;
        let err = |e: policy::CniError| policy_error(e.code, e.message, e.details);
        let done = |r: std::result::Result<(), policy::CniError>| r.map(|_| None).map_err(err);
        let raw: Raw = match $call {
            Call::Add(r) => p
                .call_add(&mut *store, &$req(r))
                .map(|r| r.map(|a| Some(result_from!(a, $netns))).map_err(err)),
            Call::Del(r) => p.call_del(&mut *store, &$req(r)).map(done),
            Call::Check(r) => p.call_check(&mut *store, &$req(r)).map(done),
            Call::Gc { config, valid } => {
                let v: Vec<policy::Attachment> = valid
                    .iter()
                    .map(|(c, i)| policy::Attachment {
                        container_id: c.clone(),
                        ifname: i.clone(),
                    })
                    .collect();
                p.call_gc(&mut *store, config, &v).map(done)
            }
            Call::Status { config } => p.call_status(&mut *store, config).map(done),
            // `run` calls it through the node-policy export, never through `policy`
            Call::Reconcile { .. } => Ok(Err(Error::Internal(
                "reconcile is not a policy function".into(),
            ))),
        };
        raw
    }};
}

/// The 0.2.0 request: everything, with the requested addresses and MAC.
fn request_v2(r: &Request) -> v2::exports::wasm_cni::plugin::policy::Request {
    v2::exports::wasm_cni::plugin::policy::Request {
        container_id: r.container_id.clone(),
        ifname: r.ifname.clone(),
        host_link: r.host_link.clone(),
        has_netns: r.has_netns,
        args: r.args.clone(),
        ips: r.ips.clone(),
        mac: r.mac.clone(),
        config: r.config.clone(),
    }
}

/// The 0.1.0 request: as it was (the requested ips/mac only in the raw config/args).
fn request_v1(r: &Request) -> v1::exports::wasm_cni::plugin::policy::Request {
    v1::exports::wasm_cni::plugin::policy::Request {
        container_id: r.container_id.clone(),
        ifname: r.ifname.clone(),
        host_link: r.host_link.clone(),
        has_netns: r.has_netns,
        args: r.args.clone(),
        config: r.config.clone(),
    }
}

/// The bounds and names of one guest call.
pub(crate) struct Bounds<'a> {
    /// The guest file (for messages).
    pub guest_path: &'a Path,
    /// CNI_NETNS, put into the result's `sandbox` fields (the spec's name for it).
    pub container_netns: &'a str,
    /// Wall-clock deadline.
    pub timeout: Duration,
    /// Memory cap.
    pub memory_mib: u64,
}

/// What WASI's random interfaces return, repeated (see `new_store`).
const WASI_RANDOM: [u8; 16] = *b"wasm-cni:random!";

/// A store for one guest call: the gate, the memory cap, a WASI context that grants
/// nothing, and an epoch deadline `timeout` from now.
fn new_store(engine: &Engine, gate: Shared, memory_mib: u64, timeout: Duration) -> Store<State> {
    let stderr = MemoryOutputPipe::new(16 * 1024);
    let state = State {
        gate,
        limits: MemoryLimits {
            max_bytes: (memory_mib as usize) << 20,
            total: 0,
            hit: false,
        },
        // WASI is linked because std-based guests (Rust wasip2, Python, JS) import
        // it, but the context grants nothing: no preopened directories, no environment,
        // no arguments, no stdin, no sockets; stdout is discarded, stderr kept for the log.
        // Random bytes are a fixed sequence: a guest (the Python runtime seeds its hash
        // and `random` from it) behaves the same on every call and in `simulate`, and
        // nothing of the host's entropy reaches it. Clocks are the node's (a wait must
        // count toward the deadline; the time of day is no secret).
        wasi: WasiCtxBuilder::new()
            .secure_random(Deterministic::new(WASI_RANDOM.to_vec()))
            .insecure_random(Deterministic::new(WASI_RANDOM.to_vec()))
            .insecure_random_seed(u128::from_be_bytes(WASI_RANDOM))
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build(),
        table: ResourceTable::new(),
        stderr,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(1);
    // The deadline: one epoch tick after `timeout`, by the supervisor's thread when it
    // runs (a CNI call), else by a thread of its own, which outlives nothing: the
    // process exits right after the call.
    if !crate::supervisor::tick_epoch_after(engine, timeout) {
        let ticker = engine.clone();
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            ticker.increment_epoch();
        });
    }
    store
}

/// Instantiate the guest and make one call. The caller keeps its handle on the gate
/// (for the rollback, and for the watchdog).
pub(crate) fn run(
    engine: &Engine,
    component: &Component,
    gate: Shared,
    call: Call,
    b: &Bounds,
) -> (Result<Reply>, Phases) {
    let Bounds {
        guest_path,
        container_netns,
        timeout,
        memory_mib,
    } = *b;
    let mut phases = Phases::default();
    let t = Instant::now();
    let mut store = new_store(engine, gate, memory_mib, timeout);
    let pre = pre(engine, component, guest_path);
    phases.linker_us = t.elapsed().as_micros();
    let t = Instant::now();
    let result = pre.and_then(|pre| {
        let inst = pre
            .instantiate(&mut store)
            .map_err(|e| Error::GuestFault(format!("instantiation failed: {e:#}")));
        phases.instantiate_us = t.elapsed().as_micros();
        let t = Instant::now();
        let out = inst.and_then(|inst| {
            let raw = match (&inst, &call) {
                (Guest::V0_2 { node: Some(n), .. }, Call::Reconcile { config }) => {
                    n.call_reconcile(&mut store, config).map(|r| {
                        r.map(|_| None)
                            .map_err(|m| policy_error(100, m, String::new()))
                    })
                }
                (_, Call::Reconcile { .. }) => Ok(Err(Error::Guest {
                    path: guest_path.display().to_string(),
                    reason: format!("has no {NODE_POLICY} export: nothing to reconcile"),
                })),
                (Guest::V0_2 { policy, .. }, _) => call_policy!(
                    v2,
                    policy.wasm_cni_plugin_policy(),
                    &mut store,
                    &call,
                    container_netns,
                    request_v2
                ),
                (Guest::V0_1(g), _) => call_policy!(
                    v1,
                    g.wasm_cni_plugin_policy(),
                    &mut store,
                    &call,
                    container_netns,
                    request_v1
                ),
            };
            match raw {
                Err(trap) => Err(fault(&store, trap, timeout)),
                Ok(Err(e)) => Err(e),
                Ok(Ok(Some(r))) => check_result(r).map(Reply::Added),
                Ok(Ok(None)) => Ok(Reply::Done),
            }
        });
        phases.guest_us = t.elapsed().as_micros();
        out
    });
    (result, phases)
}

/// Cut to at most `n` bytes on a character boundary (guest text is untrusted).
pub(crate) fn truncate(mut s: String, n: usize) -> String {
    if s.len() > n {
        let mut cut = n;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Name what stopped the guest.
fn fault(store: &Store<State>, e: wasmtime::Error, timeout: Duration) -> Error {
    let data = store.data();
    if data.limits.hit {
        return Error::GuestFault(format!(
            "memory limit of {} MiB reached (all its memories and tables together)",
            data.limits.max_bytes >> 20
        ));
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return Error::Deadline(timeout.as_millis() as u64);
    }
    let stderr = String::from_utf8_lossy(&data.stderr.contents())
        .trim()
        .to_string();
    let mut msg = format!("trapped: {e}");
    if !stderr.is_empty() {
        msg.push_str(&format!(" (guest stderr: {})", truncate(stderr, 1024)));
    }
    Error::GuestFault(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component whose core instances each have one memory of `pages` 64 KiB pages.
    fn memories(n: usize, pages: u32) -> Component {
        let mut text = format!("(component (core module $m (memory (export \"m\") {pages}))");
        for i in 0..n {
            text.push_str(&format!(" (core instance $i{i} (instantiate $m))"));
        }
        text.push(')');
        let bytes = wat::parse_str(&text).expect("valid component text");
        Component::new(&engine::compiler().unwrap(), &bytes).expect("a valid component")
    }

    /// Instantiate under a cap of `mib` MiB; the limiter's state afterwards.
    fn instantiate(c: &Component, mib: u64) -> (bool, bool, usize) {
        let engine = c.engine().clone();
        let mut store = detached_store(&engine, mib, Duration::from_secs(5));
        let ok = Linker::<State>::new(&engine)
            .instantiate(&mut store, c)
            .is_ok();
        let l = &store.data().limits;
        (ok, l.hit, l.total)
    }

    #[test]
    fn result_addresses_leave_in_canonical_text() {
        let r = AddResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                ..Interface::default()
            }],
            ips: vec![IpConfig {
                address: "FD00:0200:0001:0:0:0:0:7/064".into(),
                gateway: Some("FD00:200:1::0001".into()),
                interface: Some(0),
            }],
            routes: vec![Route {
                dst: "0:0::0/0".into(),
                gw: Some("FD00:200:1:0::1".into()),
            }],
            dns: None,
        };
        let r = super::check_result(r).unwrap();
        assert_eq!(r.ips[0].address, "fd00:200:1::7/64");
        assert_eq!(r.ips[0].gateway.as_deref(), Some("fd00:200:1::1"));
        assert_eq!(
            (r.routes[0].dst.as_str(), r.routes[0].gw.as_deref()),
            ("::/0", Some("fd00:200:1::1"))
        );
    }

    #[test]
    fn the_memory_cap_is_the_total_over_all_memories() {
        // 6 memories of 16 MiB = 96 MiB under a 32 MiB cap: each alone would fit
        let (ok, hit, total) = instantiate(&memories(6, 256), 32);
        assert!(!ok && hit, "refused on the total");
        assert!(total <= 32 << 20, "never more than the cap in use: {total}");
        // the same under a cap that holds them all
        let (ok, _, total) = instantiate(&memories(6, 256), 128);
        assert!(ok);
        assert_eq!(total, 96 << 20);
    }

    #[test]
    fn wasi_random_is_the_same_fixed_sequence_in_every_store() {
        use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};
        let engine = engine::engine().unwrap();
        let draw = || {
            let mut store = detached_store(&engine, 64, Duration::from_secs(5));
            let r = store.data_mut().wasi.random();
            let bytes = random::Host::get_random_bytes(r, 40).unwrap();
            let insecure = insecure::Host::get_insecure_random_bytes(r, 8).unwrap();
            let seed = insecure_seed::Host::insecure_seed(r).unwrap();
            (bytes, insecure, seed)
        };
        let (bytes, insecure, seed) = draw();
        // the fixed source, not the host's entropy: it repeats within 16 bytes
        assert_eq!(&bytes[..16], &bytes[16..32]);
        let fixed = u128::from_be_bytes(WASI_RANDOM);
        assert_eq!(seed, (fixed as u64, (fixed >> 64) as u64));
        assert_eq!(
            draw(),
            (bytes, insecure, seed),
            "the next call sees the same bytes"
        );
    }

    #[test]
    fn the_number_of_memories_and_instances_is_capped() {
        // the attack seen: 48 memories (tiny ones here: the count is what is refused)
        let (ok, _, _) = instantiate(&memories(48, 1), 4096);
        assert!(!ok, "48 memories");
        let (ok, _, _) = instantiate(&memories(host::MAX_MEMORIES, 1), 64);
        assert!(ok, "as many as the cap allows");
    }
}
