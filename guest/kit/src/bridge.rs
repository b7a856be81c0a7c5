//! The bridge policy (the default guest's, shared by the policies built on it: host-gw
//! and VXLAN): a bridge (`bridge`, default `cni0`) holding the gateway of each pod
//! subnet, a veth per pod, IPAM in the node's subnets, forwarding and masquerade.
//! Written against [`Node`], so the policies' unit tests run it on the fake node.
//!
//! Dual-stack when the config gives an IPv6 subnet (`myPodSubnet` as a list): one
//! address of each family per pod, both gateways on the bridge, both default routes in
//! the pod. IPv6 duplicate address detection is turned off (`accept_dad` 0) on the
//! links this policy creates before their IPv6 address goes on: IPAM already makes the
//! addresses unique, and DAD would leave them unusable for the first 1-2 s.

use crate::prelude::*;

/// The sysctl that turns IPv6 duplicate address detection off on `link`.
pub fn accept_dad_key(link: &str) -> String {
    format!("net.ipv6.conf.{link}.accept_dad")
}

/// Node setup, once: bridge with the gateway addresses, forwarding, firewall rules.
/// Later calls only look at the bridge and a stored fingerprint of the settings.
/// Returns whether it set anything up. Call it inside the lock: two first calls must
/// not both create the bridge.
pub fn ensure_node(node: &mut impl Node, cfg: &Config) -> Result<bool, CniError> {
    let fingerprint = cfg.fingerprint();
    let bridge = node
        .link_get(Netns::Host, &cfg.bridge)
        .map_err(step("look up bridge"))?;
    if let Some(b) = &bridge {
        let done = node
            .get("node/setup")
            .map_err(store_step("read node state"))?;
        if b.up && done.as_deref() == Some(fingerprint.as_str()) {
            return Ok(false);
        }
    }
    node.info(&format!("setting up node: {fingerprint}"));
    if bridge.is_none() {
        node.create_bridge(&cfg.bridge, cfg.mtu)
            .map_err(step("create bridge"))?;
        if cfg.pod_subnet.v6.is_some() {
            // a bridge someone else made keeps its own setting
            node.sysctl_set(Netns::Host, &accept_dad_key(&cfg.bridge), "0")
                .map_err(step("turn off DAD on the bridge"))?;
        }
    }
    let have = node
        .address_list(Netns::Host, &cfg.bridge)
        .map_err(step("list bridge addresses"))?;
    for gw in cfg.gateway_cidrs() {
        if !have.contains(&gw) {
            node.address_add(Netns::Host, &cfg.bridge, &gw)
                .map_err(step("add gateway address"))?;
        }
    }
    node.set_up(Netns::Host, &cfg.bridge)
        .map_err(step("bring bridge up"))?;
    enable_forwarding_on(node, cfg)?;
    node.put("node/setup", &fingerprint)
        .map_err(store_step("record node state"))?;
    Ok(true)
}

/// ADD (see [`Policy::add`]).
pub fn add(node: &mut impl Node, req: &Request) -> Result<AddResult, CniError> {
    add_with(node, req, &parse_config(&req.config)?)
}

/// ADD with the config already read, and possibly adjusted by the calling policy (the
/// VXLAN policy lowers `mtu` to its tunnel's): node setup, then the pod.
pub fn add_with(node: &mut impl Node, req: &Request, cfg: &Config) -> Result<AddResult, CniError> {
    add_after(node, req, cfg, false)
}

