//! The VXLAN policy on the kit's fake node.

use super::*;
use wasm_cni_guest_kit::fake::{request, FakeNode, CLUSTER_DUAL};

const V4: &str = r#"{"cniVersion":"1.0.0","name":"lab","myHostNetwork":"10.0.0.0/16",
    "myPodNetwork":"200.200.0.0/16","myPodSubnet":"200.200.1.0/24","vni":42,"vxlanPort":4789}"#;

/// The link's entries, as text: FDB, neighbours, routes.
fn entries(n: &FakeNode) -> (Vec<String>, Vec<String>, Vec<String>) {
    let fdb = n.fdb.get("wcni.1").cloned().unwrap_or_default();
    let neigh = n.neighbors.get("wcni.1").cloned().unwrap_or_default();
    (
        fdb.iter().map(|(m, r)| format!("{m} dst {r}")).collect(),
        neigh.iter().map(|(a, m)| format!("{a} at {m}")).collect(),
        n.routes_on("wcni.1"),
    )
}

#[test]
fn vtep_macs_are_derived_from_the_underlay_ip() {
    assert_eq!(vtep_mac("10.0.0.3".parse().unwrap()), "0e:cc:0a:00:00:03");
    assert_eq!(
        vtep_mac("192.168.200.254".parse().unwrap()),
        "0e:cc:c0:a8:c8:fe"
    );
    // IPv6 underlay: the last 4 bytes
    assert_eq!(
        vtep_mac("fd00:10::a0b:c0d".parse().unwrap()),
        "0e:cc:0a:0b:0c:0d"
    );
    // unicast and locally administered
    assert_eq!(0x0e & 1, 0);
    assert_eq!(0x0e & 2, 2);
}

#[test]
fn mtu_is_the_uplinks_minus_the_encapsulation() {
    assert_eq!(tunnel_mtu(1500, Family::V4), 1450);
    assert_eq!(tunnel_mtu(1500, Family::V6), 1430);
    assert_eq!(tunnel_mtu(9000, Family::V4), 8950);
    assert_eq!(tunnel_mtu(1460, Family::V4), 1410); // GCP's VPC MTU
    let dual = parse_config(CLUSTER_DUAL).unwrap();
    assert_eq!(pod_mtu(&dual, 1450).unwrap(), 1450);
    // a lower configured mtu wins; a higher one is capped at the tunnel's
    let with = |m: u32| Config {
        mtu: Some(m),
        ..dual.clone()
    };
    assert_eq!(pod_mtu(&with(1400), 1450).unwrap(), 1400);
    assert_eq!(pod_mtu(&with(9000), 1450).unwrap(), 1450);
    let e = pod_mtu(&dual, tunnel_mtu(1300, Family::V4)).unwrap_err();
    assert_eq!(
        e.message,
        "the VXLAN tunnel leaves an MTU of 1250: the pods need 1280 or more (raise the uplink's MTU)"
    );
    assert_eq!(pod_mtu(&parse_config(V4).unwrap(), 1250).unwrap(), 1250);
}

