//! The CNI plugin: one process per call. Read CNI_* and stdin, answer VERSION, parse
//! the config, load the guest, take the network's lock (for the whole call, or around
//! the runner's own store work for a guest importing `lock`), run one `Session` over the
//! kernel, and print exactly one JSON document (or nothing, for a successful
//! DEL/CHECK/GC/STATUS, as the spec says). One line per call goes to the log file.

use crate::calllog::CallLog;
use crate::cni::{config, output, Command, Env, NetConf, Version};
use crate::error::{Error, Result};
use crate::gate::grants::attachment_id;
use crate::node::kernel::store::{KeptGuests, Store};
use crate::node::kernel::Kernel;
use crate::session::{command_in_version, status_code, Session};
use crate::{gate, supervisor, wasm};
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EMITTED: AtomicBool = AtomicBool::new(false);
static REPLY_VERSION: OnceLock<Version> = OnceLock::new();

/// The version error objects are written in: the request's, if we speak it.
pub(crate) fn reply_version() -> Version {
    REPLY_VERSION.get().copied().unwrap_or(crate::cni::LATEST)
}

/// Write the call's one stdout document. Only the first caller writes: the main path,
/// the watchdog or `fatal`, whichever comes first.
pub(crate) fn emit(doc: &Value) -> bool {
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
    let requested = config::requested_version(&raw);
    let version = requested
        .as_deref()
        .and_then(crate::cni::supported)
        .unwrap_or(crate::cni::LATEST);
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
    let conf = match NetConf::parse(raw).and_then(|c| c.with_args(&env)) {
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
            if conf.timing {
                timing.rss_hwm_kib = peak_rss_kib();
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            log.line("INFO", &format!("ok {ms:.2}ms {timing}"));
            0
        }
        Err(e) => {
            if conf.timing {
                timing.rss_hwm_kib = peak_rss_kib();
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            log.line(
                "ERROR",
                &format!("failed code={} {ms:.2}ms {timing}: {e}", e.code()),
            );
            fail(e)
        }
    }
}

/// VmHWM of this process, from /proc/self/status.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
    /// The process's peak resident set (VmHWM), with `"timing": true` only. Read here
    /// because a spawner's wait4 maxrss also counts the spawner's own image (a vfork'd
    /// child's exec records its parent's high-water mark).
    rss_hwm_kib: Option<u64>,
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
        if let Some(kib) = self.rss_hwm_kib {
            write!(f, " rss_hwm_kib={kib}")?;
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
    let mut guest = wasm::engine::load(
        &engine,
        &conf.guest,
        &conf.cache_dir,
        conf.guest_digest.as_deref(),
    )?;
    let mut guest_path = conf.guest.clone();
    timing.load_us = t.elapsed().as_micros();
    timing.cache = Some(guest.cache);

    let network_dir = conf.network_dir();
    let mut store = Store::open(&network_dir)?;
    let lock_timeout = Duration::from_millis(conf.lock_timeout_ms);
    // the runner's own store work before the guest is inside the lock, in either mode
    let waited = store.enter(lock_timeout, &|| false)?.unwrap_or_default();
    timing.lock_us = waited.as_micros();
    store.sweep_temporaries();
    if let Some(n) = store.check_boot()? {
        log.line(
            "INFO",
            &format!("new boot: cleared the store of network {:?} ({n} keys): no pod of an earlier boot is alive", conf.name),
        );
    }

    // DEL and CHECK run the guest that set the attachment up, also after a swap
    let attachment = attachment_id(&env.container_id, &env.ifname);
    let recorded = match env.command {
        Command::Del | Command::Check => store.attachment_guest(&attachment).unwrap_or(None),
        _ => None,
    };
    let kept_guests = KeptGuests::new(&network_dir);
    if let Some(d) = recorded.filter(|d| *d != guest.digest) {
        let kept = kept_guests.path(&d);
        match wasm::engine::load(&engine, &kept, &conf.cache_dir, Some(&d)) {
            Ok(g) => {
                log.line("INFO", &format!(
                    "attachment {attachment:?} was set up by guest {d}: running it ({}), not the configured {}",
                    kept.display(),
                    guest.digest
                ));
                guest = g;
                guest_path = kept;
            }
            Err(e) => log.line("WARN", &format!(
                "attachment {attachment:?} was set up by guest {d}, whose copy cannot run ({e}): running the configured {}",
                guest.digest
            )),
        }
    }

    // a guest importing `lock` serves pods in parallel: it holds the lock only in its
    // critical sections (GC and STATUS keep it for the whole call)
    let explicit_lock = matches!(env.command, Command::Add | Command::Del | Command::Check)
        && wasm::imports_lock(&engine, &guest.component);
    if explicit_lock {
        store.leave();
    }

    let has_netns = env.netns.as_ref().is_some_and(|p| p.exists());
    let kernel = Kernel::new(if has_netns { env.netns.clone() } else { None }, store)
        .map_err(|e| Error::io("the runner's own network namespace", e))?;
    let mut session = Session::new(
        env,
        conf,
        Box::new(kernel),
        has_netns,
        log.clone(),
        (&guest_path, &guest.digest),
    );
    {
        let mut g = gate::lock(session.gate());
        g.explicit_lock = explicit_lock;
        g.lock_timeout = lock_timeout;
        if conf.timing {
            g.trace = Some(Vec::new());
        }
    }
    supervisor::watch(session.gate().clone(), session.timeout());
    let done = session.run(&engine, &guest.component);
    timing.phases = done.phases;
    let mut g = gate::lock(session.gate());
    if done.result.is_ok() {
        keep_guests(env.command, &mut g, &kept_guests, &guest, log);
    }
    timing.lock_us += g.lock_wait.as_micros();
    timing.host_calls = g.calls;
    timing.host_us = g.host_time.as_micros();
    if let Some(trace) = &g.trace {
        let ops: Vec<String> = trace
            .iter()
            .map(|(op, d)| format!("{op}={}us", d.as_micros()))
            .collect();
        log.line("DEBUG", &format!("host calls: {}", ops.join(" ")));
    }
    // the supervisor keeps the gate (and the store in it): leave the lock here
    g.node.lock_leave();
    drop(g);
    timing.rollback = done.rolled_back;
    timing.rollback_us = done.rollback_us;
    match done.result? {
        wasm::Reply::Added(r) => Ok(Some(r.to_json(conf.cni_version))),
        wasm::Reply::Done => Ok(None),
    }
}

/// After an ADD, keep a copy of its guest (so its DEL still runs it after a swap);
/// after a DEL or GC, drop the copies no live attachment needs. A failure here costs
/// only that future: it is logged, not the call's outcome.
fn keep_guests(
    cmd: Command,
    g: &mut gate::Gate,
    kept: &KeptGuests,
    guest: &wasm::engine::Loaded,
    log: &CallLog,
) {
    let r = match cmd {
        Command::Add => kept
            .keep(&guest.digest, || guest.bytes())
            .map_err(|e| e.to_string()),
        Command::Del | Command::Gc => g
            .node
            .guests_in_use()
            .map_err(|e| e.to_string())
            .and_then(|used| kept.prune(&used).map_err(|e| e.to_string()))
            .map(|_| ()),
        _ => Ok(()),
    };
    if let Err(e) = r {
        log.line("WARN", &format!("kept guest copies: {e}"));
    }
}
