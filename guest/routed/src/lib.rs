//! The routed policy: point-to-point wiring, no bridge. Also the starter for a new
//! policy (`scripts/new-guest.sh NAME` copies this crate): one file, every host call
//! of ADD and CHECK in plain sight.
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
//! guest, so a node can switch policy between pods' lifetimes.
//!
//! This file is the policy: ADD, CHECK and what STATUS looks at. The kit
//! (`wasm-cni-guest-kit`, `guest/kit`) gives the rest: the world's bindings, DEL, GC,
//! STATUS, the config fields, IPAM, error codes and helpers (`step`, `cni`, `info`).

use wasm_cni_guest_kit::prelude::*;

/// The routed policy.
pub struct Routed;

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
    info(&format!("setting up node: {fingerprint}"));
    enable_forwarding(cfg)?;
    store::put("node/setup", &fingerprint).map_err(step("record node state"))?;
    Ok(())
}

impl Policy for Routed {
    fn add(req: &Request) -> Result<AddResult, CniError> {
        let cfg = parse_config(&req.config)?;
        ensure_node(&cfg)?;
        let ip = allocate(&cfg, req)?;
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
        addresses::add(Netns::Host, &host, &format!("{gw}/32"))
            .map_err(step("add gateway address"))?;
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
        info(&format!("pod {} got {pod} on {host}", req.container_id));
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

    /// The pod side is the kit's; the node side: the host end, a route to each pod
    /// address through it, the gateway address on it.
    fn check(req: &Request) -> Result<(), CniError> {
        let cfg = parse_config(&req.config)?;
        // pod side: the kit compares what is found with the result ADD returned
        let want = check_pod(req)?;
        let failed = |m: String| cni(CHECK_FAILED, m);
        // node side: the host end, and a route to each pod address through it
        let host = &req.host_link;
        if links::get(Netns::Host, host)
            .map_err(step("look up host veth"))?
            .is_none()
        {
            return Err(failed(format!("host veth {host} is missing")));
        }
        let node_routes =
            routes::list(Netns::Host, Some(host)).map_err(step("list node routes"))?;
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

    /// Every packet of a pod goes through the node: without `ip_forward`, pods reach
    /// nothing, not even each other.
    fn node_problem(_cfg: &Config) -> Result<Option<String>, CniError> {
        forwarding_problem()
    }
}

// Only the wasm build exports the component; natively the crate still compiles (and
// clippy checks it) as a plain library.
#[cfg(target_arch = "wasm32")]
wasm_cni_guest_kit::export!(Routed);