#[test]
fn settings_default_and_range() {
    assert_eq!(
        Settings::parse(CLUSTER_DUAL).unwrap(),
        Settings { vni: 1, port: 8472 }
    );
    assert_eq!(
        Settings::parse(V4).unwrap(),
        Settings {
            vni: 42,
            port: 4789
        }
    );
    for (json, want) in [
        (r#"{"vni":0}"#, "vni 0 is out of range (1..16777215)"),
        (
            r#"{"vni":16777216}"#,
            "vni 16777216 is out of range (1..16777215)",
        ),
        (
            r#"{"vxlanPort":0}"#,
            "vxlanPort 0 is out of range (1..65535)",
        ),
        (
            r#"{"vxlanPort":65536}"#,
            "vxlanPort 65536 is out of range (1..65535)",
        ),
    ] {
        let e = Settings::parse(json).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (INVALID_CONFIG, want));
    }
    assert!(Settings::parse(r#"{"vni":"1"}"#)
        .unwrap_err()
        .message
        .starts_with("network config: invalid type"));
}

#[test]
fn first_sync_makes_the_link_and_each_peers_entries_dual_stack() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::worker(2)]);
    let c = reconcile(&mut n, CLUSTER_DUAL).unwrap();
    let state = n.store.0["node/peers"].clone();
    assert!(state.starts_with("vxlan v1 "), "{state}");
    assert_eq!(
        n.changes(),
        [
            r#"cluster.create-vxlan("wcni.1", 1, 8472, "10.0.0.3", 1450, "0e:cc:0a:00:00:03")"#,
            // DAD off before the IPv6 VTEP address goes on
            r#"sysctl.set(host, "net.ipv6.conf.wcni.1.accept_dad", "0")"#,
            r#"addresses.add(host, "wcni.1", "200.200.1.0/32")"#,
            r#"addresses.add(host, "wcni.1", "fd00:200:1::/128")"#,
            r#"links.set-up(host, "wcni.1")"#,
            r#"cluster.fdb-add("wcni.1", "0e:cc:0a:00:00:04" -> "10.0.0.4")"#,
            r#"cluster.neighbor-add("wcni.1", "200.200.2.0" at "0e:cc:0a:00:00:04")"#,
            r#"cluster.neighbor-add("wcni.1", "fd00:200:2::" at "0e:cc:0a:00:00:04")"#,
            r#"routes.add(host, "200.200.2.0/32" via none dev "wcni.1")"#,
            r#"routes.add(host, "200.200.2.0/24" via "200.200.2.0" dev "wcni.1")"#,
            r#"routes.add(host, "fd00:200:2::/128" via none dev "wcni.1")"#,
            r#"routes.add(host, "fd00:200:2::/64" via "fd00:200:2::" dev "wcni.1")"#,
            format!("store.put(\"node/peers\", {state:?})").as_str(),
        ]
    );
    assert_eq!(
        c,
        Changes {
            added: 10,
            removed: 0,
            skipped: 0
        }
    );
    assert_eq!(n.vxlans["wcni.1"], (1, 8472, "10.0.0.3".to_string()));
    let l = &n.links[&("host", "wcni.1".to_string())];
    assert_eq!(
        (l.mtu, l.mac.as_str(), l.up),
        (1450, "0e:cc:0a:00:00:03", true)
    );
    // nothing through the uplink: the tunnel carries it all
    assert!(n.routes_on("eth0").is_empty());
}

#[test]
fn a_second_sync_changes_nothing() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::worker(2), FakeNode::worker(3)]);
    reconcile(&mut n, CLUSTER_DUAL).unwrap();
    let before = entries(&n);
    n.calls.clear();
    let c = reconcile(&mut n, CLUSTER_DUAL).unwrap();
    assert_eq!(c, Changes::default());
    let changes = n.changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].starts_with("store.put(\"node/peers\""));
    assert_eq!(entries(&n), before);
}

#[test]
fn a_departed_peer_loses_exactly_its_routes_neighbours_and_fdb_entry() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::worker(2), FakeNode::worker(3)]);
    // a route of this node's own (its IPv6 VTEP address's kernel route) stays
    n.routes.push((
        "host",
        "fd00:200:1::/128".into(),
        None,
        Some("wcni.1".into()),
    ));
    reconcile(&mut n, CLUSTER_DUAL).unwrap();
    n.calls.clear();
    n.peers = vec![FakeNode::worker(3)];
    let c = reconcile(&mut n, CLUSTER_DUAL).unwrap();
    assert_eq!(
        c,
        Changes {
            added: 0,
            removed: 7,
            skipped: 0
        }
    );
    let changes = n.changes();
    assert_eq!(
        changes[..7],
        [
            r#"routes.remove(host, "200.200.2.0/24" via "200.200.2.0" dev "wcni.1")"#,
            r#"routes.remove(host, "fd00:200:2::/64" via "fd00:200:2::" dev "wcni.1")"#,
            r#"routes.remove(host, "200.200.2.0/32" via none dev "wcni.1")"#,
            r#"routes.remove(host, "fd00:200:2::/128" via none dev "wcni.1")"#,
            r#"cluster.neighbor-remove("wcni.1", "200.200.2.0")"#,
            r#"cluster.neighbor-remove("wcni.1", "fd00:200:2::")"#,
            r#"cluster.fdb-remove("wcni.1", "0e:cc:0a:00:00:04" -> "10.0.0.4")"#,
        ]
    );
    assert_eq!(changes.len(), 8, "{changes:?}");
    let (fdb, neigh, routes) = entries(&n);
    assert_eq!(fdb, ["0e:cc:0a:00:00:05 dst 10.0.0.5"]);
    assert_eq!(
        neigh,
        [
            "200.200.3.0 at 0e:cc:0a:00:00:05",
            "fd00:200:3:: at 0e:cc:0a:00:00:05"
        ]
    );
    assert_eq!(
        routes,
        [
            "fd00:200:1::/128",
            "200.200.3.0/32",
            "200.200.3.0/24 via 200.200.3.0",
            "fd00:200:3::/128",
            "fd00:200:3::/64 via fd00:200:3::",
        ]
    );
    // the link and this node's VTEP addresses stay
    assert_eq!(
        n.addresses[&("host", "wcni.1".to_string())],
        ["200.200.1.0/32", "fd00:200:1::/128"]
    );
}

