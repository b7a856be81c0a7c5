//! `wasm-cni reconcile -c FILE`: run the guest's `node-policy.reconcile` for the
//! network of a CNI config file, as the cluster scripts do after rewriting it (a node
//! joined or left). The same path as a CNI call: the guest's digest pin, the network's
//! lock, the deadline and memory cap, the gate with its journal (grants
//! `Scope::Node`: the host namespace, no attachment), a rollback on failure, one line
//! in the log file.

use crate::calllog::CallLog;
use crate::cni::NetConf;
use crate::error::{Error, Result};
use crate::node::kernel::store::Store;
use crate::node::kernel::Kernel;
use crate::session::Session;
use crate::{gate, supervisor, wasm};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The plugin `type` whose entry of a list is ours.
pub const PLUGIN_TYPE: &str = "wasm-cni";

/// The network config of our entry in `text`: a `.conflist` (the `plugins` entry of
/// type `wasm-cni`, with the list's `cniVersion` and `name`, as a runtime builds it) or
/// a single `.conf` (the object itself).
pub fn network_config(text: &str) -> Result<String> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Decode(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Error::Decode("a CNI config file holds a JSON object".into()))?;
    let Some(plugins) = obj.get("plugins") else {
        return Ok(text.to_string());
    };
    let list = plugins.as_array().ok_or_else(|| {
        Error::InvalidConfig("\"plugins\" must be a list of plugin configs".into())
    })?;
    let ours = list
        .iter()
        .find(|p| p.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "the list has no plugin of type {PLUGIN_TYPE:?} (types: {})",
                list.iter()
                    .filter_map(|p| p.get("type").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let mut conf: Map<String, Value> = ours.clone();
    for key in ["cniVersion", "name"] {
        if let Some(v) = obj.get(key) {
            conf.insert(key.into(), v.clone());
        }
    }
    serde_json::to_string(&Value::Object(conf)).map_err(|e| Error::Internal(e.to_string()))
}

/// What a run did, for the log line (the same keys as a CNI call's).
#[derive(Default)]
struct Stats {
    host_calls: u32,
    changes: usize,
    rolled_back: Option<usize>,
}

/// Run it: Ok is the one-line summary (also when the guest has nothing to reconcile),
/// Err the failure (its changes undone).
pub fn run(file: &Path) -> Result<String> {
    let started = Instant::now();
    let text =
        std::fs::read_to_string(file).map_err(|e| Error::io(file.display().to_string(), e))?;
    let conf = NetConf::parse(network_config(&text)?)?;
    supervisor::start();
    let log = CallLog::open(&conf.log_file, "RECONCILE", "", conf.limits.log_file_bytes);
    let mut stats = Stats::default();
    let r = execute(&conf, &log, &mut stats);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let counts = format!(
        "host_calls={} changes={}{}",
        stats.host_calls,
        stats.changes,
        stats
            .rolled_back
            .map_or_else(String::new, |n| format!(" rolled_back={n}"))
    );
    match &r {
        Ok(summary) => log.line("INFO", &format!("ok {ms:.2}ms {counts}: {summary}")),
        Err(e) => log.line(
            "ERROR",
            &format!("failed code={} {ms:.2}ms {counts}: {e}", e.code()),
        ),
    }
    r
}

fn execute(conf: &NetConf, log: &CallLog, stats: &mut Stats) -> Result<String> {
    let engine = wasm::engine::engine()?;
    let guest = wasm::engine::load(
        &engine,
        &conf.guest,
        &conf.cache_dir,
        conf.guest_digest.as_deref(),
    )?;
    if !wasm::has_node_policy(&engine, &guest.component, &conf.guest)? {
        return Ok(format!(
            "guest {} has no node-policy export: nothing to reconcile",
            conf.guest.display()
        ));
    }
    let mut store = Store::open(&conf.network_dir())?;
    // node-wide work: the lock for the whole call, whatever the guest imports
    store.enter(Duration::from_millis(conf.lock_timeout_ms), &|| false)?;
    store.sweep_temporaries();
    if let Some(n) = store.check_boot()? {
        log.line(
            "INFO",
            &format!("new boot: cleared the store of network {:?} ({n} keys): no pod of an earlier boot is alive", conf.name),
        );
    }
    let kernel =
        Kernel::new(None, store).map_err(|e| Error::io("the runner's own network namespace", e))?;
    let mut session = Session::reconcile(
        conf,
        Box::new(kernel),
        log.clone(),
        (&conf.guest, &guest.digest),
    );
    supervisor::watch(session.gate().clone(), session.timeout());
    let done = session.run(&engine, &guest.component);
    let g = gate::lock(session.gate());
    stats.host_calls = g.calls;
    // after a rollback the journal is gone: what stays is nothing
    stats.changes = g.journal.as_ref().map_or(0, |j| j.len());
    stats.rolled_back = done.rolled_back;
    drop(g);
    gate::lock(session.gate()).node.lock_leave();
    match (done.result, done.rolled_back) {
        (Ok(_), _) => Ok(format!(
            "network {:?} reconciled by guest {}: {} host call(s), {} change(s)",
            conf.name,
            conf.guest.display(),
            stats.host_calls,
            stats.changes
        )),
        (Err(e), Some(n)) => Err(Error::Policy {
            code: e.code(),
            message: format!("reconcile failed: {e} ({n} change(s) undone)"),
            details: String::new(),
        }),
        (Err(e), None) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_of_a_list_gets_its_version_and_name() {
        let list = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[
            {"type":"wasm-cni","bridge":"cni0","name":"ignored"},{"type":"portmap"}]}"#;
        let c: Value = serde_json::from_str(&network_config(list).unwrap()).unwrap();
        assert_eq!(c["name"], "pods");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["bridge"], "cni0");
        let single = r#"{"cniVersion":"1.0.0","name":"n","type":"wasm-cni"}"#;
        assert_eq!(network_config(single).unwrap(), single);
        let e = network_config(r#"{"name":"n","plugins":[{"type":"bridge"}]}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("no plugin of type \"wasm-cni\" (types: bridge)"),
            "{e}"
        );
        assert_eq!(network_config("[").unwrap_err().code(), 6);
    }
}
