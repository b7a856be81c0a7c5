//! wasm-cni: a CNI plugin whose networking policy is a WebAssembly component.
//!
//! The life of one call (`cni_main`): read CNI_* and the config (`cni`), answer VERSION,
//! load the guest from the precompiled cache (`wasm::engine`), take the network's lock
//! (`store`), compute the call's grants (`grants`), run the guest with a deadline and a
//! memory cap (`wasm`); its imports go through `sandbox`, which checks the grants and
//! journals effects done with `netlink`, `firewall`, `sysctl`, `store`. A failed ADD is
//! rolled back from the journal. Exactly one JSON document goes to stdout (or nothing,
//! for a successful DEL/CHECK/GC/STATUS, as the spec says); logs go to the log file.

pub mod calllog;
pub mod cni;
pub mod error;
pub mod firewall;
pub mod grants;
pub mod journal;
pub mod netlink;
pub mod netns;
pub mod node;
pub mod op_error;
pub mod sandbox;
pub mod sim;
pub mod simulate;
pub mod store;
pub mod sysctl;
pub mod wasm;

use calllog::CallLog;
use cni::{output, Command, Env, NetConf};
use error::{Error, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EMITTED: AtomicBool = AtomicBool::new(false);
/// Set when the guest call has returned: from then on the call ends by itself (rollback
/// and the answer are bounded host work), so the watchdog must not cut it short.
static GUEST_RETURNED: AtomicBool = AtomicBool::new(false);
static REPLY_VERSION: OnceLock<String> = OnceLock::new();

fn reply_version() -> &'static str {
    REPLY_VERSION
        .get()
        .map(String::as_str)
        .unwrap_or(cni::LATEST)
}

/// Write the call's one stdout document. Only the first caller writes: the main path,
/// the watchdog or `fatal`, whichever comes first.
fn emit(doc: &Value) -> bool {
    if EMITTED.swap(true, Ordering::SeqCst) {
        return false;
    }
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, doc);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    true
}

/// Mark the call answered without output (successful DEL, CHECK, GC, STATUS).
fn emit_nothing() -> bool {
    !EMITTED.swap(true, Ordering::SeqCst)
}

/// Give up: answer with an error object (if nothing was answered yet) and exit.
pub fn fatal(msg: &str) -> ! {
    emit(&output::error(
        reply_version(),
        &Error::Internal(msg.to_string()),
    ));
    std::process::exit(1)
}

/// The CNI plugin entry point. Returns the process exit code.
pub fn cni_main() -> i32 {
    let started = Instant::now();
    let mut raw = String::new();
    let read = std::io::stdin().read_to_string(&mut raw);
    let requested = cni::config::requested_version(&raw);
    let version = requested
        .clone()
        .filter(|v| cni::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| cni::LATEST.to_string());
    let _ = REPLY_VERSION.set(version);
    let fail = |e: Error| {
        emit(&output::error(reply_version(), &e));
        1
    };
    let env = match Env::from_lookup(|k| std::env::var(k).ok()) {
        Ok(env) => env,
        Err(e) => {
            CallLog::stderr("?").line("ERROR", &e.to_string());
            return fail(e);
        }
    };
    if env.command == Command::Version {
        emit(&output::version_info(requested.as_deref()));
        return 0;
    }
    if let Err(e) = read {
        return fail(Error::io("stdin", e));
    }
    supervisor::start();
    let t_parse = Instant::now();
    let conf = match NetConf::parse(raw) {
        Ok(c) => c,
        Err(e) => {
            CallLog::stderr(env.command.as_str()).line("ERROR", &e.to_string());
            return fail(status_code(env.command, e));
        }
    };
    let log = CallLog::open(
        &conf.log_file,
        env.command.as_str(),
        &env.container_id,
        conf.limits.log_file_bytes,
    );
    let mut timing = Timing {
        start_us: t_parse.duration_since(started).as_micros(),
        parse_us: t_parse.elapsed().as_micros(),
        ..Timing::default()
    };
    let outcome = execute(&env, &conf, &log, &mut timing).map_err(|e| status_code(env.command, e));
    match outcome {
        Ok(doc) => {
            let t_write = Instant::now();
            match doc {
                Some(d) => emit(&d),
                None => emit_nothing(),
            };
            timing.write_us = t_write.elapsed().as_micros();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            log.line("INFO", &format!("ok {ms:.2}ms {timing}"));
            0
        }
        Err(e) => {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            log.line(
                "ERROR",
                &format!("failed code={} {ms:.2}ms {timing}: {e}", e.code()),
            );
            fail(e)
        }
    }
}

