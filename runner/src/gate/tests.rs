//! The gate's own tests, root-free, over the in-memory node: for every mutating host
//! function, the applied path journals an undo that restores the node exactly, and the
//! denied path (a read-only command) changes nothing.

use super::grants::{attachment_link, Scope};
use super::*;
use crate::node::model::{Model, World};
use crate::node::{Family, SavedAddress, SavedRoute};

const POD: &str = "pod:c1";

fn own() -> String {
    attachment_link("wc", "c1", "eth0")
}

fn route(dst: &str, gw: Option<&str>, link: &str) -> RouteSpec {
    RouteSpec {
        destination: dst.parse().unwrap(),
        gateway: gw.map(|g| g.parse().unwrap()),
        link: Some(link.into()),
    }
}

/// A node that already runs a network: bridge with its gateway address, forwarding
/// on (and off on the management link), a route via a gateway, the network's
/// firewall table, another attachment's store key and address, and this
/// attachment's host link left by an interrupted earlier ADD (down, with an address).
fn node() -> World {
    let mut w = World::new("10.0.0.2/24".parse().unwrap(), "10.0.0.1".parse().unwrap());
    w.ensure_pod_ns(POD);
    let mut m = Model {
        world: w,
        container: Some(POD.into()),
    };
    m.create_bridge("cni0", None).unwrap();
    m.add_address(Ns::Host, "cni0", "200.200.1.1/24".parse().unwrap())
        .unwrap();
    m.set_up(Ns::Host, "cni0").unwrap();
    m.sysctl_set(Ns::Host, &SysctlKey::forwarding_switch(Family::V4), "1")
        .unwrap();
    m.sysctl_set(
        Ns::Host,
        &SysctlKey::parse("net.ipv4.conf.eth0.forwarding").unwrap(),
        "0",
    )
    .unwrap();
    m.add_route(
        Ns::Host,
        &route("200.200.9.0/24", Some("200.200.1.9"), "cni0"),
    )
    .unwrap();
    m.allow_forward("t", "200.200.0.0/16".parse().unwrap())
        .unwrap();
    m.masquerade(
        "t",
        "200.200.1.0/24".parse().unwrap(),
        &["200.200.0.0/16".parse().unwrap()],
    )
    .unwrap();
    m.store_put("last", "200.200.1.5").unwrap();
    m.store_put("ip/200.200.1.5", "other eth0").unwrap();
    m.store_set_owner("ip/200.200.1.5", "other eth0").unwrap();
    m.hold_addresses(
        "other eth0",
        &[
            "200.200.1.5".parse().unwrap(),
            "fd00:200:1::5".parse().unwrap(),
        ],
        "",
    )
    .unwrap();
    m.create_veth(&own(), "eth9", None, None).unwrap();
    m.add_address(Ns::Host, &own(), "200.200.1.200/32".parse().unwrap())
        .unwrap();
    // dual-stack: the bridge's IPv6 gateway, IPv6 forwarding on (off on eth0), a
    // route via an IPv6 gateway, the network's ip6 table, an IPv6 address on the
    // attachment's leftover host link
    m.add_address(Ns::Host, "cni0", "fd00:200:1::1/64".parse().unwrap())
        .unwrap();
    m.sysctl_set(Ns::Host, &SysctlKey::forwarding_switch(Family::V6), "1")
        .unwrap();
    m.sysctl_set(
        Ns::Host,
        &SysctlKey::parse("net.ipv6.conf.eth0.forwarding").unwrap(),
        "0",
    )
    .unwrap();
    m.add_route(
        Ns::Host,
        &route("fd00:200:9::/64", Some("fd00:200:1::9"), "cni0"),
    )
    .unwrap();
    m.allow_forward("t", "fd00:200::/40".parse().unwrap())
        .unwrap();
    m.add_address(Ns::Host, &own(), "fd00:200:1::200/128".parse().unwrap())
        .unwrap();
    with_cluster(&mut m);
    m.world
}

fn gate_over(w: World, read_only: bool) -> Gate {
    let scope = Scope::Attachment {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    };
    let mut g = Grants::new(
        scope,
        true,
        "cni0",
        "wc",
        vec![
            "200.200.0.0/16".parse().unwrap(),
            "fd00:200::/40".parse().unwrap(),
        ],
    );
    if read_only {
        g.set_read_only("CHECK");
    }
    g.set_cluster(cluster());
    let model = Model {
        world: w,
        container: Some(POD.into()),
    };
    let journal = (!read_only).then(Journal::default);
    Gate::new(g, Box::new(model), journal, CallLog::discard(), "t".into())
}

/// The cluster of the tests: this node (10.0.0.2, fd00:10::2, found on eth0, the
/// uplink), peer w2 on the host network, peer `far` outside it; the host network is
/// 10.0.0.0/24 and fd00:10::/64.
fn cluster() -> crate::cni::config::Cluster {
    let raw = r#"{"cniVersion":"1.0.0","name":"n","podNetwork":["200.200.0.0/16","fd00:200::/40"],
        "myHostNetwork":["10.0.0.0/24","fd00:10::/64"],
        "peers":[{"name":"me","nodeIP":["10.0.0.2","fd00:10::2"],"podCIDRs":["200.200.1.0/24","fd00:200:1::/64"]},
                 {"name":"w2","nodeIP":["10.0.0.3","fd00:10::3"],"podCIDRs":["200.200.2.0/24","fd00:200:2::/64"]},
                 {"name":"far","nodeIP":"192.168.9.9","podCIDRs":["200.200.3.0/24"]}]}"#;
    crate::cni::NetConf::parse(raw.into()).unwrap().cluster
}

const VX: &str = "wcni.1";

/// What a node running the VXLAN policy has (on top of `node()`'s pod network): an
/// IPv6 address on the uplink, the VXLAN link (up, with this node's VTEP address),
/// and the entries and routes of a departed peer (10.0.0.4) on it and on the uplink.
fn with_cluster(m: &mut Model) {
    m.add_address(Ns::Host, "eth0", "fd00:10::2/64".parse().unwrap())
        .unwrap();
    let spec = crate::node::VxlanSpec {
        name: VX.into(),
        vni: 1,
        port: 8472,
        local: "10.0.0.2".parse().unwrap(),
        mtu: Some(1450),
        mac: Some("0e:cc:0a:00:00:02".parse().unwrap()),
    };
    m.create_vxlan(&spec).unwrap();
    m.set_up(Ns::Host, VX).unwrap();
    m.add_address(Ns::Host, VX, "200.200.1.0/32".parse().unwrap())
        .unwrap();
    let gone: crate::mac::Mac = "0e:cc:0a:00:00:04".parse().unwrap();
    m.add_fdb(
        VX,
        &crate::node::FdbEntry {
            mac: gone,
            remote: "10.0.0.4".parse().unwrap(),
        },
    )
    .unwrap();
    m.add_neighbor(
        VX,
        &crate::node::NeighborEntry {
            address: "200.200.4.0".parse().unwrap(),
            mac: gone,
        },
    )
    .unwrap();
    m.add_route(Ns::Host, &route("200.200.4.0/32", None, VX))
        .unwrap();
    m.add_route(Ns::Host, &route("200.200.5.0/24", Some("10.0.0.4"), "eth0"))
        .unwrap();
}

/// The whole node as comparable text: every field, with the orders the kernel does
/// not promise (route and address lists) and the index counter normalized.
fn text(sb: &mut Gate) -> String {
    let node = std::mem::replace(
        &mut sb.node,
        Box::new(Model {
            world: World::default(),
            container: None,
        }),
    );
    let w = node.into_any().downcast::<Model>().expect("a model").world;
    let mut n = w.clone();
    n.next_index = 0;
    for ns in n.namespaces.values_mut() {
        ns.routes.sort_by_key(|r| format!("{r:?}"));
        for l in ns.links.values_mut() {
            l.addresses.sort();
            l.fdb.sort_by_key(|f| format!("{f:?}"));
            l.neighbors.sort_by_key(|n| format!("{n:?}"));
        }
    }
    sb.node = Box::new(Model {
        world: w,
        container: Some(POD.into()),
    });
    serde_json::to_string_pretty(&n).unwrap()
}

type Op = fn(&mut Gate) -> OpResult<()>;

