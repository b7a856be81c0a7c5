//! `wasm-cni simulate`: run a guest on one CNI request against the in-memory node of
//! `node::model`, without root, and print every host call it made with its answer, then the
//! CNI result. The same grants, journal and rollback as a real call; only the node is
//! a model. With a session file, the model (links, routes, store...) carries over from
//! call to call.

use crate::calllog::CallLog;
use crate::cni::{output, Command, Env, NetConf};
use crate::error::{Error, Result};
use crate::node::model::{self as sim, Model, World};
use crate::session::{command_in_version, Session};
use crate::{gate, wasm};
use ipnetwork::IpNetwork;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// One simulated call.
pub struct Options {
    pub command: String,
    pub config: PathBuf,
    /// Overrides the config's `guest`.
    pub guest: Option<PathBuf>,
    /// Where the node model lives between calls (none: a fresh node, not kept).
    pub session: Option<PathBuf>,
    pub container_id: String,
    pub ifname: String,
    /// The runtime gave no namespace (DEL after the pod's namespace is gone).
    pub no_netns: bool,
    /// CNI_ARGS.
    pub args: Option<String>,
    /// Print the node after the call.
    pub show_node: bool,
}

/// The printed report, whether the guest answered without error, and a failure to
/// save the session (the report is still worth printing).
pub struct Outcome {
    pub text: String,
    pub ok: bool,
    pub session_error: Option<Error>,
}

/// A fresh node for this network: eth0 in `hostNetwork`, else `myHostNetwork` (a CIDR, or a list with one
/// per family; its second address) with the default route via the first, like the
/// lab's nodes; 10.0.0.2/24 otherwise. An IPv6 host network makes the node dual-stack.
fn fresh_world(raw: &str) -> World {
    let v: Option<serde_json::Value> = serde_json::from_str(raw).ok();
    let key = |k: &str| v.as_ref().and_then(|v| v.get(k)).filter(|x| !x.is_null());
    let hosts: Vec<IpNetwork> = match key("hostNetwork").or_else(|| key("myHostNetwork")) {
        Some(serde_json::Value::String(s)) => s.parse().ok().into_iter().collect(),
        Some(serde_json::Value::Array(a)) => {
            a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect()
        }
        _ => Vec::new(),
    };
    // the node's address (.2 / ::2) and its gateway (.1 / ::1) in `net`
    let node = |net: IpNetwork| -> (IpNetwork, IpAddr) {
        match net {
            IpNetwork::V4(n) => {
                let base = u32::from(n.network());
                let ip = Ipv4Addr::from(base + 2);
                (
                    IpNetwork::new(ip.into(), n.prefix()).expect("valid prefix"),
                    Ipv4Addr::from(base + 1).into(),
                )
            }
            IpNetwork::V6(n) => {
                let base = u128::from(n.network());
                let ip = Ipv6Addr::from(base + 2);
                (
                    IpNetwork::new(ip.into(), n.prefix()).expect("valid prefix"),
                    Ipv6Addr::from(base + 1).into(),
                )
            }
        }
    };
    let v4 = hosts
        .iter()
        .find(|n| n.is_ipv4() && n.prefix() <= 30)
        .copied()
        .unwrap_or_else(|| "10.0.0.0/24".parse().expect("valid"));
    let (ip, gw) = node(v4);
    let mut w = World::new(ip, gw);
    if let Some(v6) = hosts.iter().find(|n| n.is_ipv6() && n.prefix() <= 126) {
        let (ip, gw) = node(*v6);
        w.add_node_address(ip, gw);
    }
    w
}

