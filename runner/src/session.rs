//! One guest call through the gate: the plugin (`plugin::execute`) and `wasm-cni
//! simulate` both build a `Session` over their node (the kernel or the model) and run
//! it, so the simulator runs exactly the code a real call runs.

use crate::calllog::CallLog;
use crate::cni::{version::Version, Command, Env, NetConf};
use crate::error::{Error, Result};
use crate::gate::grants::{self, Grants};
use crate::gate::journal::Journal;
use crate::gate::{self, Gate};
use crate::node::Node;
use crate::{supervisor, wasm};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How a guest call ended.
pub(crate) struct CallOutcome {
    pub result: Result<wasm::Reply>,
    pub rolled_back: Option<usize>,
    /// How long the rollback took.
    pub rollback_us: u128,
    pub phases: wasm::Phases,
}

/// What a session runs: a CNI command, or the node-level `reconcile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Cni(Command),
    Reconcile,
}

impl Verb {
    /// The calls that journal their changes and undo them on failure.
    fn journaled(self) -> bool {
        matches!(self, Verb::Cni(Command::Add) | Verb::Reconcile)
    }
}

/// A planned call: what to ask the guest, and the gate (grants, journal, limits) over
/// the node it may change.
pub(crate) struct Session {
    verb: Verb,
    /// Taken by `run`: a session makes one call.
    call: Option<wasm::Call>,
    gate: gate::Shared,
    guest_path: PathBuf,
    /// CNI_NETNS as the runtime gave it (the result's `sandbox` field).
    container_netns: String,
    timeout: Duration,
    memory_mib: u64,
}

impl Session {
    /// Plan the call from the CNI environment and the config, and put the gate over
    /// `node`. `has_netns`: the container namespace exists (DEL may come without it).
    /// `guest`: the file and digest of the guest that runs (the one an ADD records).
    pub fn new(
        env: &Env,
        conf: &NetConf,
        node: Box<dyn Node>,
        has_netns: bool,
        log: CallLog,
        guest: (&Path, &str),
    ) -> Session {
        let (grants, call) = plan(env, conf, has_netns);
        let verb = Verb::Cni(env.command);
        let mut s = Self::over(verb, grants, call, conf, node, log, guest);
        s.container_netns = env
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        s
    }

    /// Plan `node-policy.reconcile` for the network of `conf`: the host namespace
    /// only, no attachment, journaled like an ADD.
    pub fn reconcile(
        conf: &NetConf,
        node: Box<dyn Node>,
        log: CallLog,
        guest: (&Path, &str),
    ) -> Session {
        let mut grants = Grants::new(
            grants::Scope::Node,
            false,
            &conf.bridge,
            &conf.link_prefix,
            conf.pod_networks.clone(),
        );
        grants.set_cluster(conf.cluster.clone());
        let call = wasm::Call::Reconcile {
            config: conf.raw.clone(),
        };
        Self::over(Verb::Reconcile, grants, call, conf, node, log, guest)
    }

    fn over(
        verb: Verb,
        grants: Grants,
        call: wasm::Call,
        conf: &NetConf,
        node: Box<dyn Node>,
        log: CallLog,
        guest: (&Path, &str),
    ) -> Session {
        let journal = verb.journaled().then(Journal::default);
        let mut g = Gate::new(grants, node, journal, log, grants::table_name(&conf.name));
        g.limits = conf.limits.clone();
        g.guest = guest.1.to_string();
        Session {
            verb,
            call: Some(call),
            gate: gate::shared(g),
            guest_path: guest.0.to_path_buf(),
            container_netns: String::new(),
            timeout: Duration::from_millis(conf.timeout_ms),
            memory_mib: conf.memory_limit_mib,
        }
    }