/// A node before its first pod: only the pod's namespace is there.
fn fresh() -> World {
    let mut w = World::new("10.0.0.2/24".parse().unwrap(), "10.0.0.1".parse().unwrap());
    w.ensure_pod_ns(POD);
    w
}

/// One valid change per mutating host function, named as in the WIT. Creating links
/// happens on a fresh node (an ADD creates only the bridge of its config and its own
/// links). The one deletion an ADD may make of a link it did not create, its own
/// host link left by an interrupted earlier ADD, is not restored: it is that same
/// attachment's garbage.
fn ops() -> Vec<(&'static str, Op)> {
    vec![
        ("links.create-bridge", |s| {
            s.create_bridge("cni0", None).map(|_| ())
        }),
        ("links.create-veth", |s| {
            s.create_veth(&own(), "eth0", Some(1400), None).map(|_| ())
        }),
        ("links.set-master", |s| s.set_master(&own(), "cni0")),
        ("links.set-up", |s| s.set_up(Ns::Host, &own())),
        ("links.set-mtu", |s| s.set_mtu(Ns::Host, &own(), 1400)),
        ("links.delete", |s| {
            s.create_bridge("cni0", None)?;
            s.delete_link(Ns::Host, "cni0")
        }),
        ("addresses.add", |s| {
            s.address_add(Ns::Host, "cni0", "200.200.2.1/24")
        }),
        ("addresses.remove", |s| {
            s.address_remove(Ns::Host, &own(), "200.200.1.200/32")
        }),
        ("routes.add", |s| {
            s.route_add(Ns::Host, "200.200.8.0/24", None, Some("cni0"))
        }),
        ("routes.remove", |s| {
            s.route_remove(
                Ns::Host,
                "200.200.9.0/24",
                Some("200.200.1.9"),
                Some("cni0"),
            )
        }),
        ("firewall.allow-forward", |s| {
            s.allow_forward("200.200.7.0/24")
        }),
        ("firewall.masquerade", |s| {
            s.masquerade("200.200.1.0/24", &["10.0.0.0/8".into()])
        }),
        ("sysctl.set", |s| {
            s.sysctl_set(Ns::Host, "net.ipv4.conf.cni0.proxy_arp", "1")
        }),
        ("store.put", |s| {
            s.store_put("last", "200.200.1.6")?;
            s.store_put("attach/c1/eth0", "200.200.1.6")
        }),
        ("store.delete", |s| s.store_delete("last").map(|_| ())),
        // the same functions with IPv6: what holds for IPv4 holds for them
        ("addresses.add (IPv6)", |s| {
            s.address_add(Ns::Host, "cni0", "fd00:200:2::1/64")
        }),
        ("addresses.remove (IPv6)", |s| {
            s.address_remove(Ns::Host, &own(), "fd00:200:1::200/128")
        }),
        ("routes.add (IPv6)", |s| {
            s.route_add(Ns::Host, "fd00:200:8::/64", None, Some("cni0"))
        }),
        ("routes.remove (IPv6)", |s| {
            s.route_remove(
                Ns::Host,
                "fd00:200:9::/64",
                Some("fd00:200:1::9"),
                Some("cni0"),
            )
        }),
        ("firewall.allow-forward (IPv6)", |s| {
            s.allow_forward("fd00:200:7::/64")
        }),
        ("firewall.masquerade (IPv6)", |s| {
            s.masquerade("fd00:200:1::/64", &["fd00::/8".into()])
        }),
        ("sysctl.set (IPv6 forwarding, fresh node)", |s| {
            s.sysctl_set(Ns::Host, "net.ipv6.conf.all.forwarding", "1")
        }),
        ("sysctl.set (IPv6 per link)", |s| {
            s.sysctl_set(Ns::Host, "net.ipv6.conf.cni0.accept_dad", "0")
        }),
        ("links.set-mtu (below IPv6's minimum, fresh node)", |s| {
            // on a link this call created (on another one it is refused: see
            // an_mtu_below_1280_on_a_link_it_did_not_create_is_refused_in_add)
            s.create_veth(&own(), "eth0", None, None)?;
            s.set_mtu(Ns::Host, &own(), 1000)
        }),
        // the cluster: the VXLAN link and its entries, routes through the uplink
        ("cluster.create-vxlan", |s| {
            s.create_vxlan(
                VX,
                1,
                8472,
                "10.0.0.2",
                Some(1450),
                Some("0e:cc:0a:00:00:02"),
            )
            .map(|_| ())
        }),
        ("cluster.fdb-add", |s| {
            s.fdb_add(VX, "0e:cc:0a:00:00:03", "10.0.0.3")
        }),
        ("cluster.fdb-remove", |s| {
            s.fdb_remove(VX, "0e:cc:0a:00:00:04", "10.0.0.4")
        }),
        ("cluster.neighbor-add", |s| {
            s.neighbor_add(VX, "200.200.2.0", "0e:cc:0a:00:00:03")
        }),
        ("cluster.neighbor-remove", |s| {
            s.neighbor_remove(VX, "200.200.4.0")
        }),
        ("routes.add (through the uplink to a peer)", |s| {
            s.route_add(Ns::Host, "200.200.2.0/24", Some("10.0.0.3"), Some("eth0"))
        }),
        ("routes.add (IPv6, through the uplink to a peer)", |s| {
            s.route_add(
                Ns::Host,
                "fd00:200:2::/64",
                Some("fd00:10::3"),
                Some("eth0"),
            )
        }),
        (
            "routes.remove (through the uplink, a departed peer's)",
            |s| s.route_remove(Ns::Host, "200.200.5.0/24", Some("10.0.0.4"), Some("eth0")),
        ),
        ("routes.add (on the VXLAN link)", |s| {
            s.route_add(Ns::Host, "200.200.2.0/32", None, Some(VX))?;
            s.route_add(Ns::Host, "200.200.2.0/24", Some("200.200.2.0"), Some(VX))
        }),
        ("addresses.add (on the VXLAN link)", |s| {
            s.address_add(Ns::Host, VX, "fd00:200:1::/128")
        }),
        ("sysctl.set (on the VXLAN link)", |s| {
            s.sysctl_set(Ns::Host, "net.ipv6.conf.wcni.1.accept_dad", "0")
        }),
    ]
}

#[test]
fn every_change_is_undone_exactly() {
    for (name, op) in ops() {
        let w = if name.contains("bridge")
            || name == "links.delete"
            || name == "links.create-veth"
            || name == "cluster.create-vxlan"
            || name.contains("fresh node")
        {
            fresh()
        } else {
            node()
        };
        let mut sb = gate_over(w, false);
        let before = text(&mut sb);
        op(&mut sb).unwrap_or_else(|e| panic!("{name}: {e}"));
        // an ADD deletes only links it created itself: net, nothing changes
        if name != "links.delete" {
            assert_ne!(text(&mut sb), before, "{name} changed nothing");
        }
        let (steps, failures) = sb.rollback();
        assert!(failures.is_empty(), "{name}: {failures:?}");
        assert!(steps > 0, "{name} journaled nothing");
        assert_eq!(text(&mut sb), before, "{name} was not undone exactly");
    }
}

#[test]
fn a_read_only_command_changes_nothing() {
    for (name, op) in ops() {
        let mut sb = gate_over(node(), true);
        let before = text(&mut sb);
        let e = op(&mut sb).expect_err(name);
        assert_eq!(e.kind, OpKind::Denied, "{name}: {e}");
        assert!(e.message.contains("read-only"), "{name}: {e}");
        assert_eq!(text(&mut sb), before, "{name}");
    }
}

