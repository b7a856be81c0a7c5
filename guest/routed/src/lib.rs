//! The routed policy: point-to-point wiring, no bridge. Also the starter for a new
//! policy (`scripts/new-guest.sh NAME` copies this crate): one file, every host call
//! in plain sight.
//!
//! For each pod:
//! - a veth pair: `eth0` in the pod, the attachment's `host-link` on the node;
//! - the pod address as a /32 on `eth0`, a link route to the gateway and a default
//!   route via it (the pod has no subnet: everything goes through the node);
//! - the gateway address (the subnet's first address) as a /32 on the host end, so the
//!   node answers the pod's ARP for it; the same /32 sits on every pod's host end;
//! - a /32 route on the node to the pod through its host end.
//!
//! Node setup (once, like the default policy): ip_forward, forwarding and masquerade
//! rules for traffic leaving the cluster. Same config fields and IPAM as the default
//! guest (`wasm-cni-guest-kit`), so a node can switch policy between pods' lifetimes.

use wasm_cni_guest_kit::config::Config;
use wasm_cni_guest_kit::{ipam, prev};

wit_bindgen::generate!({
    path: "../../wit",
    world: "cni-policy",
});

use exports::wasm_cni::plugin::policy::{
    AddResult, Attachment, CniError, Guest, IpConfig, Request, ResultInterface, ResultRoute,
};
use wasm_cni::plugin::routes::Route;
use wasm_cni::plugin::types::{ErrorKind, HostError, Netns};
use wasm_cni::plugin::{addresses, firewall, links, log, routes, store, sysctl};

/// Policy error codes (CNI reserves 100+ for plugins; 7 is "invalid network config").
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

/// Turn a host error into a CNI error that says which step failed.
fn step(what: &str) -> impl Fn(HostError) -> CniError + '_ {
    move |e| cni(HOST_FAILED, format!("{what}: {}", e.message))
}

fn config(json: &str) -> Result<Config, CniError> {
    Config::parse(json).map_err(|m| cni(INVALID_CONFIG, m))
}

/// The runner's store, as the kit's IPAM sees it.
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

fn store_error(m: String) -> CniError {
    cni(HOST_FAILED, format!("address store: {m}"))
}

/// Forwarding and masquerade, once per node (a stored fingerprint says it is done).
fn ensure_node(cfg: &Config) -> Result<(), CniError> {
    let fingerprint = format!(
        "routed v1 gw={}/32 subnet={} pods={} hosts={} mtu={:?}",
        cfg.gateway(),
        cfg.pod_subnet,
        cfg.pod_network,
        cfg.host_network,
        cfg.mtu
    );
    if store::get("node/setup")
        .map_err(step("read node state"))?
        .as_deref()
        == Some(&fingerprint)
    {
        return Ok(());
    }
    log::write(log::Level::Info, &format!("setting up node: {fingerprint}"));
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
    let cfg = config(&req.config)?;
    ensure_node(&cfg)?;
    let ip = ipam::allocate(
        &mut HostStore,
        cfg.pod_subnet,
        &req.container_id,
        &req.ifname,
    )
    .map_err(|e| match e {
        ipam::IpamError::Exhausted(m) => cni(POOL_EXHAUSTED, m),
        ipam::IpamError::Store(m) => store_error(m),
    })?;
    let host = req.host_link.clone();
    // a host end left by an interrupted ADD of this same attachment is stale
    if links::get(Netns::Host, &host)
        .map_err(step("look up host veth"))?
        .is_some()
    {
        links::delete(Netns::Host, &host).map_err(step("remove stale host veth"))?;
    }
    let pair = links::create_veth(&host, &req.ifname, cfg.mtu).map_err(step("create veth"))?;
    let gw = cfg.gateway().to_string();
    let pod = format!("{ip}/32");

    // node side: the gateway /32 on the host end, the route to the pod through it
    addresses::add(Netns::Host, &host, &format!("{gw}/32")).map_err(step("add gateway address"))?;
    links::set_up(Netns::Host, &host).map_err(step("bring host veth up"))?;
    let to_pod = Route {
        destination: pod.clone(),
        gateway: None,
        link: Some(host.clone()),
    };
    routes::add(Netns::Host, &to_pod).map_err(step("add route to pod"))?;

    // pod side: the /32, the gateway reachable on the link, the default route via it
    addresses::add(Netns::Container, &req.ifname, &pod).map_err(step("add pod address"))?;
    links::set_up(Netns::Container, &req.ifname).map_err(step("bring pod interface up"))?;
    let to_gw = Route {
        destination: format!("{gw}/32"),
        gateway: None,
        link: Some(req.ifname.clone()),
    };
    routes::add(Netns::Container, &to_gw).map_err(step("add route to gateway"))?;
    let default = Route {
        destination: "0.0.0.0/0".into(),
        gateway: Some(gw.clone()),
        link: Some(req.ifname.clone()),
    };
    routes::add(Netns::Container, &default).map_err(step("add default route"))?;
    log::write(
        log::Level::Info,
        &format!("pod {} got {pod} on {host}", req.container_id),
    );
    Ok(AddResult {
        interfaces: vec![
            ResultInterface {
                name: host,
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
            address: pod,
            gateway: Some(gw.clone()),
            interface: Some(1),
        }],
        routes: vec![
            ResultRoute {
                destination: format!("{gw}/32"),
                gateway: None,
            },
            ResultRoute {
                destination: "0.0.0.0/0".into(),
                gateway: Some(gw),
            },
        ],
        dns: None,
    })
}