fn load_world(session: Option<&Path>, raw: &str) -> Result<(World, &'static str)> {
    let Some(p) = session else {
        return Ok((fresh_world(raw), "none, a fresh node"));
    };
    match std::fs::read_to_string(p) {
        Ok(text) => serde_json::from_str(&text)
            .map(|w| (w, "loaded"))
            .map_err(|e| Error::InvalidConfig(format!("session file {}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((fresh_world(raw), "new")),
        Err(e) => Err(Error::io(p.display().to_string(), e)),
    }
}

/// Where simulate keeps precompiled guests: the user's cache (simulate runs without
/// root, so not the config's `cacheDir`). A JavaScript guest then compiles once, not
/// on every call; if the directory is unusable the guest is just compiled each time.
fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("wasm-cni")
}

fn save_world(p: &Path, w: &World) -> Result<()> {
    let text = serde_json::to_string_pretty(w).expect("the model serializes");
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text + "\n")
        .and_then(|_| std::fs::rename(&tmp, p))
        .map_err(|e| Error::io(p.display().to_string(), e))
}

/// Run one call. `Err` is for the simulator's own failures (unreadable config, guest
/// that is not a component); the guest's CNI errors are part of the `Outcome`.
pub fn run(o: &Options) -> Result<Outcome> {
    let raw = std::fs::read_to_string(&o.config)
        .map_err(|e| Error::io(o.config.display().to_string(), e))?;
    let cmd = o.command.to_uppercase();
    if cmd == "RECONCILE" {
        let raw = crate::reconcile::network_config(&raw)?;
        let (world, origin) = load_world(o.session.as_deref(), &raw)?;
        return reconcile(o, raw, world, origin);
    }
    let (mut world, origin) = load_world(o.session.as_deref(), &raw)?;
    let attachment = format!("{}/{}", o.container_id, o.ifname);
    // like a runtime: CHECK and DEL get the cached ADD result as prevResult
    let mut prev_note = "";
    let raw = match world.results.get(&attachment) {
        Some(prev) if matches!(Command::parse(&cmd), Some(Command::Check | Command::Del)) => {
            match with_prev_result(&raw, prev) {
                Some(r) => {
                    prev_note = "; prevResult from the session's ADD";
                    r
                }
                None => raw,
            }
        }
        _ => raw,
    };
    let conf = NetConf::parse(raw)?;
    let netns_path = format!("/run/netns/{}", o.container_id);
    let env = Env::from_lookup_in(
        |k| match k {
            "CNI_COMMAND" => Some(cmd.clone()),
            "CNI_CONTAINERID" => Some(o.container_id.clone()),
            "CNI_IFNAME" => Some(o.ifname.clone()),
            "CNI_NETNS" => (!o.no_netns).then(|| netns_path.clone()),
            "CNI_ARGS" => o.args.clone(),
            "CNI_PATH" => Some("/opt/cni/bin".into()),
            _ => None,
        },
        |_| true,
    )?;
    // runtimeConfig's and CNI_ARGS' requested ips/mac together, as the plugin does
    let mut conf = conf.with_args(&env)?;
    if let Some(g) = &o.guest {
        conf.guest = g.clone();
    }
    if env.command == Command::Version {
        return Err(Error::InvalidConfig(
            "simulate runs ADD, DEL, CHECK, GC, STATUS or RECONCILE (VERSION never reaches a guest)".into(),
        ));
    }
    command_in_version(env.command, &conf)?;

    let pod = sim::pod_ns(&env.container_id);
    let has_netns = env.command.per_attachment() && !o.no_netns;
    if has_netns {
        world.ensure_pod_ns(&pod);
    } else if env.command == Command::Del {
        // the runtime sends DEL without a netns once the namespace is gone
        world.remove_ns(&pod);
    }

    let (engine, guest) = engine_and_guest(&conf)?;

    let model = Model {
        world,
        container: has_netns.then(|| pod.clone()),
    };
    let mut session = Session::new(
        &env,
        &conf,
        Box::new(model),
        has_netns,
        CallLog::discard(),
        (&conf.guest, &guest.digest),
    );
    gate::lock(session.gate()).transcript = Some(Vec::new());
    let done = session.run(&engine, &guest.component);
    let (result, rolled_back) = (done.result, done.rolled_back);
    let mut g = session.into_gate()?;

    let mut text = String::new();
    let _ = writeln!(
        text,
        "# {} container {:?} ifname {:?} netns {}; guest {}; session {}{prev_note}",
        env.command.as_str(),
        env.container_id,
        env.ifname,
        if has_netns { &netns_path } else { "none" },
        conf.guest.display(),
        session_label(o, origin)
    );
    transcript(&mut text, &mut g, rolled_back);
    let ok = result.is_ok();
    let mut added = None;
    let deleted = ok && env.command == Command::Del;
    match result {
        Ok(wasm::Reply::Added(r)) => {
            let doc = r.to_json(conf.cni_version);
            let _ = writeln!(text, "result:\n{}", pretty(&doc));
            added = Some(doc);
        }
        Ok(wasm::Reply::Done) => {
            let _ = writeln!(text, "result: success (no output, as the CNI spec says)");
        }
        Err(e) => {
            let doc = output::error(conf.cni_version, &e);
            let _ = writeln!(text, "error:\n{}", pretty(&doc));
        }
    }
    let mut world = model_world(g.node)?;
    if deleted {
        // after a successful DEL the runtime destroys the pod's namespace and forgets
        // the cached result
        world.remove_ns(&pod);
        world.results.remove(&attachment);
    }
    if let Some(doc) = added {
        world.results.insert(attachment, doc);
    }
    Ok(finish(o, text, ok, &world))
}

/// An engine and the config's guest on it (from the simulator's cache when there).
fn engine_and_guest(conf: &NetConf) -> Result<(wasmtime::Engine, wasm::engine::Loaded)> {
    let engine = wasm::engine::engine()?;
    let guest = wasm::engine::load(
        &engine,
        &conf.guest,
        &cache_dir(),
        conf.guest_digest.as_deref(),
    )?;
    Ok((engine, guest))
}

/// Where the world came from, for the transcript's first line.
fn session_label(o: &Options, origin: &str) -> String {
    match &o.session {
        Some(p) => format!("{} ({origin})", p.display()),
        None => origin.to_string(),
    }
}

/// The model is the node: take it back from the sandbox after the call.
fn model_world(node: Box<dyn crate::node::Node>) -> Result<World> {
    node.into_any()
        .downcast::<Model>()
        .map(|m| m.world)
        .map_err(|_| Error::Internal("the simulated node is not the model".into()))
}

/// The outcome of a call on the model: the node after it when asked, the session saved.
fn finish(o: &Options, mut text: String, ok: bool, world: &World) -> Outcome {
    if o.show_node {
        let _ = write!(text, "node after the call:\n{}", sim::describe(world));
    }
    let session_error = o.session.as_ref().and_then(|p| save_world(p, world).err());
    Outcome {
        text,
        ok,
        session_error,
    }
}

/// The host calls the guest made, with their answers, and the rollback.
fn transcript(text: &mut String, g: &mut gate::Gate, rolled_back: Option<usize>) {
    let transcript = g.transcript.take().unwrap_or_default();
    let _ = writeln!(text, "host calls: {}", transcript.len());
    for (i, line) in transcript.iter().enumerate() {
        let _ = writeln!(text, "{:>4}  {line}", i + 1);
    }
    if let Some(n) = rolled_back {
        let _ = writeln!(text, "rolled back: {n} change(s) undone, newest first");
    }
}

/// `simulate RECONCILE`: the guest's node-policy `reconcile` on the model (`raw`: the
/// network config, taken from a .conflist as `wasm-cni reconcile` takes it).
fn reconcile(o: &Options, raw: String, world: World, origin: &str) -> Result<Outcome> {
    let mut conf = NetConf::parse(raw)?;
    if let Some(g) = &o.guest {
        conf.guest = g.clone();
    }
    let (engine, guest) = engine_and_guest(&conf)?;
    let mut text = format!(
        "# RECONCILE; guest {}; session {}\n",
        conf.guest.display(),
        session_label(o, origin)
    );
    if !wasm::has_node_policy(&engine, &guest.component, &conf.guest)? {
        let _ = writeln!(
            text,
            "guest {} has no node-policy export: nothing to reconcile",
            conf.guest.display()
        );
        return Ok(Outcome {
            text,
            ok: true,
            session_error: None,
        });
    }
    let model = Model {
        world,
        container: None,
    };
    let mut session = Session::reconcile(
        &conf,
        Box::new(model),
        CallLog::discard(),
        (&conf.guest, &guest.digest),
    );
    gate::lock(session.gate()).transcript = Some(Vec::new());
    let done = session.run(&engine, &guest.component);
    let mut g = session.into_gate()?;
    transcript(&mut text, &mut g, done.rolled_back);
    let ok = done.result.is_ok();
    match done.result {
        Ok(_) => {
            let _ = writeln!(text, "result: reconciled");
        }
        Err(e) => {
            let _ = writeln!(text, "error: {e}");
        }
    }
    let world = model_world(g.node)?;
    Ok(finish(o, text, ok, &world))
}

/// The config with `prevResult` set, unless it has one already.
fn with_prev_result(raw: &str, prev: &serde_json::Value) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(raw).ok()?;
    let obj = v.as_object_mut()?;
    if obj.contains_key("prevResult") {
        return None;
    }
    obj.insert("prevResult".into(), prev.clone());
    serde_json::to_string(&v).ok()
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dual_stack_host_network_makes_a_dual_stack_node() {
        let w = fresh_world(r#"{"myHostNetwork": ["10.0.0.0/16", "fd00:10::/64"]}"#);
        let text = sim::describe(&w);
        assert!(text.contains("addr 10.0.0.2/16 fd00:10::2/64"), "{text}");
        assert!(
            text.contains("route 0.0.0.0/0 via 10.0.0.1 dev eth0"),
            "{text}"
        );
        assert!(
            text.contains("route ::/0 via fd00:10::1 dev eth0"),
            "{text}"
        );
        // a single CIDR, as before: IPv4 only, and no IPv6 switch in the state
        let text = sim::describe(&fresh_world(r#"{"myHostNetwork": "10.0.0.0/16"}"#));
        assert!(text.contains("addr 10.0.0.2/16\n"), "{text}");
        assert!(!text.contains("::") && !text.contains("ipv6"), "{text}");
    }
}