/// One call per mutating host function that its grants refuse (a link, an address,
/// a route, a rule, a key this call may not touch).
fn refused_ops() -> Vec<(&'static str, Op)> {
    vec![
        ("links.create-bridge", |s| {
            s.create_bridge("br-other", None).map(|_| ())
        }),
        ("links.create-veth", |s| {
            s.create_veth("wcdeadbeef", "eth0", None, None).map(|_| ())
        }),
        ("links.set-master", |s| s.set_master("eth0", "cni0")),
        ("links.set-up", |s| s.set_up(Ns::Host, "eth0")),
        ("links.set-mtu", |s| s.set_mtu(Ns::Host, "eth0", 1400)),
        ("links.delete", |s| s.delete_link(Ns::Host, "eth0")),
        ("addresses.add", |s| {
            s.address_add(Ns::Host, "cni0", "10.9.0.1/24")
        }),
        ("addresses.remove", |s| {
            s.address_remove(Ns::Host, "eth0", "10.0.0.2/24")
        }),
        ("routes.add", |s| {
            s.route_add(Ns::Host, "0.0.0.0/0", Some("10.0.0.9"), None)
        }),
        ("routes.remove", |s| {
            s.route_remove(Ns::Host, "0.0.0.0/0", Some("10.0.0.1"), Some("eth0"))
        }),
        ("firewall.allow-forward", |s| s.allow_forward("10.0.0.0/16")),
        ("firewall.masquerade", |s| s.masquerade("10.0.0.0/16", &[])),
        ("sysctl.set", |s| {
            s.sysctl_set(Ns::Host, "kernel.panic", "1")
        }),
        ("store.put", |s| s.store_put("/etc/passwd", "x")),
        ("store.delete", |s| s.store_delete("../x").map(|_| ())),
        ("addresses.add (IPv6)", |s| {
            s.address_add(Ns::Host, "cni0", "fe80::1/64")
        }),
        ("addresses.remove (IPv6)", |s| {
            s.address_remove(Ns::Host, "eth0", "fd00:10::2/64")
        }),
        ("routes.add (IPv6)", |s| {
            s.route_add(Ns::Host, "::/0", Some("fd00:200:1::9"), Some("cni0"))
        }),
        ("routes.remove (IPv6)", |s| {
            s.route_remove(Ns::Host, "fd00:200:9::/64", None, Some("eth0"))
        }),
        ("firewall.allow-forward (IPv6)", |s| {
            s.allow_forward("fd00:300::/64")
        }),
        ("firewall.masquerade (IPv6)", |s| {
            s.masquerade("fd00::/8", &[])
        }),
        ("sysctl.set (IPv6 forwarding, fresh node)", |s| {
            // node() forwards IPv6: turning it off is refused
            s.sysctl_set(Ns::Host, "net.ipv6.conf.all.forwarding", "0")
        }),
        ("sysctl.set (IPv6 per link)", |s| {
            s.sysctl_set(Ns::Host, "net.ipv6.conf.eth0.accept_ra", "0")
        }),
        ("links.set-mtu (below IPv6's minimum, fresh node)", |s| {
            s.set_mtu(Ns::Host, "eth0", 1000)
        }),
        ("cluster.create-vxlan", |s| {
            // a second VXLAN link: any other name
            s.create_vxlan("vx2", 2, 8472, "10.0.0.2", None, None)
                .map(|_| ())
        }),
        ("cluster.fdb-add", |s| {
            s.fdb_add(VX, "0e:cc:c0:a8:09:09", "192.168.9.9")
        }),
        ("cluster.fdb-remove", |s| {
            s.fdb_remove("cni0", "0e:cc:0a:00:00:04", "10.0.0.4")
        }),
        ("cluster.neighbor-add", |s| {
            s.neighbor_add(VX, "10.0.0.3", "0e:cc:0a:00:00:03")
        }),
        ("cluster.neighbor-remove", |s| {
            s.neighbor_remove("eth0", "10.0.0.1")
        }),
        ("routes.add (through the uplink to a peer)", |s| {
            s.route_add(Ns::Host, "200.200.2.0/24", Some("10.0.0.1"), Some("eth0"))
        }),
        ("routes.add (IPv6, through the uplink to a peer)", |s| {
            s.route_add(
                Ns::Host,
                "fd00:200:9::/64",
                Some("fd00:10::3"),
                Some("eth0"),
            )
        }),
        (
            "routes.remove (through the uplink, a departed peer's)",
            |s| s.route_remove(Ns::Host, "0.0.0.0/0", Some("10.0.0.1"), Some("eth0")),
        ),
        ("routes.add (on the VXLAN link)", |s| {
            s.route_add(Ns::Host, "10.9.0.0/24", None, Some(VX))
        }),
        ("addresses.add (on the VXLAN link)", |s| {
            s.address_add(Ns::Host, VX, "10.0.0.9/32")
        }),
        ("sysctl.set (on the VXLAN link)", |s| {
            s.sysctl_set(Ns::Host, "net.ipv6.conf.wcni.1.accept_ra", "1")
        }),
    ]
}

#[test]
fn a_refused_change_changes_nothing_and_journals_nothing() {
    let names: Vec<&str> = refused_ops().iter().map(|(n, _)| *n).collect();
    let all: Vec<&str> = ops().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, all, "one refusal per mutating host function");
    for (name, op) in refused_ops() {
        let mut sb = gate_over(node(), false);
        let before = text(&mut sb);
        let e = op(&mut sb).expect_err(name);
        assert_eq!(e.kind, OpKind::Denied, "{name}: {e}");
        assert_eq!(text(&mut sb), before, "{name}");
        let (steps, failures) = sb.rollback();
        assert_eq!(
            (steps, failures.len()),
            (0, 0),
            "{name} journaled a refused change"
        );
    }
}

/// Every mutating function of the contract is in `ops()`: a new host function
/// cannot land without a test that its undo is exact.
#[test]
fn no_mutating_host_function_is_left_out() {
    let wit = include_str!("../../../wit/world.wit");
    let read_only = [
        "get",
        "list",
        "%list",
        "attachment-link",
        "this-node",
        "peers",
        "fdb-list",
        "neighbor-list",
    ];
    let mut iface = "";
    let mut missing = Vec::new();
    let tested: Vec<&str> = ops().iter().map(|(n, _)| *n).collect();
    for line in wit.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("interface ") {
            iface = rest.trim_end_matches(" {");
        } else if let Some((f, _)) = line.split_once(": func(") {
            let mutating = [
                "links",
                "addresses",
                "routes",
                "firewall",
                "sysctl",
                "store",
                "cluster",
            ];
            if mutating.contains(&iface) && !read_only.contains(&f) {
                let name = format!("{iface}.{}", f.trim_start_matches('%'));
                if !tested.contains(&name.as_str()) {
                    missing.push(name);
                }
            }
        }
    }
    assert!(missing.is_empty(), "no undo test for {missing:?}");
    assert!(tested.len() >= 15, "the WIT parse found the functions");
}

#[test]
fn changes_that_cannot_be_undone_exactly_are_refused() {
    let mut sb = gate_over(node(), false);
    let before = text(&mut sb);
    let refused = [
        sb.delete_link(Ns::Host, "cni0").unwrap_err(),
        sb.set_master("cni0", "cni0").unwrap_err(),
        sb.sysctl_set(Ns::Host, "net.ipv6.conf.cni0.disable_ipv6", "1")
            .unwrap_err(),
        sb.masquerade(
            "200.200.1.0/24",
            &vec!["10.0.0.0/8".to_string(); MAX_EXCEPT + 1],
        )
        .unwrap_err(),
    ];
    for e in &refused[..3] {
        assert_eq!(e.kind, OpKind::Denied, "{e}");
    }
    assert_eq!(refused[3].kind, OpKind::InvalidArgument);
    assert_eq!(text(&mut sb), before);
    // the exception: this attachment's own host link from an interrupted ADD
    sb.delete_link(Ns::Host, &own()).unwrap();
    sb.rollback();
    assert!(!text(&mut sb).contains(&own()), "not brought back");
}

#[test]
fn ip_forward_is_undone_with_every_link_forwarding_value() {
    // a node that does not forward, with one link (eth0) that does
    let mut w = fresh();
    w.namespaces
        .get_mut("host")
        .unwrap()
        .sysctls
        .insert("net.ipv4.conf.eth0.forwarding".into(), "1".into());
    let mut sb = gate_over(w, false);
    let before = text(&mut sb);
    sb.sysctl_set(Ns::Host, "net.ipv4.ip_forward", "1").unwrap();
    sb.rollback();
    assert_eq!(text(&mut sb), before);
    // and it may never be turned off
    let mut sb = gate_over(node(), false);
    let e = sb
        .sysctl_set(Ns::Host, "net.ipv4.ip_forward", "0")
        .unwrap_err();
    assert!(e.message.contains("every network"), "{e}");
    let e = sb.set_mtu(Ns::Host, "cni0", 68).unwrap_err();
    assert_eq!(e.kind, OpKind::Denied, "{e}");
}