    /// The gate, shared with the guest's imports and the supervisor.
    pub fn gate(&self) -> &gate::Shared {
        &self.gate
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Run the guest, and end the call the same way whatever happened: a failed ADD
    /// (policy error, trap, deadline, memory, a result outside its grants) is rolled
    /// back; a successful ADD's addresses are recorded for the attachment, a
    /// successful DEL or GC releases them.
    pub fn run(
        &mut self,
        engine: &wasmtime::Engine,
        component: &wasmtime::component::Component,
    ) -> CallOutcome {
        let Some(call) = self.call.take() else {
            return CallOutcome {
                result: Err(Error::Internal("a session makes one call".into())),
                rolled_back: None,
                rollback_us: 0,
                phases: wasm::Phases::default(),
            };
        };
        let valid = match &call {
            wasm::Call::Gc { valid, .. } => Some(valid.clone()),
            _ => None,
        };
        let bounds = wasm::Bounds {
            guest_path: &self.guest_path,
            container_netns: &self.container_netns,
            timeout: self.timeout,
            memory_mib: self.memory_mib,
        };
        let (result, phases) = wasm::run(engine, component, self.gate.clone(), call, &bounds);
        let mut g = gate::lock(&self.gate);
        if g.aborted {
            // the supervisor stopped the call: it has rolled back and answers, then exits
            drop(g);
            loop {
                std::thread::park();
            }
        }
        supervisor::guest_returned();
        // the runner's records of the result, and any rollback, are inside the lock
        // (a guest of the explicit mode may have left it); a wait for the lock that
        // timed out, here or in the guest's call, makes the call's failure code 11
        let result = match g.enter_lock() {
            Ok(_) => result,
            Err(e) => Err(Error::TryAgain(format!("after the guest returned: {e}"))),
        };
        let result = match (result, &g.lock_timed_out) {
            (Err(e), Some(m)) if !matches!(e, Error::TryAgain(_)) => {
                Err(Error::TryAgain(format!("{e} (after: {m})")))
            }
            (r, _) => r,
        };
        let result = match (self.verb, result) {
            (Verb::Cni(Command::Add), Ok(wasm::Reply::Added(r))) => match g.check_result(&r) {
                Err(m) => Err(Error::GuestFault(format!(
                    "returned an invalid result: {m}"
                ))),
                Ok(ips) => g.hold(&ips).map(|_| wasm::Reply::Added(r)).map_err(|e| {
                    Error::Internal(format!("recording the attachment's addresses: {e}"))
                }),
            },
            (Verb::Cni(Command::Del), Ok(reply)) => g
                .release()
                .map(|_| reply)
                .map_err(|e| Error::Internal(format!("releasing the attachment's addresses: {e}"))),
            (Verb::Cni(Command::Gc), Ok(reply)) => g
                .release_stale(valid.as_deref().unwrap_or_default())
                .map(|_| reply)
                .map_err(|e| {
                    Error::Internal(format!("releasing stale attachments' addresses: {e}"))
                }),
            (_, other) => other,
        };
        let t = Instant::now();
        let (result, rolled_back) = settle(self.verb, result, &mut g);
        let result = match self.verb {
            Verb::Cni(cmd) => result.map_err(|e| status_code(cmd, e)),
            Verb::Reconcile => result,
        };
        let rollback_us = t.elapsed().as_micros();
        if rolled_back.is_none() {
            if let Err(e) = g.save_usage() {
                g.log
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

    /// The gate back, with the node in it (`simulate` keeps the model).
    pub fn into_gate(self) -> Result<Gate> {
        let g = std::sync::Arc::try_unwrap(self.gate)
            .map_err(|_| Error::Internal("the gate is still shared after the call".into()))?;
        Ok(g.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}

/// STATUS reports what keeps the network from taking ADDs as "not available" (50), with
/// the reason, or as 51 when the guest says existing pods are affected too (a guest's
/// STATUS error with code 50 or 51 keeps it); errors in the request itself (version,
/// env, undecodable or invalid config) keep their own codes.
pub(crate) fn status_code(cmd: Command, e: Error) -> Error {
    match (cmd, &e) {
        (Command::Status, Error::Policy { code, message, .. }) if matches!(code, 50 | 51) => {
            Error::NotReady {
                reason: message.clone(),
                pods_affected: *code == 51,
            }
        }
        (
            Command::Status,
            Error::NotReady { .. }
            | Error::IncompatibleVersion(_)
            | Error::CommandNotInVersion { .. }
            | Error::Env { .. }
            | Error::Decode(_)
            | Error::InvalidConfig(_),
        ) => e,
        (Command::Status, _) => Error::NotReady {
            reason: e.to_string(),
            pods_affected: false,
        },
        _ => e,
    }
}

/// CHECK came with 0.4.0, GC and STATUS with 1.1.0.
pub(crate) fn command_in_version(cmd: Command, conf: &NetConf) -> Result<()> {
    let needs = match cmd {
        Command::Check => Some(Version::new(0, 4, 0)),
        Command::Gc | Command::Status => Some(Version::new(1, 1, 0)),
        _ => None,
    };
    match needs {
        Some(min) if conf.cni_version < min => Err(Error::CommandNotInVersion {
            command: cmd.as_str().into(),
            version: conf.cni_version.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A failed ADD or RECONCILE is undone (the journal, newest first). Returns the
/// outcome and how many steps were rolled back.
fn settle(
    verb: Verb,
    result: Result<wasm::Reply>,
    gate: &mut Gate,
) -> (Result<wasm::Reply>, Option<usize>) {
    match result {
        Err(e) if verb.journaled() => {
            let (n, failures) = gate.rollback();
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
/// config.
fn plan(env: &Env, conf: &NetConf, has_netns: bool) -> (Grants, wasm::Call) {
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
    let mut grants = Grants::new(
        scope,
        has_netns,
        &conf.bridge,
        &conf.link_prefix,
        conf.pod_networks.clone(),
    );
    if env.command == Command::Check {
        grants.set_read_only("CHECK");
    }
    grants.set_requested_mac(conf.requested.mac);
    grants.set_cluster(conf.cluster.clone());
    let request = || wasm::Request {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        host_link: grants.host_link().unwrap_or_default().to_string(),
        has_netns,
        args: env.args.clone(),
        ips: conf.requested.ips_text(),
        mac: conf.requested.mac.map(|m| m.to_string()),
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