/// STATUS reports what keeps the network from taking ADDs as "not available" (50), with
/// the reason; errors in the request itself (version, env, undecodable or invalid config)
/// keep their own codes.
fn status_code(cmd: Command, e: Error) -> Error {
    match (cmd, &e) {
        (
            Command::Status,
            Error::NotReady(_)
            | Error::IncompatibleVersion(_)
            | Error::CommandNotInVersion { .. }
            | Error::Env { .. }
            | Error::Decode(_)
            | Error::InvalidConfig(_),
        ) => e,
        (Command::Status, _) => Error::NotReady(e.to_string()),
        _ => e,
    }
}

/// Where the time of one call went (the benchmark reads this from the log).
#[derive(Default)]
struct Timing {
    /// From main to the config parse (reading env and stdin).
    start_us: u128,
    parse_us: u128,
    engine_us: u128,
    load_us: u128,
    cache: Option<wasm::CacheOutcome>,
    lock_us: u128,
    phases: wasm::Phases,
    host_calls: u32,
    host_us: u128,
    write_us: u128,
    rollback: Option<usize>,
    rollback_us: u128,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stdin_us={} parse_us={} engine_us={} load_us={} cache={:?} lock_us={} linker_us={} instantiate_us={} guest_us={} host_us={} host_calls={} write_us={}",
            self.start_us,
            self.parse_us,
            self.engine_us,
            self.load_us,
            self.cache,
            self.lock_us,
            self.phases.linker_us,
            self.phases.instantiate_us,
            self.phases.guest_us,
            self.host_us,
            self.host_calls,
            self.write_us
        )?;
        if let Some(n) = self.rollback {
            write!(f, " rolled_back={n} rollback_us={}", self.rollback_us)?;
        }
        Ok(())
    }
}