#[test]
fn ipv6_forwarding_is_undone_with_every_link_forwarding_value() {
    // IPv6 off, one link (eth0) forwarding IPv6 anyway, IPv4 forwarding on
    let mut w = fresh();
    let host = w.namespaces.get_mut("host").unwrap();
    host.sysctls
        .insert("net.ipv6.conf.eth0.forwarding".into(), "1".into());
    host.sysctls
        .insert("net.ipv4.ip_forward".into(), "1".into());
    let mut sb = gate_over(w, false);
    let before = text(&mut sb);
    sb.sysctl_set(Ns::Host, "net.ipv6.conf.all.forwarding", "1")
        .unwrap();
    assert_ne!(text(&mut sb), before);
    // the IPv4 switch and its links are not the IPv6 switch's
    assert_eq!(sb.sysctl_get(Ns::Host, "net.ipv4.ip_forward").unwrap(), "1");
    sb.rollback();
    assert_eq!(text(&mut sb), before);
    let mut sb = gate_over(node(), false);
    let e = sb
        .sysctl_set(Ns::Host, "net.ipv6.conf.all.forwarding", "0")
        .unwrap_err();
    assert_eq!(e.kind, OpKind::Denied, "{e}");
    assert!(e.message.contains("every network"), "{e}");
    let e = sb
        .sysctl_set(Ns::Container, "net.ipv6.conf.all.forwarding", "1")
        .unwrap_err();
    assert_eq!(e.kind, OpKind::Denied, "{e}");
}

#[test]
fn ipv6_text_is_parsed_once_and_families_do_not_mix() {
    let mut sb = gate_over(node(), false);
    let before = text(&mut sb);
    for e in [
        sb.route_add(Ns::Container, "::/0", Some("200.200.1.1"), Some("eth0"))
            .unwrap_err(),
        sb.route_add(
            Ns::Container,
            "0.0.0.0/0",
            Some("fd00:200:1::1"),
            Some("eth0"),
        )
        .unwrap_err(),
        sb.masquerade("fd00:200:1::/64", &["10.0.0.0/8".into()])
            .unwrap_err(),
        sb.address_add(Ns::Host, "cni0", "fd00:200:1::zz/64")
            .unwrap_err(),
        sb.route_add(Ns::Host, "fd00:200:1::1/64", None, Some("cni0"))
            .unwrap_err(),
    ] {
        assert_eq!(e.kind, OpKind::InvalidArgument, "{e}");
    }
    assert_eq!(text(&mut sb), before);
    // another attachment's IPv6 address: not as an address, not covered by a host
    // route on a link other than the bridge
    for e in [
        sb.address_add(Ns::Container, "eth0", "fd00:200:1::5/64")
            .unwrap_err(),
        sb.route_add(Ns::Host, "fd00:200:1::/120", None, Some(&own()))
            .unwrap_err(),
    ] {
        assert_eq!(e.kind, OpKind::Denied, "{e}");
        assert!(e.message.contains("another attachment"), "{e}");
    }
    assert_eq!(text(&mut sb), before);
    // the firewall's IPv6 rules go to the ip6 table only
    sb.allow_forward("fd00:200:7::/64").unwrap();
    let t = text(&mut sb);
    assert!(t.contains("ip6 t"), "{t}");
    assert!(t.contains("ip6 saddr fd00:200:7::/64 accept"), "{t}");
}

#[test]
fn other_attachments_keep_their_addresses_and_keys() {
    let mut sb = gate_over(node(), false);
    let before = text(&mut sb);
    for e in [
        sb.route_add(Ns::Host, "200.200.1.5/32", None, Some(&own()))
            .unwrap_err(),
        sb.address_add(Ns::Container, "eth0", "200.200.1.5/24")
            .unwrap_err(),
        sb.store_delete("ip/200.200.1.5").unwrap_err(),
    ] {
        assert_eq!(e.kind, OpKind::Denied, "{e}");
        assert!(e.message.contains("another attachment"), "{e}");
    }
    assert_eq!(text(&mut sb), before);
    // the shared bridge may carry a prefix that covers them: it serves every pod
    sb.route_add(Ns::Host, "200.200.3.0/24", None, Some("cni0"))
        .unwrap();
}

#[test]
fn per_call_limits() {
    let mut sb = gate_over(node(), false);
    sb.limits.routes = 2;
    // plus 8 per node the config's peers list
    let max = 2 + 8 * sb.grants.listed_nodes() as u64;
    for i in 0..max {
        sb.route_add(
            Ns::Host,
            &format!("200.200.{}.0/24", 20 + i),
            None,
            Some("cni0"),
        )
        .unwrap();
    }
    let e = sb
        .route_add(
            Ns::Host,
            &format!("200.200.{}.0/24", 20 + max),
            None,
            Some("cni0"),
        )
        .unwrap_err();
    assert!(
        e.message.contains(&format!("per-call limit of {max}")),
        "{e}"
    );
    sb.limits.store_keys = 3; // the node has 2
    sb.store_put("a", "1").unwrap();
    let e = sb.store_put("b", "1").unwrap_err();
    assert!(e.message.contains("store quota"), "{e}");
    sb.store_put("a", "2").unwrap(); // overwriting adds no key
}

#[test]
fn results_stay_inside_the_grants() {
    use crate::cni::output::{Interface, IpConfig};
    let mut sb = gate_over(node(), false);
    let result = |addr: &str, gw: &str, name: &str, sandbox: bool| AddResult {
        interfaces: vec![Interface {
            name: name.into(),
            mac: String::new(),
            sandbox: sandbox.then(|| "/run/netns/x".to_string()),
        }],
        ips: vec![IpConfig {
            address: addr.into(),
            gateway: Some(gw.into()),
            interface: Some(0),
        }],
        ..AddResult::default()
    };
    let ok = sb.check_result(&result("200.200.1.7/24", "200.200.1.1", "eth0", true));
    assert_eq!(ok, Ok(vec!["200.200.1.7".parse().unwrap()]));
    let ok = sb.check_result(&result("fd00:200:1::7/64", "fd00:200:1::1", "eth0", true));
    assert_eq!(ok, Ok(vec!["fd00:200:1::7".parse().unwrap()]));
    for (r, why) in [
        (result("10.0.0.5/16", "10.0.0.1", "eth0", true), "outside"),
        (
            result("200.200.1.7/24", "10.0.0.1", "eth0", true),
            "gateway",
        ),
        (
            result("200.200.1.7/8", "200.200.1.1", "eth0", true),
            "outside",
        ),
        (
            result("200.200.1.7/24", "200.200.1.1", "cni0", false),
            "did not create",
        ),
        (
            result("200.200.1.5/24", "200.200.1.1", "eth0", true),
            "another attachment",
        ),
        (
            result("fd00:200:1::5/64", "fd00:200:1::1", "eth0", true),
            "another attachment",
        ),
        (
            result("fd00:200:1::7/64", "200.200.1.1", "eth0", true),
            "family",
        ),
        (
            result("fe80::7/64", "fd00:200:1::1", "eth0", true),
            "outside",
        ),
        (
            result("fd00:200:1::7/32", "fd00:200:1::1", "eth0", true),
            "outside",
        ),
    ] {
        let e = sb.check_result(&r).unwrap_err();
        assert!(e.contains(why), "{e}");
    }
    // a gateway-less route claims a whole prefix on the link: all of it inside the
    // pod network of its family, as a container route's grant asks (its network
    // address alone is not enough: fd00:200::/24 starts inside fd00:200::/40)
    use crate::cni::output::Route;
    let with_route = |dst: &str| AddResult {
        routes: vec![Route {
            dst: dst.into(),
            gw: None,
        }],
        ..AddResult::default()
    };
    for dst in [
        "fd00:200::/24",
        "fd00:200::/39",
        "200.200.0.0/15",
        "fd00:300::/64",
    ] {
        let e = sb.check_result(&with_route(dst)).unwrap_err();
        assert!(e.contains("outside the pod network"), "{dst}: {e}");
    }
    for dst in ["fd00:200:1::/64", "200.200.1.0/24", "fd00:200::/40"] {
        sb.check_result(&with_route(dst)).unwrap();
    }
}

/// The simulator, except that creating a veth creates it and then fails, as the
/// kernel path does when the lookup after the create fails.
struct FailAfterCreate(Model);

