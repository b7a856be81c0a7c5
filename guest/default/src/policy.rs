//! The default policy's ADD, CHECK and STATUS look, in terms of the runner's host
//! functions (DEL, GC and the rest of STATUS are the kit's).

use wasm_cni_guest_kit::prelude::*;

/// The bridge policy: a `cni0` bridge with the gateway address, a veth per pod.
pub struct Bridge;

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
    enable_forwarding(cfg)?;
    store::put("node/setup", &fingerprint).map_err(step("record node state"))?;
    Ok(())
}

impl Policy for Bridge {
    fn add(req: &Request) -> Result<AddResult, CniError> {
        let cfg = parse_config(&req.config)?;
        ensure_node(&cfg)?;
        let ip = allocate(&cfg, req)?;
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
        let pair =
            links::create_veth(&host_name, &req.ifname, cfg.mtu).map_err(step("create veth"))?;
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

    /// The pod side is the kit's; the node side: the host veth and the bridge are there.
    fn check(req: &Request) -> Result<(), CniError> {
        let cfg = parse_config(&req.config)?;
        check_pod(req)?;
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

    /// The pods hang off the bridge: gone or down, they reach nothing; without
    /// `ip_forward`, nothing past the node.
    fn node_problem(cfg: &Config) -> Result<Option<String>, CniError> {
        match links::get(Netns::Host, &cfg.bridge).map_err(step("look up bridge"))? {
            None => Ok(Some(format!("bridge {} is missing", cfg.bridge))),
            Some(b) if !b.up => Ok(Some(format!("bridge {} is down", cfg.bridge))),
            Some(_) => forwarding_problem(),
        }
    }
}
