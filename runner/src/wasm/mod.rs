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
use host::{policy, CniPolicy, CniPolicyPre, MemoryLimits, State};
use std::path::Path;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{Deterministic, WasiCtxBuilder};

pub(crate) use engine::CacheOutcome;

/// The WIT world a guest must implement.
pub const WORLD: &str = "wasm-cni:plugin/cni-policy@0.1.0";

/// One attachment's request, as the guest gets it.
pub(crate) struct Request {
    pub container_id: String,
    pub ifname: String,
    pub host_link: String,
    pub has_netns: bool,
    pub args: Vec<(String, String)>,
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

fn linker(engine: &Engine) -> Result<Linker<State>> {
    let mut l: Linker<State> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut l)
        .map_err(|e| Error::Internal(format!("linking WASI: {e}")))?;
    CniPolicy::add_to_linker::<State, HasSelf<State>>(&mut l, |s| s)
        .map_err(|e| Error::Internal(format!("linking host functions: {e}")))?;
    Ok(l)
}

fn pre(engine: &Engine, component: &Component, path: &Path) -> Result<CniPolicyPre<State>> {
    let l = linker(engine)?;
    let guest_err = |e: wasmtime::Error| Error::Guest {
        path: path.display().to_string(),
        reason: format!("does not implement {WORLD}: {e:#}"),
    };
    let ip = l.instantiate_pre(component).map_err(guest_err)?;
    CniPolicyPre::new(ip).map_err(guest_err)
}

/// Check that a file is a component of our world (`wasm-cni guest check` tells more).
pub fn validate(path: &Path) -> Result<()> {
    check::check(path).map(|_| ())
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
fn try_instantiate(engine: &Engine, component: &Component, path: &Path) -> Result<()> {
    // the largest limits a network config may set: the check is about the contract,
    // not about whether the guest fits one network's budget
    let mut store = detached_store(engine, 4096, Duration::from_secs(120));
    pre(engine, component, path)?
        .instantiate(&mut store)
        .map(|_| ())
        .map_err(|e| {
            let e = format!("{e:#}");
            Error::Guest {
                path: path.display().to_string(),
                reason: if e.contains("type mismatch") {
                    format!("does not implement {WORLD}: {e}")
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

/// Turn the guest's ADD result into ours, rejecting garbage.
fn convert(r: policy::AddResult, container_netns: &str) -> Result<AddResult> {
    let bad = |m: String| Error::GuestFault(format!("returned an invalid result: {m}"));
    if r.interfaces.len() > MAX_ITEMS || r.ips.len() > MAX_ITEMS || r.routes.len() > MAX_ITEMS {
        return Err(bad(format!(
            "more than {MAX_ITEMS} interfaces, ips or routes"
        )));
    }
    let mut out = AddResult::default();
    for i in r.interfaces {
        check_text("interface name", &i.name)?;
        check_text("mac", &i.mac)?;
        if !crate::cni::env::valid_ifname(&i.name) {
            return Err(bad(format!("interface name {:?}", i.name)));
        }
        out.interfaces.push(Interface {
            name: i.name,
            mac: i.mac,
            sandbox: i.sandbox.then(|| container_netns.to_string()),
        });
    }
    for ip in r.ips {
        if ip.address.parse::<ipnetwork::IpNetwork>().is_err() {
            return Err(bad(format!("address {:?} is not CIDR", ip.address)));
        }
        if let Some(g) = &ip.gateway {
            if g.parse::<std::net::IpAddr>().is_err() {
                return Err(bad(format!("gateway {g:?} is not an address")));
            }
        }
        if let Some(idx) = ip.interface {
            if idx as usize >= out.interfaces.len() {
                return Err(bad(format!(
                    "ip {} points at interface {idx}, which does not exist",
                    ip.address
                )));
            }
        }
        out.ips.push(IpConfig {
            address: ip.address,
            gateway: ip.gateway,
            interface: ip.interface,
        });
    }
    for rt in r.routes {
        if rt.destination.parse::<ipnetwork::IpNetwork>().is_err() {
            return Err(bad(format!(
                "route destination {:?} is not CIDR",
                rt.destination
            )));
        }
        if let Some(g) = &rt.gateway {
            if g.parse::<std::net::IpAddr>().is_err() {
                return Err(bad(format!("route gateway {g:?} is not an address")));
            }
        }
        out.routes.push(Route {
            dst: rt.destination,
            gw: rt.gateway,
        });
    }
    if let Some(d) = r.dns {
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
        out.dns = Some(Dns {
            nameservers: d.nameservers,
            domain: d.domain,
            search: d.search,
            options: d.options,
        });
    }
    Ok(out)
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
    // The deadline: one epoch tick after `timeout`. The thread outlives nothing: the
    // process exits right after the call.
    let ticker = engine.clone();
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        ticker.increment_epoch();
    });
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
            let p = inst.wasm_cni_plugin0_2_0_policy();
            let to_req = |r: &Request| policy::Request {
                container_id: r.container_id.clone(),
                ifname: r.ifname.clone(),
                host_link: r.host_link.clone(),
                has_netns: r.has_netns,
                args: r.args.clone(),
                // requested ips/mac: the contract branch fills them in
                ips: Vec::new(),
                mac: None,
                config: r.config.clone(),
            };
            let raw = match &call {
                Call::Add(r) => p.call_add(&mut store, &to_req(r)).map(|r| r.map(Some)),
                Call::Del(r) => p.call_del(&mut store, &to_req(r)).map(|r| r.map(|_| None)),
                Call::Check(r) => p
                    .call_check(&mut store, &to_req(r))
                    .map(|r| r.map(|_| None)),
                Call::Gc { config, valid } => {
                    let v: Vec<policy::Attachment> = valid
                        .iter()
                        .map(|(c, i)| policy::Attachment {
                            container_id: c.clone(),
                            ifname: i.clone(),
                        })
                        .collect();
                    p.call_gc(&mut store, config, &v).map(|r| r.map(|_| None))
                }
                Call::Status { config } => {
                    p.call_status(&mut store, config).map(|r| r.map(|_| None))
                }
            };
            match raw {
                Err(trap) => Err(fault(&store, trap, timeout)),
                Ok(Err(e)) => Err(Error::Policy {
                    code: e.code,
                    message: truncate(e.message, 1024),
                    details: truncate(e.details, 4096),
                }),
                Ok(Ok(Some(r))) => convert(r, container_netns).map(Reply::Added),
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
        Component::new(&engine::engine().unwrap(), &bytes).expect("a valid component")
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