impl Node for FailAfterCreate {
    fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: Option<u32>,
        peer_mac: Option<crate::mac::Mac>,
    ) -> OpResult<(LinkInfo, LinkInfo)> {
        self.0.create_veth(host, peer, mtu, peer_mac)?;
        Err(OpError::failed("link lookup after create failed"))
    }
    fn get_link(&mut self, ns: Ns, name: &str) -> OpResult<Option<LinkInfo>> {
        self.0.get_link(ns, name)
    }
    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo> {
        self.0.create_bridge(name, mtu)
    }
    fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()> {
        self.0.set_master(name, bridge)
    }
    fn unset_master(&mut self, name: &str) -> OpResult<()> {
        self.0.unset_master(name)
    }
    fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.0.set_up(ns, name)
    }
    fn set_down(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.0.set_down(ns, name)
    }
    fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()> {
        self.0.set_mtu(ns, name, mtu)
    }
    fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.0.delete_link(ns, name)
    }
    fn list_addresses(&mut self, ns: Ns, link: &str) -> OpResult<Vec<IpNetwork>> {
        self.0.list_addresses(ns, link)
    }
    fn add_address(&mut self, ns: Ns, link: &str, addr: IpNetwork) -> OpResult<()> {
        self.0.add_address(ns, link, addr)
    }
    fn remove_address(&mut self, ns: Ns, link: &str, addr: IpNetwork) -> OpResult<SavedAddress> {
        self.0.remove_address(ns, link, addr)
    }
    fn restore_address(&mut self, ns: Ns, link: &str, saved: &SavedAddress) -> OpResult<()> {
        self.0.restore_address(ns, link, saved)
    }
    fn save_addresses(
        &mut self,
        ns: Ns,
        link: &str,
        family: Family,
    ) -> OpResult<Vec<SavedAddress>> {
        self.0.save_addresses(ns, link, family)
    }
    fn default_route_links(&mut self, ns: Ns) -> OpResult<Vec<String>> {
        self.0.default_route_links(ns)
    }
    fn list_routes(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>> {
        self.0.list_routes(ns, link)
    }
    fn add_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        self.0.add_route(ns, r)
    }
    fn unroute(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        self.0.unroute(ns, r)
    }
    fn remove_route(&mut self, ns: Ns, r: &RouteSpec) -> OpResult<SavedRoute> {
        self.0.remove_route(ns, r)
    }
    fn save_routes(&mut self, ns: Ns, family: Family) -> OpResult<Vec<SavedRoute>> {
        self.0.save_routes(ns, family)
    }
    fn restore_route(&mut self, ns: Ns, saved: &SavedRoute) -> OpResult<()> {
        self.0.restore_route(ns, saved)
    }
    fn save_table(&mut self, family: Family, table: &str) -> OpResult<Option<String>> {
        self.0.save_table(family, table)
    }
    fn restore_table(&mut self, family: Family, table: &str, saved: Option<&str>) -> OpResult<()> {
        self.0.restore_table(family, table, saved)
    }
    fn allow_forward(&mut self, table: &str, net: IpNetwork) -> OpResult<()> {
        self.0.allow_forward(table, net)
    }
    fn masquerade(&mut self, table: &str, source: IpNetwork, except: &[IpNetwork]) -> OpResult<()> {
        self.0.masquerade(table, source, except)
    }
    fn sysctl_get(&mut self, ns: Ns, key: &SysctlKey) -> OpResult<String> {
        self.0.sysctl_get(ns, key)
    }
    fn sysctl_set(&mut self, ns: Ns, key: &SysctlKey, value: &str) -> OpResult<()> {
        self.0.sysctl_set(ns, key, value)
    }
    fn forwarding_values(&mut self, ns: Ns, family: Family) -> OpResult<Vec<SysctlValue>> {
        self.0.forwarding_values(ns, family)
    }
    fn lock_enter(
        &mut self,
        timeout: std::time::Duration,
        interruptible: bool,
    ) -> OpResult<Option<std::time::Duration>> {
        self.0.lock_enter(timeout, interruptible)
    }
    fn lock_leave(&mut self) {
        self.0.lock_leave()
    }
    fn store_get(&mut self, key: &str) -> OpResult<Option<String>> {
        self.0.store_get(key)
    }
    fn store_put(&mut self, key: &str, value: &str) -> OpResult<()> {
        self.0.store_put(key, value)
    }
    fn store_delete(&mut self, key: &str) -> OpResult<bool> {
        self.0.store_delete(key)
    }
    fn store_owner(&mut self, key: &str) -> OpResult<Option<String>> {
        self.0.store_owner(key)
    }
    fn store_set_owner(&mut self, key: &str, owner: &str) -> OpResult<()> {
        self.0.store_set_owner(key, owner)
    }
    fn store_list(&mut self, prefix: &str) -> OpResult<Vec<String>> {
        self.0.store_list(prefix)
    }
    fn store_usage(&mut self) -> OpResult<StoreUsage> {
        self.0.store_usage()
    }
    fn store_set_usage(&mut self, usage: StoreUsage) -> OpResult<()> {
        self.0.store_set_usage(usage)
    }
    fn address_holder(&mut self, ip: IpAddr) -> OpResult<Option<String>> {
        self.0.address_holder(ip)
    }
    fn held_addresses(&mut self) -> OpResult<Vec<IpAddr>> {
        self.0.held_addresses()
    }
    fn hold_addresses(&mut self, attachment: &str, ips: &[IpAddr], guest: &str) -> OpResult<()> {
        self.0.hold_addresses(attachment, ips, guest)
    }
    fn guests_in_use(&mut self) -> OpResult<Vec<String>> {
        self.0.guests_in_use()
    }
    fn release_addresses(&mut self, attachment: &str) -> OpResult<()> {
        self.0.release_addresses(attachment)
    }
    fn holders(&mut self) -> OpResult<Vec<String>> {
        self.0.holders()
    }
    fn create_vxlan(&mut self, spec: &crate::node::VxlanSpec) -> OpResult<LinkInfo> {
        self.0.create_vxlan(spec)
    }
    fn list_fdb(&mut self, link: &str) -> OpResult<Vec<crate::node::FdbEntry>> {
        self.0.list_fdb(link)
    }
    fn add_fdb(&mut self, link: &str, e: &crate::node::FdbEntry) -> OpResult<()> {
        self.0.add_fdb(link, e)
    }
    fn remove_fdb(&mut self, link: &str, e: &crate::node::FdbEntry) -> OpResult<()> {
        self.0.remove_fdb(link, e)
    }
    fn list_neighbors(&mut self, link: &str) -> OpResult<Vec<crate::node::NeighborEntry>> {
        self.0.list_neighbors(link)
    }
    fn add_neighbor(&mut self, link: &str, e: &crate::node::NeighborEntry) -> OpResult<()> {
        self.0.add_neighbor(link, e)
    }
    fn remove_neighbor(&mut self, link: &str, a: IpAddr) -> OpResult<crate::node::NeighborEntry> {
        self.0.remove_neighbor(link, a)
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        Box::new(self.0)
    }
}

#[test]
fn a_veth_created_by_a_failed_create_is_undone() {
    let mut sb = gate_over(fresh(), false);
    let before = text(&mut sb);
    let model = std::mem::replace(
        &mut sb.node,
        Box::new(Model {
            world: World::default(),
            container: None,
        }),
    );
    let w = model.into_any().downcast::<Model>().unwrap().world;
    sb.node = Box::new(FailAfterCreate(Model {
        world: w,
        container: Some(POD.into()),
    }));
    assert!(sb.create_veth(&own(), "eth0", None, None).is_err());
    let (steps, failures) = sb.rollback();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(steps, 1, "the veth was journaled");
    assert_eq!(text(&mut sb), before);
}

