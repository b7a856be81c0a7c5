//! The CNI commands of the default policy, in terms of the runner's host functions.

use crate::config::Config;
use crate::exports::wasm_cni::plugin::policy::{
    AddResult, Attachment, CniError, Guest, IpConfig, Request, ResultInterface, ResultRoute,
};
use crate::ipam;
use crate::wasm_cni::plugin::routes::Route;
use crate::wasm_cni::plugin::types::{ErrorKind, HostError, Netns};
use crate::wasm_cni::plugin::{addresses, firewall, links, log, routes, store, sysctl};
use wasm_cni_guest_kit::prev;

/// Policy error codes (CNI reserves 100+ for plugins).
const HOST_FAILED: u32 = 100;
const POOL_EXHAUSTED: u32 = 101;
const CHECK_FAILED: u32 = 102;
const INVALID_CONFIG: u32 = 7;

fn cni(code: u32, message: impl Into<String>) -> CniError {
    CniError {
        code,
        message: message.into(),
        details: String::new(),
    }
}

/// Turn a host error into a CNI error, saying which step failed.
fn step(what: &str) -> impl Fn(HostError) -> CniError + '_ {
    move |e| cni(HOST_FAILED, format!("{what}: {}", e.message))
}

fn info(msg: &str) {
    log::write(log::Level::Info, msg);
}

/// The runner's store, as IPAM sees it.
struct HostStore;

impl ipam::Store for HostStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        store::get(key).map_err(|e| e.message)
    }
    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        store::put(key, value).map_err(|e| e.message)
    }
    fn delete(&mut self, key: &str) -> Result<bool, String> {
        store::delete(key).map_err(|e| e.message)
    }
    fn list(&mut self, prefix: &str) -> Result<Vec<String>, String> {
        store::list(prefix).map_err(|e| e.message)
    }
}

fn parse_config(json: &str) -> Result<Config, CniError> {
    Config::parse(json).map_err(|m| cni(INVALID_CONFIG, m))
}

/// Node setup, once: bridge with the gateway address, forwarding, firewall rules.
/// Later calls only look at the bridge and a stored fingerprint of the settings.
fn ensure_node(cfg: &Config) -> Result<(), CniError> {
    let fingerprint = cfg.fingerprint();
    let bridge = links::get(Netns::Host, &cfg.bridge).map_err(step("look up bridge"))?;
    if let Some(b) = &bridge {
        let done = store::get("node/setup").map_err(step("read node state"))?;
        if b.up && done.as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
        }
    }
    info(&format!("setting up node: {fingerprint}"));
    if bridge.is_none() {
        links::create_bridge(&cfg.bridge, cfg.mtu).map_err(step("create bridge"))?;
    }
    let gw = format!("{}/{}", cfg.gateway(), cfg.pod_subnet.prefix);
    let have = addresses::list(Netns::Host, &cfg.bridge).map_err(step("list bridge addresses"))?;
    if !have.contains(&gw) {
        addresses::add(Netns::Host, &cfg.bridge, &gw).map_err(step("add gateway address"))?;
    }
    links::set_up(Netns::Host, &cfg.bridge).map_err(step("bring bridge up"))?;
    let fwd = sysctl::get(Netns::Host, "net.ipv4.ip_forward").map_err(step("read ip_forward"))?;
    if fwd.trim() != "1" {
        sysctl::set(Netns::Host, "net.ipv4.ip_forward", "1").map_err(step("enable ip_forward"))?;
    }
    firewall::allow_forward(&cfg.pod_network.to_string()).map_err(step("allow forwarding"))?;
    let except = [cfg.pod_network.to_string(), cfg.host_network.to_string()];
    firewall::masquerade(&cfg.pod_subnet.to_string(), &except).map_err(step("masquerade"))?;
    store::put("node/setup", &fingerprint).map_err(step("record node state"))?;
    Ok(())
}

fn add(req: &Request) -> Result<AddResult, CniError> {
    let cfg = parse_config(&req.config)?;
    ensure_node(&cfg)?;
    let ip = ipam::allocate(
        &mut HostStore,
        cfg.pod_subnet,
        &req.container_id,
        &req.ifname,
    )
    .map_err(|e| match e {
        ipam::IpamError::Exhausted(m) => cni(POOL_EXHAUSTED, m),
        ipam::IpamError::Store(m) => cni(HOST_FAILED, format!("address store: {m}")),
    })?;
    let host_name = req.host_link.clone();
    // A host end left by an earlier, interrupted ADD of this attachment is stale.
    if links::get(Netns::Host, &host_name)
        .map_err(step("look up host veth"))?
        .is_some()
    {
        links::delete(Netns::Host, &host_name).map_err(step("remove stale host veth"))?;
    }
    if links::get(Netns::Container, &req.ifname)
        .map_err(step("look up container interface"))?
        .is_some()
    {
        return Err(cni(
            HOST_FAILED,
            format!("interface {:?} already exists in the container", req.ifname),
        ));
    }
    let pair = links::create_veth(&host_name, &req.ifname, cfg.mtu).map_err(step("create veth"))?;
    links::set_master(&host_name, &cfg.bridge).map_err(step("attach veth to bridge"))?;
    links::set_up(Netns::Host, &host_name).map_err(step("bring host veth up"))?;
    let cidr = format!("{ip}/{}", cfg.pod_subnet.prefix);
    addresses::add(Netns::Container, &req.ifname, &cidr).map_err(step("add pod address"))?;
    links::set_up(Netns::Container, &req.ifname).map_err(step("bring pod interface up"))?;
    let gw = cfg.gateway().to_string();
    let default = Route {
        destination: "0.0.0.0/0".into(),
        gateway: Some(gw.clone()),
        link: Some(req.ifname.clone()),
    };
    routes::add(Netns::Container, &default).map_err(step("add default route"))?;
    info(&format!(
        "pod {} got {cidr} on {host_name}",
        req.container_id
    ));
    Ok(AddResult {
        interfaces: vec![
            ResultInterface {
                name: host_name,
                mac: pair.host.mac,
                sandbox: false,
            },
            ResultInterface {
                name: req.ifname.clone(),
                mac: pair.container.mac,
                sandbox: true,
            },
        ],
        ips: vec![IpConfig {
            address: cidr,
            gateway: Some(gw.clone()),
            interface: Some(1),
        }],
        routes: vec![ResultRoute {
            destination: "0.0.0.0/0".into(),
            gateway: Some(gw),
        }],
        dns: None,
    })
}