#[test]
fn a_new_peer_gets_its_entries_and_a_moved_one_is_repointed() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::worker(2)]);
    reconcile(&mut n, CLUSTER_DUAL).unwrap();
    n.calls.clear();
    let mut moved = FakeNode::worker(2);
    moved.ips = vec!["10.0.0.14".into(), "fd00:10::14".into()];
    n.peers = vec![moved, FakeNode::worker(3)];
    let c = reconcile(&mut n, CLUSTER_DUAL).unwrap();
    // worker-2: new MAC (from its new IP): 2 neighbours and its FDB entry replaced;
    // worker-3: FDB, 2 neighbours, 4 routes
    assert_eq!(
        c,
        Changes {
            added: 10,
            removed: 3,
            skipped: 0
        }
    );
    let (fdb, neigh, routes) = entries(&n);
    assert_eq!(
        fdb,
        [
            "0e:cc:0a:00:00:0e dst 10.0.0.14",
            "0e:cc:0a:00:00:05 dst 10.0.0.5"
        ]
    );
    assert_eq!(neigh[0], "200.200.2.0 at 0e:cc:0a:00:00:0e");
    assert_eq!(routes.len(), 8);
}

#[test]
fn an_ipv4_only_network_with_its_own_vni_and_port() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::peer(
        "worker-2",
        &["10.0.0.4"],
        &["200.200.2.0/24"],
    )]);
    reconcile(&mut n, V4).unwrap();
    assert_eq!(
        n.changes()[0],
        r#"cluster.create-vxlan("wcni.1", 42, 4789, "10.0.0.3", 1450, "0e:cc:0a:00:00:03")"#
    );
    let (_, neigh, routes) = entries(&n);
    assert_eq!(neigh, ["200.200.2.0 at 0e:cc:0a:00:00:04"]);
    assert_eq!(routes, ["200.200.2.0/32", "200.200.2.0/24 via 200.200.2.0"]);
    assert!(!n.calls.iter().any(|c| c.contains("accept_dad")));
}

#[test]
fn an_ipv6_underlay_costs_70_bytes_and_skips_ipv4_only_peers() {
    let mut n = FakeNode::default();
    n.cluster("eth0", 1500, &["fd00:10::3/64"], "wcni.1");
    n.peers = vec![
        FakeNode::peer("v6", &["fd00:10::4"], &["fd00:200:2::/64"]),
        FakeNode::peer("old", &["10.0.0.9"], &["200.200.9.0/24"]),
    ];
    reconcile(&mut n, CLUSTER_DUAL).unwrap();
    assert!(n.calls.contains(
        &r#"cluster.create-vxlan("wcni.1", 1, 8472, "fd00:10::3", 1430, "0e:cc:00:00:00:03")"#
            .to_string()
    ));
    let (fdb, _, routes) = entries(&n);
    assert_eq!(fdb, ["0e:cc:00:00:00:04 dst fd00:10::4"]);
    assert_eq!(
        routes,
        ["fd00:200:2::/128", "fd00:200:2::/64 via fd00:200:2::"]
    );
    assert!(n
        .log
        .contains(&"peer \"old\": no IPv6 node IP for the VXLAN underlay: skipped".to_string()));
}