#[test]
fn create_veth_sets_the_container_mac_and_refuses_a_bad_one() {
    let mut sb = gate_over(fresh(), false);
    let before = text(&mut sb);
    for bad in [
        "0a:58:00:00:00",
        "01:00:5e:00:00:01",
        "00:00:00:00:00:00",
        "0a:58:00:00:00:0x",
    ] {
        let e = sb.create_veth(&own(), "eth0", None, Some(bad)).unwrap_err();
        assert_eq!(e.kind, OpKind::InvalidArgument, "{bad}: {}", e.message);
        assert!(
            e.message.contains("container-mac") && e.message.contains(bad),
            "{bad}: {}",
            e.message
        );
    }
    assert_eq!(text(&mut sb), before, "a refused veth changes nothing");
    // any MAC but the runtime's request.mac is refused: another pod's would take its
    // traffic on the bridge
    for (requested, asked) in [
        (None, "0a:58:c8:c8:01:09"),
        (Some("0a:58:c8:c8:01:08"), "0a:58:c8:c8:01:09"),
    ] {
        sb.grants
            .set_requested_mac(requested.map(|m: &str| m.parse().unwrap()));
        let e = sb
            .create_veth(&own(), "eth0", None, Some(asked))
            .unwrap_err();
        assert_eq!(e.kind, OpKind::Denied, "{asked}: {}", e.message);
        assert!(
            e.message.contains(asked) && e.message.contains("request.mac"),
            "{}",
            e.message
        );
        assert_eq!(text(&mut sb), before, "a refused veth changes nothing");
    }
    sb.grants
        .set_requested_mac(Some("0a:58:c8:c8:01:09".parse().unwrap()));
    let (_, c) = sb
        .create_veth(&own(), "eth0", None, Some("0A:58:C8:C8:01:09"))
        .unwrap();
    assert_eq!(c.mac, "0a:58:c8:c8:01:09");
    assert_eq!(
        sb.link_get(Ns::Container, "eth0").unwrap().unwrap().mac,
        "0a:58:c8:c8:01:09"
    );
}

/// A DEL's gate: it may change the node, with no journal (nothing is rolled back).
fn del_gate_over(w: World) -> Gate {
    let mut g = gate_over(w, false);
    g.journal = None;
    g
}

#[test]
fn a_forwarding_switch_stays_on_whatever_the_spelling_of_zero() {
    // the kernel reads sysctl integers with base 0 and a sign: "00", "0x0", "-0" are 0
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        for journaled in [true, false] {
            let mut sb = if journaled {
                gate_over(node(), false)
            } else {
                del_gate_over(node())
            };
            let before = text(&mut sb);
            for zero in ["00", "0x0", "-0", "+0", "000000", "0X0", "0.0", "1x"] {
                let e = sb.sysctl_set(Ns::Host, key, zero).unwrap_err();
                assert!(
                    matches!(e.kind, OpKind::Denied | OpKind::InvalidArgument),
                    "{key}={zero}: {e}"
                );
            }
            assert_eq!(text(&mut sb), before, "{key}");
        }
    }
    // plain decimal integers still go through
    let mut sb = gate_over(node(), false);
    sb.sysctl_set(Ns::Host, "net.ipv6.conf.cni0.accept_dad", "2")
        .unwrap();
    sb.sysctl_set(Ns::Host, "net.ipv4.conf.cni0.rp_filter", "-1")
        .unwrap_err();
}

#[test]
fn no_command_disables_ipv6_on_the_shared_bridge() {
    // turning IPv6 off drops the bridge's IPv6 addresses, every pod's gateway: the
    // same as removing them, which only the bridge's creator may do
    for value in ["1", "2"] {
        let mut sb = del_gate_over(node());
        let before = text(&mut sb);
        let e = sb
            .sysctl_set(Ns::Host, "net.ipv6.conf.cni0.disable_ipv6", value)
            .unwrap_err();
        assert_eq!(e.kind, OpKind::Denied, "{e}");
        assert_eq!(text(&mut sb), before);
    }
    // its own links, yes
    let mut sb = del_gate_over(node());
    sb.sysctl_set(
        Ns::Host,
        &format!("net.ipv6.conf.{}.disable_ipv6", own()),
        "1",
    )
    .unwrap();
}

#[test]
fn host_links_never_accept_router_advertisements() {
    // a pod's router advertisement on a host link that accepts them would give the
    // node a default route (or addresses) through that pod: what `::/0` in the host
    // namespace is refused for
    for journaled in [true, false] {
        for (key, value) in [
            ("net.ipv6.conf.cni0.accept_ra", "1"),
            ("net.ipv6.conf.cni0.accept_ra", "2"),
            ("net.ipv6.conf.OWN.accept_ra", "2"),
            ("net.ipv6.conf.cni0.forwarding", "0"),
            ("net.ipv6.conf.OWN.forwarding", "0"),
        ] {
            let key = key.replace("OWN", &own());
            let mut sb = if journaled {
                gate_over(node(), false)
            } else {
                del_gate_over(node())
            };
            let before = text(&mut sb);
            let e = sb.sysctl_set(Ns::Host, &key, value).unwrap_err();
            assert_eq!(e.kind, OpKind::Denied, "{key}={value}: {e}");
            assert!(e.message.contains("router advertisements"), "{e}");
            assert_eq!(text(&mut sb), before, "{key}={value}");
        }
    }
    let mut sb = gate_over(node(), false);
    sb.sysctl_set(Ns::Host, "net.ipv6.conf.cni0.accept_ra", "0")
        .unwrap();
    // the pod's own side is the pod's
    let mut sb = gate_over(fresh(), false);
    sb.create_veth(&own(), "eth0", None, None).unwrap();
    sb.sysctl_set(Ns::Container, "net.ipv6.conf.eth0.accept_ra", "2")
        .unwrap();
    sb.sysctl_set(Ns::Container, "net.ipv6.conf.eth0.forwarding", "0")
        .unwrap();
}

#[test]
fn an_mtu_below_1280_on_a_link_it_did_not_create_is_refused_in_add() {
    // below 1280 the kernel drops the link's IPv6 state whole: addresses, the routes
    // through it, and its net.ipv6.conf settings (accept_ra back to 1); raising the
    // MTU again brings none of it back. This attachment's leftover host link carries
    // an IPv6 address and a route.
    let mut w = node();
    {
        let mut m = Model {
            world: w,
            container: Some(POD.into()),
        };
        m.set_up(Ns::Host, &own()).unwrap();
        m.add_route(Ns::Host, &route("fd00:200:1::60/128", None, &own()))
            .unwrap();
        w = m.world;
    }
    let mut sb = gate_over(w.clone(), false);
    let before = text(&mut sb);
    let e = sb.set_mtu(Ns::Host, &own(), 1200).unwrap_err();
    assert_eq!(e.kind, OpKind::Denied, "{e}");
    assert!(e.message.contains("cannot be undone"), "{e}");
    assert_eq!(text(&mut sb), before);
    assert_eq!(sb.rollback().0, 0);
    // 1280 itself keeps IPv6; a DEL (nothing to undo) may go lower
    sb.set_mtu(Ns::Host, &own(), 1280).unwrap();
    del_gate_over(w).set_mtu(Ns::Host, &own(), 1200).unwrap();
}

#[test]
fn ipv6_text_tricks_at_the_boundary_get_nothing_more() {
    let mut sb = gate_over(node(), false);
    let before = text(&mut sb);
    // not an address or network at all: zone ids, prefixes past 128, leading zeros
    for e in [
        sb.address_add(Ns::Container, "eth0", "fe80::1%eth0/64"),
        sb.address_add(Ns::Container, "eth0", "fd00:200:1::9/129"),
        sb.address_add(Ns::Container, "eth0", "200.200.001.005/24"),
        sb.route_add(Ns::Host, "fd00:200:1::/64", None, Some("cni0%1")),
        sb.route_add(
            Ns::Container,
            "::/0",
            Some("fd00:200:1::1%eth0"),
            Some("eth0"),
        ),
    ] {
        assert_eq!(e.unwrap_err().kind, OpKind::InvalidArgument);
    }
    // IPv6 spellings of IPv4 addresses are IPv6, outside the IPv6 pod network; the
    // other attachment's address in capitals or with its zeros written out is still its
    for (e, why) in [
        (
            sb.address_add(Ns::Container, "eth0", "::ffff:200.200.1.9/128"),
            "pod network",
        ),
        (
            sb.address_add(Ns::Container, "eth0", "::200.200.1.9/128"),
            "pod network",
        ),
        (
            sb.address_add(Ns::Container, "eth0", "64:ff9b::c8c8:109/128"),
            "pod network",
        ),
        (
            sb.address_add(Ns::Container, "eth0", "FD00:200:1:0:0:0:0:5/64"),
            "another attachment",
        ),
        (
            sb.route_add(Ns::Host, "0::0/0", None, Some(&own())),
            "pod network",
        ),
        (
            sb.route_add(Ns::Host, "::0/0", Some("fd00:200:1::1"), Some("cni0")),
            "pod network",
        ),
        (
            sb.route_add(Ns::Host, "FD00:200:1::5/128", None, Some(&own())),
            "another attachment",
        ),
        (sb.masquerade("::ffff:200.200.0.0/112", &[]), "pod network"),
    ] {
        let e = e.unwrap_err();
        assert_eq!(e.kind, OpKind::Denied, "{e}");
        assert!(e.message.contains(why), "{why}: {e}");
    }
    assert_eq!(text(&mut sb), before);
}