/// Remove the host end of an attachment's veth (the pod end goes with it).
fn remove_host_veth(host_name: &str) -> Result<(), CniError> {
    match links::delete(Netns::Host, host_name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(step("remove host veth")(e)),
    }
}

fn del(req: &Request) -> Result<(), CniError> {
    // DEL needs nothing from the config: names are derived and state is in the store,
    // so a DEL with a since-broken config still cleans up.
    remove_host_veth(&req.host_link)?;
    let freed = ipam::release(&mut HostStore, &req.container_id, &req.ifname)
        .map_err(|m| cni(HOST_FAILED, format!("address store: {m}")))?;
    if let Some(ip) = freed {
        info(&format!("pod {} released {ip}", req.container_id));
    }
    Ok(())
}

/// The container side of CHECK: the interface is there and up, with the MAC, addresses
/// and routes ADD reported (the comparison is the kit's).
fn check_container(req: &Request, want: &prev::Expected) -> Result<(), CniError> {
    let failed = |m: String| cni(CHECK_FAILED, m);
    let pod =
        links::get(Netns::Container, &req.ifname).map_err(step("look up container interface"))?;
    want.check_link(&req.ifname, pod.as_ref().map(|l| (l.up, l.mac.as_str())))
        .map_err(failed)?;
    let have =
        addresses::list(Netns::Container, &req.ifname).map_err(step("list pod addresses"))?;
    let table: Vec<(String, Option<String>)> = routes::list(Netns::Container, None)
        .map_err(step("list pod routes"))?
        .into_iter()
        .map(|r| (r.destination, r.gateway))
        .collect();
    want.check_config(&req.ifname, &have, &table)
        .map_err(failed)
}

fn check(req: &Request) -> Result<(), CniError> {
    let cfg = parse_config(&req.config)?;
    let want = prev::expected(&req.config, &req.ifname).map_err(|m| cni(INVALID_CONFIG, m))?;
    check_container(req, &want)?;
    let failed = |m: String| cni(CHECK_FAILED, m);
    let host_name = &req.host_link;
    if links::get(Netns::Host, host_name)
        .map_err(step("look up host veth"))?
        .is_none()
    {
        return Err(failed(format!("host veth {host_name} is missing")));
    }
    if links::get(Netns::Host, &cfg.bridge)
        .map_err(step("look up bridge"))?
        .is_none()
    {
        return Err(failed(format!("bridge {} is missing", cfg.bridge)));
    }
    Ok(())
}

fn gc(valid: &[Attachment]) -> Result<(), CniError> {
    let holders = ipam::holders(&mut HostStore)
        .map_err(|m| cni(HOST_FAILED, format!("address store: {m}")))?;
    for (cid, ifname) in holders {
        if valid
            .iter()
            .any(|a| a.container_id == cid && a.ifname == ifname)
        {
            continue;
        }
        remove_host_veth(&links::attachment_link(&cid, &ifname))?;
        let freed = ipam::release(&mut HostStore, &cid, &ifname)
            .map_err(|m| cni(HOST_FAILED, format!("address store: {m}")))?;
        info(&format!("gc: released {cid}/{ifname} ({freed:?})"));
    }
    Ok(())
}

fn status(config: &str) -> Result<(), CniError> {
    parse_config(config)?;
    store::list("node/").map_err(|e| cni(HOST_FAILED, format!("store unusable: {}", e.message)))?;
    Ok(())
}

/// The exported policy.
pub struct Policy;

impl Guest for Policy {
    fn add(req: Request) -> Result<AddResult, CniError> {
        add(&req)
    }
    fn del(req: Request) -> Result<(), CniError> {
        del(&req)
    }
    fn check(req: Request) -> Result<(), CniError> {
        check(&req)
    }
    fn gc(_config: String, valid: Vec<Attachment>) -> Result<(), CniError> {
        gc(&valid)
    }
    fn status(config: String) -> Result<(), CniError> {
        status(&config)
    }
}