/// [`add_with`] after the calling policy's own node work (`node_changed`: it changed
/// the node, inside the lock).
///
/// Node setup and IPAM run inside the network's lock; the pod's own links, addresses
/// and routes outside it, alongside other pods' calls. A call that set the node up (or
/// whose policy changed it) keeps the lock to its end: should it fail, its rollback
/// removes what it set up, which no other pod may have built on meanwhile.
pub fn add_after(
    node: &mut impl Node,
    req: &Request,
    cfg: &Config,
    node_changed: bool,
) -> Result<AddResult, CniError> {
    node.lock_acquire()
        .map_err(step("enter the network's lock"))?;
    let set_up = ensure_node(node, cfg)?;
    let pod_ips = allocate_on(node, cfg, req)?;
    if !(set_up || node_changed) {
        node.lock_release();
    }
    let host_name = req.host_link.clone();
    // A host end left by an earlier, interrupted ADD of this attachment is stale.
    if node
        .link_get(Netns::Host, &host_name)
        .map_err(step("look up host veth"))?
        .is_some()
    {
        node.delete_link(Netns::Host, &host_name)
            .map_err(step("remove stale host veth"))?;
    }
    if node
        .link_get(Netns::Container, &req.ifname)
        .map_err(step("look up container interface"))?
        .is_some()
    {
        return Err(cni(
            HOST_FAILED,
            format!("interface {:?} already exists in the container", req.ifname),
        ));
    }
    let pair = node
        .create_veth(&host_name, &req.ifname, cfg.mtu, req.mac.as_deref())
        .map_err(step("create veth"))?;
    node.set_master(&host_name, &cfg.bridge)
        .map_err(step("attach veth to bridge"))?;
    node.set_up(Netns::Host, &host_name)
        .map_err(step("bring host veth up"))?;
    if pod_ips.iter().any(|a| a.family() == Family::V6) {
        node.sysctl_set(Netns::Container, &accept_dad_key(&req.ifname), "0")
            .map_err(step("turn off DAD on the pod interface"))?;
    }
    for a in &pod_ips {
        node.address_add(Netns::Container, &req.ifname, &a.cidr())
            .map_err(step("add pod address"))?;
    }
    node.set_up(Netns::Container, &req.ifname)
        .map_err(step("bring pod interface up"))?;
    let mut ips = Vec::new();
    let mut result_routes = Vec::new();
    for a in &pod_ips {
        let gw = a.gateway().to_string();
        let default = Route {
            destination: a.family().default_route().into(),
            gateway: Some(gw.clone()),
            link: Some(req.ifname.clone()),
        };
        node.route_add(Netns::Container, &default)
            .map_err(step("add default route"))?;
        ips.push(IpConfig {
            address: a.cidr(),
            gateway: Some(gw.clone()),
            interface: Some(1),
        });
        result_routes.push(ResultRoute {
            destination: default.destination,
            gateway: Some(gw),
        });
    }
    let cidrs: Vec<String> = pod_ips.iter().map(PodAddress::cidr).collect();
    node.info(&format!(
        "pod {} got {} on {host_name}",
        req.container_id,
        cidrs.join(", ")
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
        ips,
        routes: result_routes,
        dns: None,
    })
}

/// CHECK (see [`Policy::check`]): the pod side is the kit's (addresses and routes of
/// both families as ADD reported them), plus an address of each of the node's
/// families in that report; the node side: the host veth and the bridge are there.
pub fn check(node: &mut impl Node, req: &Request) -> Result<(), CniError> {
    let cfg = parse_config(&req.config)?;
    let want = check_pod_on(node, req)?;
    check_families(&cfg, &want, &req.ifname)?;
    let failed = |m: String| cni(CHECK_FAILED, m);
    let host_name = &req.host_link;
    if node
        .link_get(Netns::Host, host_name)
        .map_err(step("look up host veth"))?
        .is_none()
    {
        return Err(failed(format!("host veth {host_name} is missing")));
    }
    if node
        .link_get(Netns::Host, &cfg.bridge)
        .map_err(step("look up bridge"))?
        .is_none()
    {
        return Err(failed(format!("bridge {} is missing", cfg.bridge)));
    }
    Ok(())
}

/// The pods hang off the bridge: gone or down, they reach nothing; without
/// forwarding (of a family they have addresses of), nothing past the node.
pub fn node_problem(node: &mut impl Node, cfg: &Config) -> Result<Option<String>, CniError> {
    match node
        .link_get(Netns::Host, &cfg.bridge)
        .map_err(step("look up bridge"))?
    {
        None => Ok(Some(format!("bridge {} is missing", cfg.bridge))),
        Some(b) if !b.up => Ok(Some(format!("bridge {} is down", cfg.bridge))),
        Some(_) => forwarding_problem_on(node, cfg),
    }
}