fn execute(env: &Env, conf: &NetConf, log: &CallLog, timing: &mut Timing) -> Result<Option<Value>> {
    command_in_version(env.command, conf)?;
    let t = Instant::now();
    let engine = wasm::engine::engine()?;
    timing.engine_us = t.elapsed().as_micros();
    let t = Instant::now();
    let (component, cache) = wasm::engine::load(&engine, &conf.guest, &conf.cache_dir)?;
    timing.load_us = t.elapsed().as_micros();
    timing.cache = Some(cache);

    let mut st = store::Store::open(&conf.network_dir())?;
    let lock = st.lock(Duration::from_millis(conf.lock_timeout_ms))?;
    timing.lock_us = lock.waited.as_micros();
    st.sweep_temporaries();
    if let Some(n) = st.check_boot()? {
        log.line(
            "INFO",
            &format!("new boot: cleared the store of network {:?} ({n} keys): no pod of an earlier boot is alive", conf.name),
        );
    }

    let timeout = Duration::from_millis(conf.timeout_ms);
    let has_netns = env.netns.as_ref().is_some_and(|p| p.exists());
    let (grants, call) = plan(env, conf, has_netns);
    let namespaces = netns::Namespaces::new(if has_netns { env.netns.clone() } else { None })
        .map_err(|e| Error::io("the runner's own network namespace", e))?;
    let journal = (env.command == Command::Add).then(journal::Journal::default);
    let mut sandbox = sandbox::Sandbox::new(
        grants,
        Box::new(node::Kernel {
            net: netlink::Netlink::new(namespaces),
            store: st,
        }),
        journal,
        log.clone(),
        firewall::table_name(&conf.name),
    );
    sandbox.limits = conf.limits.clone();
    if conf.timing {
        sandbox.trace = Some(Vec::new());
    }
    let shared = sandbox::shared(sandbox);
    let _ = ACTIVE.set(shared.clone());
    // past the guest's deadline plus a margin for a trapped guest's own rollback, the
    // supervisor stops a guest blocked outside wasm (a WASI wait, a slow host call)
    supervisor::arm(timeout + Duration::from_millis(WATCHDOG_MARGIN_MS));
    let sandbox_path = env
        .netns
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let bounds = wasm::Bounds {
        guest_path: &conf.guest,
        sandbox_path: &sandbox_path,
        timeout,
        memory_mib: conf.memory_limit_mib,
    };
    let done = run_call(&engine, &component, &shared, call, env, &bounds);
    timing.phases = done.phases;
    let sb = sandbox::lock(&shared);
    timing.host_calls = sb.calls;
    timing.host_us = sb.host_time.as_micros();
    if let Some(trace) = &sb.trace {
        let ops: Vec<String> = trace
            .iter()
            .map(|(op, d)| format!("{op}={}us", d.as_micros()))
            .collect();
        log.line("DEBUG", &format!("host calls: {}", ops.join(" ")));
    }
    drop(sb);
    timing.rollback = done.rolled_back;
    timing.rollback_us = done.rollback_us;
    drop(lock);
    match done.result? {
        wasm::Reply::Added(r) => Ok(Some(r.to_json(&conf.cni_version))),
        wasm::Reply::Done => Ok(None),
    }
}

/// The sandbox of the call in progress (for the supervisor's rollback).
static ACTIVE: OnceLock<sandbox::Shared> = OnceLock::new();

/// How long after the guest's deadline the supervisor steps in.
const WATCHDOG_MARGIN_MS: u64 = 300;

/// How a guest call ended.
pub struct CallOutcome {
    pub result: Result<wasm::Reply>,
    pub rolled_back: Option<usize>,
    /// How long the rollback took.
    pub rollback_us: u128,
    pub phases: wasm::Phases,
}

/// One guest call through the gate, and how every way out of it ends (the plugin and
/// `wasm-cni simulate` both run exactly this): a failed ADD (policy error, trap,
/// deadline, memory, a result outside its grants) is rolled back; a successful ADD's
/// addresses are recorded for the attachment, a successful DEL or GC releases them.
pub fn run_call(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
    shared: &sandbox::Shared,
    call: wasm::Call,
    env: &Env,
    bounds: &wasm::Bounds,
) -> CallOutcome {
    let valid = match &call {
        wasm::Call::Gc { valid, .. } => Some(valid.clone()),
        _ => None,
    };
    let (result, phases) = wasm::run(engine, component, shared.clone(), call, bounds);
    let mut sb = sandbox::lock(shared);
    if sb.aborted {
        // the supervisor stopped the call: it has rolled back and answers, then exits
        drop(sb);
        loop {
            std::thread::park();
        }
    }
    GUEST_RETURNED.store(true, Ordering::SeqCst);
    let result = match (env.command, result) {
        (Command::Add, Ok(wasm::Reply::Added(r))) => match sb.check_result(&r) {
            Err(m) => Err(Error::GuestFault(format!(
                "returned an invalid result: {m}"
            ))),
            Ok(ips) => sb
                .hold(&ips)
                .map(|_| wasm::Reply::Added(r))
                .map_err(|e| Error::Internal(format!("recording the attachment's addresses: {e}"))),
        },
        (Command::Del, Ok(reply)) => sb
            .release()
            .map(|_| reply)
            .map_err(|e| Error::Internal(format!("releasing the attachment's addresses: {e}"))),
        (Command::Gc, Ok(reply)) => sb
            .release_stale(valid.as_deref().unwrap_or_default())
            .map(|_| reply)
            .map_err(|e| Error::Internal(format!("releasing stale attachments' addresses: {e}"))),
        (_, other) => other,
    };
    let t = Instant::now();
    let (result, rolled_back) = settle(env.command, result, &mut sb);
    let rollback_us = t.elapsed().as_micros();
    if rolled_back.is_none() {
        if let Err(e) = sb.save_usage() {
            sb.log
                .line("WARN", &format!("{e} (the next call counts the store)"));
        }
    }
    CallOutcome {
        result,
        rolled_back,
        rollback_us,
        phases,
    }
}

