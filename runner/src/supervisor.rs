//! Stopping a call from outside its main thread: the guest's deadline passed while it
//! was blocked outside wasm (a WASI wait, a slow host call), a signal came (SIGTERM,
//! SIGINT, SIGHUP from the runtime), or the runner panicked. One thread, started before
//! any namespace switch (so it acts in the node's namespace), waits for all three with
//! `sigtimedwait`; the signals are blocked in every other thread. It rolls the call
//! back through the gate, answers, and exits. It also ticks the engine's epoch at the
//! guest's own deadline (wasm code then traps), so a call starts one thread, not two.

use crate::cni::output;
use crate::error::Error;
use crate::gate;
use crate::node::kernel::firewall;
use crate::plugin::{emit, fatal, reply_version};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The gate of the call in progress (for the rollback).
static ACTIVE: OnceLock<gate::Shared> = OnceLock::new();

/// Set when the guest call has returned: from then on the call ends by itself (rollback
/// and the answer are bounded host work), so the supervisor must not cut it short.
static GUEST_RETURNED: AtomicBool = AtomicBool::new(false);

/// Set when the supervisor starts stopping the call: a wait for the network lock on
/// the main thread gives up, so the supervisor gets the gate for the rollback.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether the supervisor is stopping the call (see `STOPPING`).
pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// How long after the guest's deadline the supervisor steps in.
const WATCHDOG_MARGIN_MS: u64 = 300;

/// The guest call has returned (see `GUEST_RETURNED`).
pub(crate) fn guest_returned() {
    GUEST_RETURNED.store(true, Ordering::SeqCst);
}

/// The guest starts now with `gate`: past its `timeout` plus a margin for a trapped
/// guest's own rollback, stop a guest blocked outside wasm.
pub(crate) fn watch(gate: gate::Shared, timeout: Duration) {
    let _ = ACTIVE.set(gate);
    arm(timeout + Duration::from_millis(WATCHDOG_MARGIN_MS));
}

/// Milliseconds since `START` at which the deadline passes (0: not armed yet).
static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);
static START: OnceLock<Instant> = OnceLock::new();
/// Whether the supervisor thread runs (not in tests and `simulate`).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The engine whose epoch the supervisor ticks, and when (milliseconds since `START`;
/// 0: nothing to tick).
static EPOCH_ENGINE: OnceLock<wasmtime::Engine> = OnceLock::new();
static EPOCH_MS: AtomicU64 = AtomicU64::new(0);

/// Wakes the supervisor to look at its deadlines again (sent by `tick_epoch_after`).
const WAKE: libc::c_int = libc::SIGALRM;

fn signals() -> libc::sigset_t {
    // SAFETY: plain sigset manipulation on a local
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            WAKE,
        ] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Have the supervisor increment `engine`'s epoch `after` from now: the guest's
/// deadline (its store traps at the next epoch). `false` when no supervisor runs (the
/// caller then ticks it itself). One engine per process: a later engine is refused.
pub(crate) fn tick_epoch_after(engine: &wasmtime::Engine, after: Duration) -> bool {
    let Some(start) = START.get() else {
        return false;
    };
    if !RUNNING.load(Ordering::SeqCst) {
        return false;
    }
    let ours = EPOCH_ENGINE.get_or_init(|| engine.clone());
    if !wasmtime::Engine::same(ours, engine) {
        return false;
    }
    let at = start.elapsed().as_millis() as u64 + after.as_millis() as u64 + 1;
    EPOCH_MS.store(at, Ordering::SeqCst);
    // SAFETY: signals our own process; only the supervisor takes WAKE (blocked elsewhere)
    unsafe {
        libc::kill(libc::getpid(), WAKE);
    }
    true
}

/// Block the signals in this (the main) thread and every thread it starts later,
/// and start the supervisor.
pub(crate) fn start() {
    let _ = START.set(Instant::now());
    let set = signals();
    // SAFETY: changes only this thread's signal mask
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    RUNNING.store(true, Ordering::SeqCst);
    std::thread::spawn(move || loop {
        let start = *START.get().expect("set above");
        let mut now = start.elapsed().as_millis() as u64;
        let epoch = EPOCH_MS.load(Ordering::SeqCst);
        if epoch != 0 && now >= epoch {
            if let Some(e) = EPOCH_ENGINE.get() {
                e.increment_epoch();
            }
            let _ = EPOCH_MS.compare_exchange(epoch, 0, Ordering::SeqCst, Ordering::SeqCst);
            now = start.elapsed().as_millis() as u64;
        }
        let deadline = DEADLINE_MS.load(Ordering::SeqCst);
        if deadline != 0 && now >= deadline {
            abort_call(
                format!(
                    "the call did not finish within its deadline ({} ms after it started the guest)",
                    deadline.saturating_sub(ARMED_AT.load(Ordering::SeqCst))
                ),
                true,
            );
            return;
        }
        let until = |at: u64| if at == 0 { 200 } else { at.saturating_sub(now) };
        let epoch = EPOCH_MS.load(Ordering::SeqCst);
        let wait = until(deadline).min(until(epoch)).clamp(1, 200);
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: (wait as i64) * 1_000_000,
        };
        // SAFETY: waits for one of our blocked signals, or the timeout
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        match sig {
            s if s == WAKE => {}
            s if s == libc::SIGUSR1 => {
                abort_call("the runner panicked (see its stderr)".into(), false);
                return;
            }
            s if s > 0 => {
                abort_call(format!("stopped by signal {s}"), true);
                return;
            }
            _ => {}
        }
    });
}

static ARMED_AT: AtomicU64 = AtomicU64::new(0);

/// The guest starts now: stop the call `after` from now unless it has ended.
fn arm(after: Duration) {
    let Some(start) = START.get() else { return };
    let now = start.elapsed().as_millis() as u64;
    ARMED_AT.store(now, Ordering::SeqCst);
    DEADLINE_MS.store(now + after.as_millis() as u64 + 1, Ordering::SeqCst);
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
    STOPPING.store(true, Ordering::SeqCst);
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
        Some(mut g) => {
            if GUEST_RETURNED.load(Ordering::SeqCst) {
                return;
            }
            g.aborted = true;
            let (n, failures) = g.rollback();
            g.log
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
