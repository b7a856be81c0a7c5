//! The default policy's ADD, CHECK and STATUS look: the kit's bridge policy
//! (`wasm_cni_guest_kit::bridge`, shared with the host-gw and VXLAN guests), written
//! against the kit's [`Node`] (the runner's host functions in the guest, a fake node in
//! the unit tests below); DEL, GC and the rest of STATUS are the kit's too.
//!
//! Dual-stack when the config gives an IPv6 subnet (`myPodSubnet` as a list): one
//! address of each family per pod, both gateways on the bridge, both default routes in
//! the pod. IPv6 duplicate address detection is turned off (`accept_dad` 0) on the
//! links this policy creates before their IPv6 address goes on: IPAM already makes the
//! addresses unique, and DAD would leave them unusable for the first 1-2 s.

pub use wasm_cni_guest_kit::bridge::{add, check, node_problem};
use wasm_cni_guest_kit::prelude::*;

/// The bridge policy: a `cni0` bridge with the gateway addresses, a veth per pod.
pub struct Bridge;

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
    use wasm_cni_guest_kit::fake::{request, FakeNode, CONF, DUAL};

    const V6: &str = r#"{"cniVersion":"1.0.0","name":"lab","myHostNetwork":"fd00:10::/64",
        "myPodNetwork":"fd00:200::/32","myPodSubnet":"fd00:200:1::/64","ipMasq6":true}"#;

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

    /// Node setup and IPAM inside the lock, the pod's wiring outside it; the first
    /// ADD (it set the node up) keeps the lock to its end, later ones release it
    /// before the veth.
    #[test]
    fn add_serves_pods_in_parallel_outside_its_critical_section() {
        let mut n = FakeNode::default();
        add(&mut n, &request("a", CONF)).unwrap();
        assert_eq!(n.calls[0], "lock.acquire()");
        assert!(n.locked && !n.released, "the first ADD kept the lock");
        n.calls.clear();
        n.locked = false;
        // the fake has one container namespace: the next pod's is empty again
        n.links.retain(|(ns, _), _| *ns != "container");
        n.routes.retain(|r| r.0 != "container");
        add(&mut n, &request("b", CONF)).unwrap();
        let at = |c: &str| n.calls.iter().position(|x| x.starts_with(c)).unwrap();
        assert_eq!(at("lock."), 0, "{:?}", n.calls);
        assert!(at("lock.release") > at("store.put"), "{:?}", n.calls);
        assert!(
            at("lock.release") < at("links.create-veth"),
            "{:?}",
            n.calls
        );
        assert!(!n.locked);
        assert!(
            n.store_after_release.is_empty(),
            "{:?}",
            n.store_after_release
        );
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
        n.next_pod();
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
