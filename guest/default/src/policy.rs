//! The default policy's ADD, CHECK and STATUS look, written against the kit's [`Node`]
//! (the runner's host functions in the guest, a fake node in the unit tests below);
//! DEL, GC and the rest of STATUS are the kit's.
//!
//! Dual-stack when the config gives an IPv6 subnet (`myPodSubnet` as a list): one
//! address of each family per pod, both gateways on the bridge, both default routes in
//! the pod. IPv6 duplicate address detection is turned off (`accept_dad` 0) on the
//! links this policy creates before their IPv6 address goes on: IPAM already makes the
//! addresses unique, and DAD would leave them unusable for the first 1-2 s.

use wasm_cni_guest_kit::prelude::*;

/// The bridge policy: a `cni0` bridge with the gateway addresses, a veth per pod.
pub struct Bridge;

fn accept_dad_key(link: &str) -> String {
    format!("net.ipv6.conf.{link}.accept_dad")
}

/// Node setup, once: bridge with the gateway addresses, forwarding, firewall rules.
/// Later calls only look at the bridge and a stored fingerprint of the settings.
fn ensure_node(node: &mut impl Node, cfg: &Config) -> Result<(), CniError> {
    let fingerprint = cfg.fingerprint();
    let bridge = node
        .link_get(Netns::Host, &cfg.bridge)
        .map_err(step("look up bridge"))?;
    if let Some(b) = &bridge {
        let done = node
            .get("node/setup")
            .map_err(store_step("read node state"))?;
        if b.up && done.as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
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
    Ok(())
}

/// ADD (see [`Policy::add`]).
pub fn add(node: &mut impl Node, req: &Request) -> Result<AddResult, CniError> {
    let cfg = parse_config(&req.config)?;
    ensure_node(node, &cfg)?;
    let pod_ips = allocate_on(node, &cfg, req)?;
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

impl Policy for Bridge {
    fn add(req: &Request) -> Result<AddResult, CniError> {
        add(&mut Runner, req)
    }

    fn check(req: &Request) -> Result<(), CniError> {
        check(&mut Runner, req)
    }

    fn node_problem(cfg: &Config) -> Result<Option<String>, CniError> {
        node_problem(&mut Runner, cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_cni_guest_kit::fake::FakeNode;

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lab","myHostNetwork":"10.0.0.0/16",
        "myPodNetwork":"200.200.0.0/16","myPodSubnet":"200.200.1.0/24"}"#;

    const DUAL: &str = r#"{"cniVersion":"1.0.0","name":"lab","myHostNetwork":"10.0.0.0/16",
        "myPodNetwork":["200.200.0.0/16","fd00:200::/32"],
        "myPodSubnet":["200.200.1.0/24","fd00:200:1::/64"]}"#;

    const V6: &str = r#"{"cniVersion":"1.0.0","name":"lab","myHostNetwork":"fd00:10::/64",
        "myPodNetwork":"fd00:200::/32","myPodSubnet":"fd00:200:1::/64","ipMasq6":true}"#;

    fn request(cid: &str, config: &str) -> Request {
        Request {
            container_id: cid.into(),
            ifname: "eth0".into(),
            host_link: format!("wc-{cid}"),
            has_netns: true,
            args: Vec::new(),
            ips: Vec::new(),
            mac: None,
            config: config.into(),
        }
    }

    /// The container namespace of the fake holds one pod at a time: a new pod's ADD
    /// starts with an empty one.
    fn next_pod(n: &mut FakeNode) {
        n.links.retain(|(ns, _), _| *ns == "host");
        n.addresses.retain(|(ns, _), _| *ns == "host");
        n.routes.retain(|(ns, ..)| *ns == "host");
        n.calls.clear();
    }

    #[test]
    fn ipv4_add_makes_the_calls_of_contract_0_1() {
        let mut n = FakeNode::default();
        let r = add(&mut n, &request("a", CONF)).unwrap();
        assert_eq!(
            n.host_calls(),
            [
                r#"links.get(host, "cni0")"#,
                r#"log.write(info, "setting up node: v1 bridge=cni0 gw=200.200.1.1/24 pods=200.200.0.0/16 hosts=10.0.0.0/16 mtu=None")"#,
                r#"links.create-bridge("cni0", none)"#,
                r#"addresses.list(host, "cni0")"#,
                r#"addresses.add(host, "cni0", "200.200.1.1/24")"#,
                r#"links.set-up(host, "cni0")"#,
                r#"sysctl.get(host, "net.ipv4.ip_forward")"#,
                r#"sysctl.set(host, "net.ipv4.ip_forward", "1")"#,
                r#"firewall.allow-forward("200.200.0.0/16")"#,
                r#"firewall.masquerade("200.200.1.0/24", ["200.200.0.0/16", "10.0.0.0/16"])"#,
                r#"links.get(host, "wc-a")"#,
                r#"links.get(container, "eth0")"#,
                r#"links.create-veth("wc-a", "eth0", none, none)"#,
                r#"links.set-master("wc-a", "cni0")"#,
                r#"links.set-up(host, "wc-a")"#,
                r#"addresses.add(container, "eth0", "200.200.1.2/24")"#,
                r#"links.set-up(container, "eth0")"#,
                r#"routes.add(container, "0.0.0.0/0" via "200.200.1.1" dev "eth0")"#,
                r#"log.write(info, "pod a got 200.200.1.2/24 on wc-a")"#,
            ]
        );
        assert_eq!(r.ips.len(), 1);
        assert_eq!(r.routes.len(), 1);
        assert!(!n
            .sysctls
            .keys()
            .any(|(_, k)| k.contains("ipv6") && k != "net.ipv6.conf.all.forwarding"));
    }

    #[test]
    fn dual_stack_add_wires_both_families_in_order() {
        let mut n = FakeNode::default();
        let mut req = request("a", DUAL);
        req.mac = Some("02:42:c0:a8:00:09".into());
        let r = add(&mut n, &req).unwrap();
        assert_eq!(
            n.host_calls(),
            [
                r#"links.get(host, "cni0")"#,
                r#"log.write(info, "setting up node: v1 bridge=cni0 gw=200.200.1.1/24,fd00:200:1::1/64 pods=200.200.0.0/16,fd00:200::/32 hosts=10.0.0.0/16 mtu=None")"#,
                r#"links.create-bridge("cni0", none)"#,
                // DAD off on the bridge this call made, before its IPv6 gateway goes on
                r#"sysctl.set(host, "net.ipv6.conf.cni0.accept_dad", "0")"#,
                r#"addresses.list(host, "cni0")"#,
                r#"addresses.add(host, "cni0", "200.200.1.1/24")"#,
                r#"addresses.add(host, "cni0", "fd00:200:1::1/64")"#,
                r#"links.set-up(host, "cni0")"#,
                r#"sysctl.get(host, "net.ipv4.ip_forward")"#,
                r#"sysctl.set(host, "net.ipv4.ip_forward", "1")"#,
                r#"firewall.allow-forward("200.200.0.0/16")"#,
                r#"firewall.masquerade("200.200.1.0/24", ["200.200.0.0/16", "10.0.0.0/16"])"#,
                r#"sysctl.get(host, "net.ipv6.conf.all.forwarding")"#,
                r#"sysctl.set(host, "net.ipv6.conf.all.forwarding", "1")"#,
                // no ipMasq6: IPv6 pod traffic is routed, not masqueraded
                r#"firewall.allow-forward("fd00:200::/32")"#,
                r#"links.get(host, "wc-a")"#,
                r#"links.get(container, "eth0")"#,
                r#"links.create-veth("wc-a", "eth0", none, "02:42:c0:a8:00:09")"#,
                r#"links.set-master("wc-a", "cni0")"#,
                r#"links.set-up(host, "wc-a")"#,
                r#"sysctl.set(container, "net.ipv6.conf.eth0.accept_dad", "0")"#,
                r#"addresses.add(container, "eth0", "200.200.1.2/24")"#,
                r#"addresses.add(container, "eth0", "fd00:200:1::2/64")"#,
                r#"links.set-up(container, "eth0")"#,
                r#"routes.add(container, "0.0.0.0/0" via "200.200.1.1" dev "eth0")"#,
                r#"routes.add(container, "::/0" via "fd00:200:1::1" dev "eth0")"#,
                r#"log.write(info, "pod a got 200.200.1.2/24, fd00:200:1::2/64 on wc-a")"#,
            ]
        );
        let ips: Vec<(&str, Option<&str>, Option<u32>)> = r
            .ips
            .iter()
            .map(|i| (i.address.as_str(), i.gateway.as_deref(), i.interface))
            .collect();
        assert_eq!(
            ips,
            [
                ("200.200.1.2/24", Some("200.200.1.1"), Some(1)),
                ("fd00:200:1::2/64", Some("fd00:200:1::1"), Some(1)),
            ]
        );
        let routes: Vec<(&str, Option<&str>)> = r
            .routes
            .iter()
            .map(|r| (r.destination.as_str(), r.gateway.as_deref()))
            .collect();
        assert_eq!(
            routes,
            [
                ("0.0.0.0/0", Some("200.200.1.1")),
                ("::/0", Some("fd00:200:1::1"))
            ]
        );
        assert_eq!(r.interfaces[1].mac, "02:42:c0:a8:00:09");
        assert!(r.interfaces[1].sandbox);

        // the second pod: the node is set up, the bridge's DAD setting is not touched
        next_pod(&mut n);
        add(&mut n, &request("b", DUAL)).unwrap();
        let calls = n.host_calls();
        assert!(
            !calls.iter().any(|c| c.contains("cni0.accept_dad")),
            "{calls:?}"
        );
        assert!(calls.contains(&r#"addresses.add(container, "eth0", "fd00:200:1::3/64")"#));
    }

    #[test]
    fn ipv6_only_add_and_masquerade_when_asked() {
        let mut n = FakeNode::default();
        let r = add(&mut n, &request("a", V6)).unwrap();
        let calls = n.host_calls();
        assert!(
            !calls
                .iter()
                .any(|c| c.contains("ipv4") || c.contains("0.0.0.0")),
            "{calls:?}"
        );
        for want in [
            r#"sysctl.set(host, "net.ipv6.conf.all.forwarding", "1")"#,
            r#"firewall.masquerade("fd00:200:1::/64", ["fd00:200::/32", "fd00:10::/64"])"#,
            r#"routes.add(container, "::/0" via "fd00:200:1::1" dev "eth0")"#,
        ] {
            assert!(calls.contains(&want), "{want} missing in {calls:?}");
        }
        assert_eq!(r.ips[0].address, "fd00:200:1::2/64");
        assert_eq!(r.routes[0].destination, "::/0");
    }

    #[test]
    fn a_refused_request_stops_add_before_any_link() {
        let mut n = FakeNode::default();
        let mut req = request("a", DUAL);
        req.ips = vec!["fd00:200:2::5".into()];
        let e = add(&mut n, &req).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                REQUEST_REFUSED,
                "requested address fd00:200:2::5 is not in fd00:200:1::/64"
            )
        );
        assert!(!n.calls.iter().any(|c| c.starts_with("links.create-veth")));
        // honoured: the pod gets exactly that address
        let mut n = FakeNode::default();
        req.ips = vec!["200.200.1.77".into(), "fd00:200:1::77/64".into()];
        let r = add(&mut n, &req).unwrap();
        assert_eq!(r.ips[0].address, "200.200.1.77/24");
        assert_eq!(r.ips[1].address, "fd00:200:1::77/64");
    }

    /// The result of an ADD, as the runtime would hand it back in `prevResult`.
    fn with_prev(conf: &str, r: &AddResult) -> String {
        let ips: Vec<serde_json::Value> = r
            .ips
            .iter()
            .map(
                |i| serde_json::json!({"address": i.address, "gateway": i.gateway, "interface": 1}),
            )
            .collect();
        let routes: Vec<serde_json::Value> = r
            .routes
            .iter()
            .map(|x| serde_json::json!({"dst": x.destination, "gw": x.gateway}))
            .collect();
        let mut v: serde_json::Value = serde_json::from_str(conf).unwrap();
        v["prevResult"] = serde_json::json!({
            "interfaces": [{"name": r.interfaces[0].name, "mac": r.interfaces[0].mac},
                           {"name": "eth0", "mac": r.interfaces[1].mac, "sandbox": "/run/netns/a"}],
            "ips": ips,
            "routes": routes,
        });
        v.to_string()
    }

    #[test]
    fn check_verifies_both_families() {
        let mut n = FakeNode::default();
        let r = add(&mut n, &request("a", DUAL)).unwrap();
        let req = request("a", &with_prev(DUAL, &r));
        check(&mut n, &req).unwrap();
        // the IPv6 default route gone from the pod
        n.routes.retain(|(_, d, ..)| d != "::/0");
        let e = check(&mut n, &req).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (CHECK_FAILED, "route to ::/0 is missing in the container")
        );
        // the IPv6 address gone
        n.addresses
            .get_mut(&("container", "eth0".to_string()))
            .unwrap()
            .retain(|a| !a.contains(':'));
        let e = check(&mut n, &req).unwrap_err();
        assert_eq!(e.message, "address fd00:200:1::2/64 is missing on \"eth0\"");
        // a result from before the node became dual-stack
        let mut n = FakeNode::default();
        let r = add(&mut n, &request("a", CONF)).unwrap();
        let e = check(&mut n, &request("a", &with_prev(DUAL, &r))).unwrap_err();
        assert_eq!(
            e.message,
            "the result of ADD has no address in fd00:200:1::/64 on \"eth0\""
        );
    }

    #[test]
    fn node_problem_looks_at_the_bridge_then_forwarding_of_each_family() {
        let mut n = FakeNode::default();
        let cfg = parse_config(DUAL).unwrap();
        assert_eq!(
            node_problem(&mut n, &cfg).unwrap(),
            Some("bridge cni0 is missing".into())
        );
        add(&mut n, &request("a", DUAL)).unwrap();
        assert_eq!(node_problem(&mut n, &cfg).unwrap(), None);
        n.sysctls
            .insert(("host", "net.ipv6.conf.all.forwarding".into()), "0".into());
        assert_eq!(
            node_problem(&mut n, &cfg).unwrap(),
            Some("net.ipv6.conf.all.forwarding is off".into())
        );
    }
}