/// Remove an attachment's host end; the pod end and the node's route to the pod go
/// with it. Already gone is fine (DEL must succeed twice).
fn remove_host_veth(name: &str) -> Result<(), CniError> {
    match links::delete(Netns::Host, name) {
        Err(e) if e.kind != ErrorKind::NotFound => Err(step("remove host veth")(e)),
        _ => Ok(()),
    }
}

fn del(req: &Request) -> Result<(), CniError> {
    // needs nothing from the config: names are derived, state is in the store
    remove_host_veth(&req.host_link)?;
    if let Some(ip) =
        ipam::release(&mut HostStore, &req.container_id, &req.ifname).map_err(store_error)?
    {
        log::write(
            log::Level::Info,
            &format!("pod {} released {ip}", req.container_id),
        );
    }
    Ok(())
}

fn check(req: &Request) -> Result<(), CniError> {
    let cfg = config(&req.config)?;
    let want = prev::expected(&req.config, &req.ifname).map_err(|m| cni(INVALID_CONFIG, m))?;
    let failed = |m: String| cni(CHECK_FAILED, m);
    // pod side: the kit compares what is found with the result
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
        .map_err(failed)?;
    // node side: the host end, and a route to each pod address through it
    let host = &req.host_link;
    if links::get(Netns::Host, host)
        .map_err(step("look up host veth"))?
        .is_none()
    {
        return Err(failed(format!("host veth {host} is missing")));
    }
    let node_routes = routes::list(Netns::Host, Some(host)).map_err(step("list node routes"))?;
    for a in &want.addresses {
        let ip = a.split('/').next().unwrap_or(a);
        let dst = format!("{ip}/32");
        if !node_routes.iter().any(|r| r.destination == dst) {
            return Err(failed(format!("node route to {dst} via {host} is missing")));
        }
    }
    let gw = format!("{}/32", cfg.gateway());
    let host_addrs = addresses::list(Netns::Host, host).map_err(step("list host addresses"))?;
    if !host_addrs.contains(&gw) {
        return Err(failed(format!("gateway {gw} is missing on {host}")));
    }
    Ok(())
}

fn gc(valid: &[Attachment]) -> Result<(), CniError> {
    for (cid, ifname) in ipam::holders(&mut HostStore).map_err(store_error)? {
        if valid
            .iter()
            .any(|a| a.container_id == cid && a.ifname == ifname)
        {
            continue;
        }
        remove_host_veth(&links::attachment_link(&cid, &ifname))?;
        let freed = ipam::release(&mut HostStore, &cid, &ifname).map_err(store_error)?;
        log::write(
            log::Level::Info,
            &format!("gc: released {cid}/{ifname} ({freed:?})"),
        );
    }
    Ok(())
}

fn status(config_json: &str) -> Result<(), CniError> {
    config(config_json)?;
    store::list("node/").map_err(|e| cni(HOST_FAILED, format!("store unusable: {}", e.message)))?;
    Ok(())
}

/// The exported policy: each WIT function calls the function above of the same name.
struct Routed;

impl Guest for Routed {
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

// Only the wasm build exports the component; natively the crate still compiles (and
// clippy checks it) as a plain library.
#[cfg(target_arch = "wasm32")]
export!(Routed);