/// A reconcile's gate (`Scope::Node`: the host namespace, no attachment) over `w`.
fn node_gate_over(w: World) -> Gate {
    let mut g = Grants::new(
        Scope::Node,
        false,
        "cni0",
        "wc",
        vec![
            "200.200.0.0/16".parse().unwrap(),
            "fd00:200::/40".parse().unwrap(),
        ],
    );
    g.set_cluster(cluster());
    let model = Model {
        world: w,
        container: None,
    };
    Gate::new(
        g,
        Box::new(model),
        Some(Journal::default()),
        CallLog::discard(),
        "t".into(),
    )
}

#[test]
fn this_node_and_its_peers() {
    let mut sb = gate_over(node(), true);
    let (uplink, ips, vxlan) = sb.this_node().unwrap();
    assert_eq!(uplink.name, "eth0");
    let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
    assert_eq!(ips, ["10.0.0.2", "fd00:10::2"], "the uplink's, IPv4 first");
    assert_eq!(vxlan, VX);
    let names: Vec<String> = sb.peers().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["w2", "far"], "this node's own entry is dropped");
    // a configured nodeIP wins over the uplink's: then w2 is this node
    let mut c = cluster();
    c.node_ips = vec!["10.0.0.3".parse().unwrap()];
    // (on a node without pods: node()'s live pod addresses are in 200.200.1.0/24)
    let mut sb = gate_over(fresh(), false);
    sb.grants.set_cluster(c);
    let names: Vec<String> = sb.peers().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["me", "far"]);
    // and the uplink may then route to "me"'s pod CIDR, never to its own
    sb.route_add(Ns::Host, "200.200.1.0/24", Some("10.0.0.2"), Some("eth0"))
        .unwrap();
    let e = sb
        .route_remove(Ns::Host, "200.200.2.0/24", Some("10.0.0.1"), Some("eth0"))
        .unwrap_err();
    assert!(e.message.contains("own pod CIDR 200.200.2.0/24"), "{e}");
}

#[test]
fn each_cluster_refusal_names_its_reason() {
    type Named = (&'static str, Op);
    let cases: Vec<Named> = vec![
        // FDB: the remote, the link, the MAC
        ("outside the host network 10.0.0.0/24", |s| {
            s.fdb_add(VX, "0e:cc:c0:a8:09:09", "192.168.9.9")
        }),
        ("VXLAN remote 10.0.0.77 is not a peer's node IP", |s| {
            s.fdb_add(VX, "0e:cc:0a:00:00:4d", "10.0.0.77")
        }),
        ("link \"cni0\" is not the network's VXLAN link", |s| {
            s.fdb_add("cni0", "0e:cc:0a:00:00:03", "10.0.0.3")
        }),
        ("link \"eth0\" is not the network's VXLAN link", |s| {
            s.neighbor_add("eth0", "200.200.2.0", "0e:cc:0a:00:00:03")
        }),
        ("multicast MAC", |s| {
            s.fdb_add(VX, "01:00:5e:00:00:01", "10.0.0.3")
        }),
        ("all-zero MAC", |s| {
            s.fdb_add(VX, "00:00:00:00:00:00", "10.0.0.3")
        }),
        ("multicast MAC", |s| {
            s.neighbor_add(VX, "200.200.2.0", "ff:ff:ff:ff:ff:ff")
        }),
        ("10.0.0.3 is outside the pod network", |s| {
            s.neighbor_add(VX, "10.0.0.3", "0e:cc:0a:00:00:03")
        }),
        // routes through the uplink
        ("200.200.9.0/24 lies in none", |s| {
            s.route_add(Ns::Host, "200.200.9.0/24", Some("10.0.0.3"), Some("eth0"))
        }),
        ("8.8.8.0/24 lies in none", |s| {
            s.route_add(Ns::Host, "8.8.8.0/24", Some("10.0.0.3"), Some("eth0"))
        }),
        ("200.200.1.0/24 lies in none", |s| {
            // this node's own pod CIDR is no peer's
            s.route_add(Ns::Host, "200.200.1.0/24", Some("10.0.0.2"), Some("eth0"))
        }),
        ("belongs to peer \"w2\", whose node IP is 10.0.0.3", |s| {
            s.route_add(Ns::Host, "200.200.2.0/24", Some("10.0.0.1"), Some("eth0"))
        }),
        ("192.168.9.9 is outside the host network", |s| {
            s.route_add(
                Ns::Host,
                "200.200.3.0/24",
                Some("192.168.9.9"),
                Some("eth0"),
            )
        }),
        ("must name a gateway", |s| {
            s.route_add(Ns::Host, "200.200.2.0/24", None, Some("eth0"))
        }),
        ("overlaps this node's own pod CIDR 200.200.1.0/24", |s| {
            s.route_remove(Ns::Host, "200.200.0.0/16", Some("10.0.0.4"), Some("eth0"))
        }),
        ("outside the pod network", |s| {
            s.route_remove(Ns::Host, "0.0.0.0/0", Some("10.0.0.1"), Some("eth0"))
        }),
        ("it is the node's uplink", |s| {
            s.address_add(Ns::Host, "eth0", "200.200.1.9/32")
        }),
        ("it is the node's uplink", |s| {
            s.set_mtu(Ns::Host, "eth0", 1400)
        }),
        // the VXLAN link: one, by its configured name, from this node's IP
        ("the network has one VXLAN link, named \"wcni.1\"", |s| {
            s.create_vxlan("vx2", 1, 8472, "10.0.0.2", None, None)
                .map(|_| ())
        }),
        (
            "local address 10.0.0.3 is not one of this node's IPs",
            |s| {
                s.create_vxlan(VX, 1, 8472, "10.0.0.3", None, None)
                    .map(|_| ())
            },
        ),
        ("multicast MAC", |s| {
            s.create_vxlan(VX, 1, 8472, "10.0.0.2", None, Some("03:00:00:00:00:01"))
                .map(|_| ())
        }),
        ("created by cluster.create-vxlan only", |s| {
            s.create_bridge(VX, None).map(|_| ())
        }),
        ("only a call that created it may delete it", |s| {
            s.delete_link(Ns::Host, VX)
        }),
    ];
    for (why, op) in cases {
        let w = if why.contains("VXLAN link, named") || why.contains("local address") {
            fresh()
        } else {
            node()
        };
        let mut sb = gate_over(w, false);
        let before = text(&mut sb);
        let e = op(&mut sb).expect_err(why);
        assert_eq!(e.kind, OpKind::Denied, "{why}: {e}");
        assert!(e.message.contains(why), "{why}: {e}");
        assert_eq!(text(&mut sb), before, "{why}");
        assert_eq!(sb.rollback().0, 0, "{why}: journaled a refusal");
    }
    // the arguments themselves
    let mut sb = gate_over(fresh(), false);
    for (vni, port, what) in [
        (0, 8472, "VNI 0"),
        (1 << 24, 8472, "VNI"),
        (1, 0, "UDP port 0"),
    ] {
        let e = sb
            .create_vxlan(VX, vni, port, "10.0.0.2", None, None)
            .unwrap_err();
        assert_eq!(e.kind, OpKind::InvalidArgument, "{e}");
        assert!(e.message.contains(what), "{e}");
    }
    let e = sb.fdb_add(VX, "0e:cc", "10.0.0.3").unwrap_err();
    assert_eq!(e.kind, OpKind::InvalidArgument, "{e}");
}

#[test]
fn a_second_vxlan_link_is_refused_once_one_exists() {
    let mut sb = gate_over(fresh(), false);
    sb.create_vxlan(VX, 1, 8472, "10.0.0.2", None, None)
        .unwrap();
    let e = sb
        .create_vxlan(VX, 1, 8472, "10.0.0.2", None, None)
        .unwrap_err();
    assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
    let e = sb
        .create_vxlan("wcni.2", 2, 8472, "10.0.0.2", None, None)
        .unwrap_err();
    assert_eq!(e.kind, OpKind::Denied, "{e}");
    // the call that created it may delete it again
    sb.delete_link(Ns::Host, VX).unwrap();
}

#[test]
fn reconcile_grants_the_host_namespace_without_an_attachment() {
    // every cluster change, and the bridge's and the VXLAN link's, is undone exactly
    for (name, op) in ops() {
        if !(name.starts_with("cluster.") || name.contains("uplink") || name.contains("VXLAN")) {
            continue;
        }
        let w = if name == "cluster.create-vxlan" {
            fresh()
        } else {
            node()
        };
        let mut sb = node_gate_over(w);
        let before = text(&mut sb);
        op(&mut sb).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(text(&mut sb), before, "{name} changed nothing");
        let (steps, failures) = sb.rollback();
        assert!(failures.is_empty() && steps > 0, "{name}: {failures:?}");
        assert_eq!(text(&mut sb), before, "{name} was not undone exactly");
    }
    let mut sb = node_gate_over(node());
    sb.address_add(Ns::Host, "cni0", "200.200.1.2/32").unwrap();
    sb.set_up(Ns::Host, VX).unwrap();
    for (what, e) in [
        ("container", sb.link_get(Ns::Container, "eth0").map(|_| ())),
        ("pod link", sb.set_up(Ns::Host, &own())),
        ("bridge delete", sb.delete_link(Ns::Host, "cni0")),
        (
            "another attachment's key",
            sb.store_delete("ip/200.200.1.5").map(|_| ()),
        ),
    ] {
        assert!(e.is_err(), "{what}");
    }
    // a key it creates has no owner: any later call may delete it
    sb.store_put("cluster/digest", "x").unwrap();
    assert_eq!(sb.node.store_owner("cluster/digest").unwrap(), None);
}

#[test]
fn the_vxlan_link_uses_the_configured_port_only() {
    let mut sb = gate_over(node(), false);
    let e = sb
        .create_vxlan(VX, 1, 53, "10.0.0.2", None, None)
        .unwrap_err();
    assert_eq!(e.kind, OpKind::Denied, "{e}");
    assert!(
        e.message.contains("the network's VXLAN port is 8472"),
        "{e}"
    );
    // the configured port passes the gate (the node has the link already)
    let e = sb
        .create_vxlan(VX, 1, 8472, "10.0.0.2", None, None)
        .unwrap_err();
    assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
}

#[test]
fn fdb_and_neighbour_adds_count_as_routes() {
    let mut sb = gate_over(node(), false);
    sb.limits.routes = 2;
    let max = 2 + 8 * sb.grants.listed_nodes() as u64;
    for i in 0..max - 2 {
        sb.route_add(
            Ns::Host,
            &format!("200.200.{}.0/24", 100 + i),
            None,
            Some("cni0"),
        )
        .unwrap();
    }
    sb.fdb_add(VX, "0e:cc:0a:00:00:03", "10.0.0.3").unwrap();
    sb.neighbor_add(VX, "200.200.2.0", "0e:cc:0a:00:00:03")
        .unwrap();
    let e = sb
        .route_add(Ns::Host, "200.200.2.0/24", Some("10.0.0.3"), Some("eth0"))
        .unwrap_err();
    assert!(
        e.message
            .contains(&format!("per-call limit of {max} reached (limits.routes)")),
        "{e}"
    );
}

#[test]
fn fdb_and_neighbour_lists_are_of_the_vxlan_link_only() {
    let mut sb = gate_over(node(), true);
    let fdb = sb.fdb_list(VX).unwrap();
    assert_eq!(fdb.len(), 1);
    assert_eq!(fdb[0].remote.to_string(), "10.0.0.4");
    assert_eq!(sb.neighbor_list(VX).unwrap().len(), 1);
    assert_eq!(sb.fdb_list("eth0").unwrap_err().kind, OpKind::Denied);
    assert_eq!(sb.neighbor_list("cni0").unwrap_err().kind, OpKind::Denied);
}

#[test]
fn gc_makes_no_node_level_change() {
    let mut g = Grants::new(
        Scope::Gc { valid: Vec::new() },
        false,
        "cni0",
        "wc",
        vec!["200.200.0.0/16".parse().unwrap()],
    );
    g.set_cluster(cluster());
    let model = Model {
        world: node(),
        container: None,
    };
    let mut sb = Gate::new(g, Box::new(model), None, CallLog::discard(), "t".into());
    let before = text(&mut sb);
    for (what, r) in [
        ("fdb", sb.fdb_add(VX, "0e:cc:0a:00:00:03", "10.0.0.3")),
        ("neighbour", sb.neighbor_remove(VX, "200.200.4.0")),
        (
            "uplink route",
            sb.route_add(Ns::Host, "200.200.2.0/24", Some("10.0.0.3"), Some("eth0")),
        ),
        ("vxlan up", sb.set_up(Ns::Host, VX)),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.kind, OpKind::Denied, "{what}: {e}");
    }
    assert_eq!(text(&mut sb), before);
    assert_eq!(sb.fdb_list(VX).unwrap().len(), 1, "GC may still look");
}