#[test]
fn add_syncs_lazily_and_gives_bridge_and_pods_the_tunnel_mtu() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::worker(2)]);
    let r = add(&mut n, &request("a", CLUSTER_DUAL)).unwrap();
    assert_eq!(r.ips.len(), 2);
    assert!(n
        .calls
        .contains(&r#"links.create-bridge("cni0", 1450)"#.to_string()));
    assert!(n
        .calls
        .contains(&r#"links.create-veth("wc-a", "eth0", 1450, none)"#.to_string()));
    assert_eq!(entries(&n).2.len(), 4);
    // the next pod: nothing of the overlay is touched
    n.next_pod();
    add(&mut n, &request("b", CLUSTER_DUAL)).unwrap();
    assert!(
        !n.calls
            .iter()
            .any(|c| c.contains("wcni.1") && !c.starts_with("links.get")),
        "{:?}",
        n.calls
    );
    // a peer joined: the next ADD adds it
    n.peers.push(FakeNode::worker(3));
    n.next_pod();
    add(&mut n, &request("c", CLUSTER_DUAL)).unwrap();
    assert_eq!(entries(&n).2.len(), 8);
    // the link went down (or away): the next ADD repairs it though nothing changed
    n.links.get_mut(&("host", "wcni.1".to_string())).unwrap().up = false;
    n.next_pod();
    add(&mut n, &request("d", CLUSTER_DUAL)).unwrap();
    assert!(n.changes().contains(&r#"links.set-up(host, "wcni.1")"#));
}

#[test]
fn a_link_with_another_mac_is_an_error_and_a_changed_mtu_is_set() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::worker(2)]);
    reconcile(&mut n, CLUSTER_DUAL).unwrap();
    n.this_node.as_mut().unwrap().uplink.mtu = 9000;
    n.calls.clear();
    reconcile(&mut n, CLUSTER_DUAL).unwrap();
    assert_eq!(n.changes()[0], r#"links.set-mtu(host, "wcni.1", 8950)"#);
    n.links
        .get_mut(&("host", "wcni.1".to_string()))
        .unwrap()
        .mac = "0e:cc:0a:00:00:63".into();
    assert_eq!(
        reconcile(&mut n, CLUSTER_DUAL).unwrap_err(),
        "VXLAN link wcni.1 has MAC 0e:cc:0a:00:00:63, not this node's VTEP MAC 0e:cc:0a:00:00:03 (the one peers send to): delete the link and run wasm-cni reconcile"
    );
}

#[test]
fn a_failed_step_names_it_and_records_no_state() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::worker(2)]);
    n.fail.insert("cluster.fdb-add");
    let e = add(&mut n, &request("a", CLUSTER_DUAL)).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (HOST_FAILED, "add peer FDB entry: cluster.fdb-add: denied")
    );
    assert!(!n.store.0.contains_key("node/peers"));
    assert!(!n.calls.iter().any(|c| c.starts_with("links.create-veth")));
}

#[test]
fn node_problem_looks_at_the_vxlan_link_after_the_bridge() {
    let mut n = FakeNode::in_cluster(vec![FakeNode::worker(2)]);
    let cfg = parse_config(CLUSTER_DUAL).unwrap();
    add(&mut n, &request("a", CLUSTER_DUAL)).unwrap();
    assert_eq!(node_problem(&mut n, &cfg).unwrap(), None);
    n.links.get_mut(&("host", "wcni.1".to_string())).unwrap().up = false;
    assert_eq!(
        node_problem(&mut n, &cfg).unwrap(),
        Some("VXLAN link wcni.1 is down".into())
    );
    n.links.remove(&("host", "wcni.1".to_string()));
    assert_eq!(
        node_problem(&mut n, &cfg).unwrap(),
        Some("VXLAN link wcni.1 is missing".into())
    );
}