/// CHECK came with 0.4.0, GC and STATUS with 1.1.0.
pub fn command_in_version(cmd: Command, conf: &NetConf) -> Result<()> {
    let needs = match cmd {
        Command::Check => Some("0.4.0"),
        Command::Gc | Command::Status => Some("1.1.0"),
        _ => None,
    };
    match needs {
        Some(min) if !cni::version_at_least(&conf.cni_version, min) => {
            Err(Error::CommandNotInVersion {
                command: cmd.as_str().into(),
                version: conf.cni_version.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// A failed ADD is undone (the journal, newest first). Returns the outcome and how
/// many steps were rolled back.
pub fn settle(
    cmd: Command,
    result: Result<wasm::Reply>,
    sandbox: &mut sandbox::Sandbox,
) -> (Result<wasm::Reply>, Option<usize>) {
    match result {
        Err(e) if cmd == Command::Add => {
            let (n, failures) = sandbox.rollback();
            let e = if failures.is_empty() {
                e
            } else {
                Error::Internal(format!("{e}; rollback incomplete: {}", failures.join("; ")))
            };
            (Err(e), Some(n))
        }
        other => (other, None),
    }
}

/// What a call may touch and what to ask the guest, from the CNI environment and the
/// config (the plugin and `wasm-cni simulate` share it).
pub fn plan(env: &Env, conf: &NetConf, has_netns: bool) -> (grants::Grants, wasm::Call) {
    let scope = match env.command {
        Command::Gc => grants::Scope::Gc {
            valid: conf.valid_attachments.clone(),
        },
        Command::Status => grants::Scope::Status,
        _ => grants::Scope::Attachment {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
        },
    };
    let mut grants = grants::Grants::new(
        scope,
        has_netns,
        &conf.bridge,
        &conf.link_prefix,
        conf.pod_network,
    );
    if env.command == Command::Check {
        grants.set_read_only("CHECK");
    }
    let request = || wasm::Request {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        host_link: grants.host_link().unwrap_or_default().to_string(),
        has_netns,
        args: env.args.clone(),
        config: conf.raw.clone(),
    };
    let call = match env.command {
        Command::Add => wasm::Call::Add(request()),
        Command::Del => wasm::Call::Del(request()),
        Command::Check => wasm::Call::Check(request()),
        Command::Gc => wasm::Call::Gc {
            config: conf.raw.clone(),
            valid: conf.valid_attachments.clone(),
        },
        Command::Status | Command::Version => wasm::Call::Status {
            config: conf.raw.clone(),
        },
    };
    (grants, call)
}

/// Stopping a call from outside its main thread: the guest's deadline passed while it
/// was blocked outside wasm (a WASI wait, a slow host call), a signal came (SIGTERM,
/// SIGINT, SIGHUP from the runtime), or the runner panicked. One thread, started before
/// any namespace switch (so it acts in the node's namespace), waits for all three with
/// `sigtimedwait`; the signals are blocked in every other thread.
pub mod supervisor {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Milliseconds since `START` at which the deadline passes (0: not armed yet).
    static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);
    static START: OnceLock<Instant> = OnceLock::new();

    fn signals() -> libc::sigset_t {
        // SAFETY: plain sigset manipulation on a local
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
                libc::sigaddset(&mut set, s);
            }
            set
        }
    }

    /// Block the signals in this (the main) thread and every thread it starts later,
    /// and start the supervisor.
    pub fn start() {
        let _ = START.set(Instant::now());
        let set = signals();
        // SAFETY: changes only this thread's signal mask
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        std::thread::spawn(move || loop {
            let start = *START.get().expect("set above");
            let deadline = DEADLINE_MS.load(Ordering::SeqCst);
            let now = start.elapsed().as_millis() as u64;
            if deadline != 0 && now >= deadline {
                super::abort_call(
                    format!(
                        "the call did not finish within its deadline ({} ms after it started the guest)",
                        deadline.saturating_sub(ARMED_AT.load(Ordering::SeqCst))
                    ),
                    true,
                );
                return;
            }
            let wait = if deadline == 0 {
                200
            } else {
                (deadline - now).min(200)
            };
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: (wait as i64) * 1_000_000,
            };
            // SAFETY: waits for one of our blocked signals, or the timeout
            let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
            match sig {
                s if s == libc::SIGUSR1 => {
                    super::abort_call("the runner panicked (see its stderr)".into(), false);
                    return;
                }
                s if s > 0 => {
                    super::abort_call(format!("stopped by signal {s}"), true);
                    return;
                }
                _ => {}
            }
        });
    }

    static ARMED_AT: AtomicU64 = AtomicU64::new(0);

    /// The guest starts now: stop the call `after` from now unless it has ended.
    pub fn arm(after: Duration) {
        let Some(start) = START.get() else { return };
        let now = start.elapsed().as_millis() as u64;
        ARMED_AT.store(now, Ordering::SeqCst);
        DEADLINE_MS.store(now + after.as_millis() as u64 + 1, Ordering::SeqCst);
    }
}

/// The main thread panicked: let the supervisor roll back and answer (it exits the
/// process); if there is none, answer here.
pub fn panicked() -> ! {
    if ACTIVE.get().is_some() {
        // SAFETY: signals our own process; the supervisor thread takes it
        unsafe {
            libc::kill(libc::getpid(), libc::SIGUSR1);
        }
        std::thread::sleep(Duration::from_secs(10));
    }
    fatal("the runner panicked (see stderr)")
}

/// Stop the call from the supervisor thread: kill a running nft child (so a host call
/// that waits on it returns), take the gate, mark the call aborted (every later host
/// call fails), undo the journal, answer with code 11 and exit. Does nothing when the
/// guest call has returned: the main thread then ends the call itself. `retry`: the
/// answer is code 11 (try again later), else 999 (the runner's own failure).
fn abort_call(why: String, retry: bool) {
    firewall::kill_running();
    let answer = |msg: String| {
        let e = if retry {
            Error::TryAgain(msg)
        } else {
            Error::Internal(msg)
        };
        if emit(&output::error(reply_version(), &e)) {
            std::process::exit(1);
        }
    };
    let Some(shared) = ACTIVE.get() else {
        return answer(why);
    };
    let give_up = Instant::now() + Duration::from_secs(3);
    let guard = loop {
        if GUEST_RETURNED.load(Ordering::SeqCst) {
            return;
        }
        match shared.try_lock() {
            Ok(g) => break Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => break Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        if Instant::now() > give_up {
            break None;
        }
        firewall::kill_running();
        std::thread::sleep(Duration::from_millis(5));
    };
    let msg = match guard {
        Some(mut sb) => {
            if GUEST_RETURNED.load(Ordering::SeqCst) {
                return;
            }
            sb.aborted = true;
            let (n, failures) = sb.rollback();
            sb.log
                .line("ERROR", &format!("{why}: stopped; {n} change(s) undone"));
            if failures.is_empty() {
                format!("{why}; the call's changes were undone ({n})")
            } else {
                format!("{why}; rollback incomplete: {}", failures.join("; "))
            }
        }
        None => format!(
            "{why}; a host operation did not return, so the call's changes could not be undone"
        ),
    };
    answer(msg)
}