/// The model's lock: whether the call is inside, and how often it entered.
fn lock_state(g: &mut Gate) -> (bool, u32) {
    let node = std::mem::replace(
        &mut g.node,
        Box::new(Model {
            world: World::default(),
            container: None,
        }),
    );
    let w = node.into_any().downcast::<Model>().expect("a model").world;
    let state = (w.locked, w.lock_entries);
    g.node = Box::new(Model {
        world: w,
        container: Some(POD.into()),
    });
    state
}

#[test]
fn a_store_call_outside_the_critical_section_enters_it_until_release() {
    let mut g = gate_over(node(), false);
    g.explicit_lock = true;
    assert_eq!(lock_state(&mut g), (false, 0));
    g.store_get("last").unwrap();
    assert_eq!(
        lock_state(&mut g),
        (true, 1),
        "the first store call entered"
    );
    g.store_put("k", "v").unwrap();
    g.store_list("").unwrap();
    assert_eq!(lock_state(&mut g), (true, 1), "later ones stay inside");
    g.lock_release();
    assert_eq!(lock_state(&mut g), (false, 1));
    g.store_delete("k").unwrap();
    assert_eq!(lock_state(&mut g), (true, 2));
}

#[test]
fn acquiring_or_releasing_twice_changes_nothing() {
    let mut g = gate_over(node(), false);
    g.explicit_lock = true;
    g.lock_acquire().unwrap();
    g.lock_acquire().unwrap();
    assert_eq!(lock_state(&mut g), (true, 1));
    g.lock_release();
    g.lock_release();
    assert_eq!(lock_state(&mut g), (false, 1));
    assert_eq!(g.calls, 2, "acquire is a host call (release cannot fail)");
}

#[test]
fn in_the_whole_call_mode_release_keeps_the_lock() {
    let mut g = gate_over(node(), false);
    g.lock_acquire().unwrap();
    g.lock_release();
    assert_eq!(lock_state(&mut g), (true, 1));
}

#[test]
fn the_rollback_enters_the_lock_to_undo_store_changes() {
    let mut g = gate_over(node(), false);
    g.explicit_lock = true;
    let before = text(&mut g);
    g.lock_acquire().unwrap();
    g.store_put("ipam/200.200.1.7", "c1").unwrap();
    g.lock_release();
    g.create_bridge("cni9", None).map(|_| ()).ok();
    assert_eq!(lock_state(&mut g), (false, 1));
    let (_, failures) = g.rollback();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(lock_state(&mut g), (true, 2), "entered again for the undo");
    assert_eq!(text(&mut g), before);
}

#[test]
fn an_address_check_outside_the_critical_section_enters_the_lock_briefly() {
    // node() has this attachment's host link (an earlier ADD's) but no container side
    let mut g = gate_over(fresh(), false);
    g.explicit_lock = true;
    g.create_veth(&own(), "eth0", None, None).unwrap();
    g.address_add(Ns::Container, "eth0", "200.200.1.7/24")
        .unwrap();
    assert_eq!(lock_state(&mut g), (false, 1), "entered and left");
}
