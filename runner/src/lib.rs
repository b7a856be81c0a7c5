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
    let t_parse = Instant::now();
    let conf = match NetConf::parse(raw) {
        Ok(c) => c,
        Err(e) => {
            CallLog::stderr(env.command.as_str()).line("ERROR", &e.to_string());
            return fail(status_code(env.command, e));
        }
    };
    let log = CallLog::open(&conf.log_file, env.command.as_str(), &env.container_id);
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
            write!(f, " rolled_back={n}")?;
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

    let st = store::Store::open(&conf.network_dir())?;
    let lock = st.lock(Duration::from_millis(conf.lock_timeout_ms))?;
    timing.lock_us = lock.waited.as_micros();
    st.sweep_temporaries();

    let timeout = Duration::from_millis(conf.timeout_ms);
    start_watchdog(timeout + Duration::from_millis(1500));

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
    if conf.timing {
        sandbox.trace = Some(Vec::new());
    }
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
    let (result, mut sandbox, phases) = wasm::run(&engine, &component, sandbox, call, &bounds);
    GUEST_RETURNED.store(true, Ordering::SeqCst);
    timing.phases = phases;
    timing.host_calls = sandbox.calls;
    timing.host_us = sandbox.host_time.as_micros();
    if let Some(trace) = &sandbox.trace {
        let ops: Vec<String> = trace
            .iter()
            .map(|(op, d)| format!("{op}={}us", d.as_micros()))
            .collect();
        log.line("DEBUG", &format!("host calls: {}", ops.join(" ")));
    }
    let (result, rolled_back) = settle(env.command, result, &mut sandbox);
    timing.rollback = rolled_back;
    drop(lock);
    match result? {
        wasm::Reply::Added(r) => Ok(Some(r.to_json(&conf.cni_version))),
        wasm::Reply::Done => Ok(None),
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
    let grants = grants::Grants::new(
        scope,
        has_netns,
        &conf.bridge,
        &conf.link_prefix,
        conf.pod_network,
    );
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

/// Last resort against a host operation that never returns: answer with an error and
/// exit a little after the guest's deadline.
fn start_watchdog(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        if GUEST_RETURNED.load(Ordering::SeqCst) {
            return;
        }
        if emit(&output::error(
            reply_version(),
            &Error::TryAgain(format!(
                "the call did not finish within {} ms",
                after.as_millis()
            )),
        )) {
            std::process::exit(1);
        }
    });
}
