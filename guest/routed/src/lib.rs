//! The routed policy: point-to-point wiring, no bridge. Also the starter for a new
//! policy (`scripts/new-guest.sh NAME` copies this crate): one file, every host call
//! of ADD and CHECK in plain sight.
//!
//! For each pod, and each address family the node has a subnet of (`myPodSubnet`: a
//! CIDR, or a list with an IPv4 and an IPv6 one):
//! - a veth pair: `eth0` in the pod, the attachment's `host-link` on the node;
//! - the pod address as a /32 (/128) on `eth0`, a link route to the gateway and a
//!   default route via it (the pod has no subnet: everything goes through the node);
//! - the gateway address (the subnet's first address) as a /32 (/128) on the host end,
//!   so the node answers the pod's ARP (neighbour solicitation) for it; the same
//!   address sits on every pod's host end;
//! - a /32 (/128) route on the node to the pod through its host end.
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

/// A single address of `ip`'s family as CIDR: `/32` or `/128`.
fn host_cidr(ip: impl std::fmt::Display + Copy, family: Family) -> String {
    format!("{ip}/{}", family.bits())
}

/// Forwarding and masquerade, once per node (a stored fingerprint says it is done).
fn ensure_node(cfg: &Config) -> Result<(), CniError> {
    let gws: Vec<String> = cfg
        .pod_subnet
        .iter()
        .map(|s| host_cidr(s.gateway(), s.family()))
        .collect();
    let mut fingerprint = format!(
        "routed v1 gw={} subnet={} pods={} hosts={} mtu={:?}",
        gws.join(","),
        cfg.pod_subnet,
        cfg.pod_network,
        cfg.host_network,
        cfg.mtu
    );
    if cfg.ip_masq6 && cfg.pod_subnet.v6.is_some() {
        fingerprint.push_str(" masq6");
    }
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
        // one address per family of the node's subnets (the runtime's requested ones
        // when it asked), IPv4 first
        let pod_ips = allocate(&cfg, req)?;
        let host = req.host_link.clone();
        // a host end left by an interrupted ADD of this same attachment is stale
        if links::get(Netns::Host, &host)
            .map_err(step("look up host veth"))?
            .is_some()
        {
            links::delete(Netns::Host, &host).map_err(step("remove stale host veth"))?;
        }
        let mac = req.mac.as_deref();
        let pair =
            links::create_veth(&host, &req.ifname, cfg.mtu, mac).map_err(step("create veth"))?;
        if pod_ips.iter().any(|a| a.family() == Family::V6) {
            // IPv6: no duplicate address detection on the two ends made here (IPAM made
            // the addresses unique; DAD would hold them back for 1-2 s)
            for (ns, link) in [(Netns::Host, &host), (Netns::Container, &req.ifname)] {
                sysctl::set(ns, &format!("net.ipv6.conf.{link}.accept_dad"), "0")
                    .map_err(step("turn off DAD"))?;
            }
        }

        // node side: the gateway /32 (/128) on the host end, the route to the pod
        for a in &pod_ips {
            let gw = host_cidr(a.gateway(), a.family());
            addresses::add(Netns::Host, &host, &gw).map_err(step("add gateway address"))?;
        }
        links::set_up(Netns::Host, &host).map_err(step("bring host veth up"))?;
        for a in &pod_ips {
            let to_pod = Route {
                destination: host_cidr(a.ip, a.family()),
                gateway: None,
                link: Some(host.clone()),
            };
            routes::add(Netns::Host, &to_pod).map_err(step("add route to pod"))?;
        }

        // pod side: the /32 (/128), the gateway reachable on the link, the default
        // route via it
        for a in &pod_ips {
            let pod = host_cidr(a.ip, a.family());
            addresses::add(Netns::Container, &req.ifname, &pod).map_err(step("add pod address"))?;
        }
        links::set_up(Netns::Container, &req.ifname).map_err(step("bring pod interface up"))?;
        let (mut ips, mut result_routes) = (Vec::new(), Vec::new());
        for a in &pod_ips {
            let gw = a.gateway().to_string();
            let to_gw = Route {
                destination: host_cidr(a.gateway(), a.family()),
                gateway: None,
                link: Some(req.ifname.clone()),
            };
            routes::add(Netns::Container, &to_gw).map_err(step("add route to gateway"))?;
            let default = Route {
                destination: a.family().default_route().into(),
                gateway: Some(gw.clone()),
                link: Some(req.ifname.clone()),
            };
            routes::add(Netns::Container, &default).map_err(step("add default route"))?;
            ips.push(IpConfig {
                address: host_cidr(a.ip, a.family()),
                gateway: Some(gw.clone()),
                interface: Some(1),
            });
            result_routes.push(ResultRoute {
                destination: to_gw.destination,
                gateway: None,
            });
            result_routes.push(ResultRoute {
                destination: default.destination,
                gateway: Some(gw),
            });
        }
        let pods: Vec<String> = pod_ips
            .iter()
            .map(|a| host_cidr(a.ip, a.family()))
            .collect();
        info(&format!(
            "pod {} got {} on {host}",
            req.container_id,
            pods.join(", ")
        ));
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
            ips,
            routes: result_routes,
            dns: None,
        })
    }

    /// The pod side is the kit's; the node side: the host end, a route to each pod
    /// address through it, the gateway addresses on it.
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
            let family = if ip.contains(':') {
                Family::V6
            } else {
                Family::V4
            };
            let dst = host_cidr(ip, family);
            if !node_routes.iter().any(|r| r.destination == dst) {
                return Err(failed(format!("node route to {dst} via {host} is missing")));
            }
        }
        let host_addrs = addresses::list(Netns::Host, host).map_err(step("list host addresses"))?;
        for subnet in cfg.pod_subnet.iter() {
            let gw = host_cidr(subnet.gateway(), subnet.family());
            if !host_addrs.contains(&gw) {
                return Err(failed(format!("gateway {gw} is missing on {host}")));
            }
        }
        Ok(())
    }

    /// Every packet of a pod goes through the node: without forwarding, pods reach
    /// nothing, not even each other.
    fn node_problem(cfg: &Config) -> Result<Option<String>, CniError> {
        forwarding_problem(cfg)
    }
}

// Only the wasm build exports the component; natively the crate still compiles (and
// clippy checks it) as a plain library.
#[cfg(target_arch = "wasm32")]
wasm_cni_guest_kit::export!(Routed);
