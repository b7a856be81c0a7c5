//! The host-gw policy (flannel's `host-gw` backend): the default bridge policy for the
//! pods of this node, and for every other node of the cluster, and each address
//! family, a route on this node to that node's pod CIDR via that node's IP, through
//! the uplink:
//!
//! ```text
//! 200.200.2.0/24   via 10.0.0.4    dev eth0     (worker-2's pods)
//! fd00:200:2::/64  via fd00:10::4  dev eth0
//! ```
//!
//! Pod traffic to another node leaves unencapsulated, addressed to the pod, with the
//! other node's MAC: every node must be on one L2 segment with the others (the kernel
//! refuses a gateway that is not on a connected network). On a cloud VPC that routes
//! by destination (GCP), the VPC drops such packets unless it has the same routes:
//! use the VXLAN policy there.
//!
//! The peers come from the runner (`cluster.peers`: the config's `peers` without this
//! node). [`sync`] brings the uplink's routes in line with them: it adds the missing
//! ones and removes the routes through the uplink, inside the pod network, that no
//! peer owns any more (a node left, or changed its IP). `wasm-cni reconcile -c
//! CONFLIST` runs it (`node-policy.reconcile`); ADD runs it too when the peers changed
//! since the last sync (a digest in the store, `node/peers`).

use std::net::IpAddr;
use wasm_cni_guest_kit::internode::{self, Changes, Me, PeerNode};
use wasm_cni_guest_kit::prelude::*;

/// The host-gw policy.
pub struct HostGw;

/// The routes this node wants on the uplink: each peer's pod CIDR via its IP of the
/// CIDR's family, in peer order, IPv4 first. A CIDR of a family the peer, or this
/// node, has no IP of cannot be routed over the uplink: logged and skipped.
pub fn wanted(
    node: &mut impl Node,
    cfg: &Config,
    me: &Me,
    peers: &[PeerNode],
) -> Vec<(Net, IpAddr)> {
    let mut out = Vec::new();
    for peer in peers {
        for cidr in internode::routable_cidrs(node, cfg, peer) {
            let family = cidr.family();
            match (peer.ip(family), me.ip(family)) {
                (Some(gw), Some(_)) => out.push((cidr, gw)),
                (None, _) => node.warn(&format!(
                    "peer {}: no {family} node IP to route {cidr} through: skipped",
                    peer.label()
                )),
                (Some(_), None) => node.warn(&format!(
                    "this node has no {family} IP: peer {}'s {cidr} is not routed",
                    peer.label()
                )),
            }
        }
    }
    out
}

fn uplink_route(dst: Net, gw: IpAddr, uplink: &str) -> Route {
    Route {
        destination: dst.to_string(),
        gateway: Some(gw.to_string()),
        link: Some(uplink.to_string()),
    }
}

/// Bring the uplink's peer routes in line with `peers`: remove first (a peer whose IP
/// changed gets its destination back through the new gateway), then add what is
/// missing. Routes outside the pod network, or without a gateway, are not touched.
/// A route the kernel refuses is an error when `strict` (reconcile), a warning and
/// [`Changes::skipped`] otherwise (ADD: a pod must not fail for another node's route).
pub fn sync(
    node: &mut impl Node,
    cfg: &Config,
    me: &Me,
    peers: &[PeerNode],
    strict: bool,
) -> Result<Changes, CniError> {
    let uplink = me.uplink.name.as_str();
    let want = wanted(node, cfg, me, peers);
    let have: Vec<(Net, Option<IpAddr>)> = node
        .route_list(Netns::Host, Some(uplink))
        .map_err(step("list uplink routes"))?
        .iter()
        .filter_map(internode::route_key)
        .collect();
    let mut changes = Changes::default();
    for (dst, gw) in &have {
        let Some(gw) = *gw else { continue };
        // a gateway outside the host network is no peer's: not this policy's route
        let ours = cfg.host_network.containing(gw).is_some();
        if ours && internode::peer_destination(cfg, *dst) && !want.contains(&(*dst, gw)) {
            node.route_remove(Netns::Host, &uplink_route(*dst, gw, uplink))
                .map_err(step("remove a departed peer's route"))?;
            changes.removed += 1;
        }
    }
    for (dst, gw) in &want {
        if have.contains(&(*dst, Some(*gw))) {
            continue;
        }
        match node.route_add(Netns::Host, &uplink_route(*dst, *gw, uplink)) {
            Ok(()) => changes.added += 1,
            // The kernel refuses a gateway that is not on a connected network: this
            // node and that peer do not share a segment (GCP gives every VM a /32).
            // A pod's ADD goes on without the route (traffic to that node takes the
            // node's default route, e.g. a VPC with inter-node-routes.sh); reconcile
            // reports it, so the operator learns host-gw cannot work here.
            Err(e) if e.kind == ErrorKind::Failed => {
                let why = format!(
                    "route {dst} via {gw} on {uplink} refused by the kernel ({}): host-gw needs every node on this node's network segment; use the VXLAN policy, or routes in the network itself (docs/gcp.md)",
                    e.message
                );
                if strict {
                    return Err(cni(HOST_FAILED, why));
                }
                node.warn(&why);
                changes.skipped += 1;
            }
            Err(e) => return Err(step("add peer route")(e)),
        }
    }
    Ok(changes)
}

/// What the store's `node/peers` holds after a sync for these inputs.
pub fn state(cfg: &Config, me: &Me, peers: &[PeerNode]) -> String {
    format!(
        "host-gw v1 {}",
        internode::digest(&internode::describe(cfg, me, peers))
    )
}

/// ADD: the peers' routes when the peers changed since the last sync, then the bridge
/// policy's ADD.
pub fn add(node: &mut impl Node, req: &Request) -> Result<AddResult, CniError> {
    let cfg = parse_config(&req.config)?;
    let me = internode::this_node(node)?;
    let peers = internode::peers(node)?;
    let state = state(&cfg, &me, &peers);
    let synced = internode::sync_lazily(node, &state, true, |n| sync(n, &cfg, &me, &peers, false))?;
    bridge::add_after(node, req, &cfg, synced)
}

/// `node-policy.reconcile`: the full sync, whatever the store says.
pub fn reconcile(node: &mut impl Node, config: &str) -> Result<Changes, String> {
    let cfg = parse_config(config).map_err(|e| e.message)?;
    let me = internode::this_node(node).map_err(|e| e.message)?;
    let peers = internode::peers(node).map_err(|e| e.message)?;
    let state = state(&cfg, &me, &peers);
    internode::reconcile_with(node, &state, |n| sync(n, &cfg, &me, &peers, true))
}

impl Policy for HostGw {
    fn add(req: &Request) -> Result<AddResult, CniError> {
        add(&mut Runner, req)
    }

    fn check(req: &Request) -> Result<(), CniError> {
        bridge::check(&mut Runner, req)
    }

    fn node_problem(cfg: &Config) -> Result<Option<String>, CniError> {
        bridge::node_problem(&mut Runner, cfg)
    }
}

impl NodePolicy for HostGw {
    fn reconcile(config: &str) -> Result<(), String> {
        reconcile(&mut Runner, config).map(|_| ())
    }
}

// Only the wasm build exports the component (world `cni-node-policy`); natively the
// crate is a plain library whose tests run the policy on the kit's fake node.
#[cfg(target_arch = "wasm32")]
wasm_cni_guest_kit::export_node!(HostGw);

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_cni_guest_kit::fake::{request, FakeNode, CLUSTER_DUAL, CONF};

    /// This node (10.0.0.3) with its uplink's own routes: the default route, and one
    /// outside the pod network, which no sync may touch.
    fn node(peers: Vec<Peer>) -> FakeNode {
        let mut n = FakeNode::in_cluster(peers);
        for (dst, gw) in [
            ("0.0.0.0/0", "10.0.0.1"),
            ("192.168.7.0/24", "10.0.0.9"),
            // inside the pod network, but via a router outside the host network
            ("200.200.99.0/24", "172.16.0.1"),
        ] {
            n.routes
                .push(("host", dst.into(), Some(gw.into()), Some("eth0".into())));
        }
        n
    }

    #[test]
    fn first_sync_routes_every_peer_of_both_families_via_its_node_ip() {
        let mut n = node(vec![FakeNode::worker(2), FakeNode::worker(3)]);
        let c = reconcile(&mut n, CLUSTER_DUAL).unwrap();
        assert_eq!(
            c,
            Changes {
                added: 4,
                removed: 0,
                skipped: 0
            }
        );
        assert_eq!(
            n.routes_on("eth0"),
            [
                "0.0.0.0/0 via 10.0.0.1",
                "192.168.7.0/24 via 10.0.0.9",
                "200.200.99.0/24 via 172.16.0.1",
                "200.200.2.0/24 via 10.0.0.4",
                "fd00:200:2::/64 via fd00:10::4",
                "200.200.3.0/24 via 10.0.0.5",
                "fd00:200:3::/64 via fd00:10::5",
            ]
        );
        assert!(n
            .changes()
            .contains(&r#"routes.add(host, "200.200.2.0/24" via "10.0.0.4" dev "eth0")"#));
        assert!(n.store.0["node/peers"].starts_with("host-gw v1 "));
    }

    #[test]
    fn a_second_sync_changes_nothing() {
        let mut n = node(vec![FakeNode::worker(2), FakeNode::worker(3)]);
        reconcile(&mut n, CLUSTER_DUAL).unwrap();
        n.calls.clear();
        let c = reconcile(&mut n, CLUSTER_DUAL).unwrap();
        assert_eq!(c, Changes::default());
        let state = n.store.0["node/peers"].clone();
        assert_eq!(
            n.changes(),
            [format!("store.put(\"node/peers\", {state:?})").as_str()]
        );
    }

    #[test]
    fn a_departed_peer_loses_exactly_its_routes() {
        let mut n = node(vec![FakeNode::worker(2), FakeNode::worker(3)]);
        reconcile(&mut n, CLUSTER_DUAL).unwrap();
        n.calls.clear();
        n.peers = vec![FakeNode::worker(3)];
        let c = reconcile(&mut n, CLUSTER_DUAL).unwrap();
        assert_eq!(
            c,
            Changes {
                added: 0,
                removed: 2,
                skipped: 0
            }
        );
        let changes = n.changes();
        assert_eq!(
            changes[..2],
            [
                r#"routes.remove(host, "200.200.2.0/24" via "10.0.0.4" dev "eth0")"#,
                r#"routes.remove(host, "fd00:200:2::/64" via "fd00:10::4" dev "eth0")"#,
            ]
        );
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(
            n.routes_on("eth0"),
            [
                "0.0.0.0/0 via 10.0.0.1",
                "192.168.7.0/24 via 10.0.0.9",
                "200.200.99.0/24 via 172.16.0.1",
                "200.200.3.0/24 via 10.0.0.5",
                "fd00:200:3::/64 via fd00:10::5",
            ]
        );
    }

    #[test]
    fn a_new_peer_and_a_moved_peer_get_their_routes() {
        let mut n = node(vec![FakeNode::worker(2)]);
        reconcile(&mut n, CLUSTER_DUAL).unwrap();
        n.calls.clear();
        // worker-2 moved to another IP; worker-3 joined
        let mut moved = FakeNode::worker(2);
        moved.ips = vec!["10.0.0.14".into(), "fd00:10::14".into()];
        n.peers = vec![moved, FakeNode::worker(3)];
        let c = reconcile(&mut n, CLUSTER_DUAL).unwrap();
        assert_eq!(
            c,
            Changes {
                added: 4,
                removed: 2,
                skipped: 0
            }
        );
        assert_eq!(
            n.routes_on("eth0")[3..],
            [
                "200.200.2.0/24 via 10.0.0.14",
                "fd00:200:2::/64 via fd00:10::14",
                "200.200.3.0/24 via 10.0.0.5",
                "fd00:200:3::/64 via fd00:10::5",
            ]
        );
    }

    #[test]
    fn ipv4_only_nodes_and_peers_without_an_ipv6_ip() {
        let mut n = node(vec![FakeNode::peer(
            "old",
            &["10.0.0.6"],
            &["200.200.6.0/24", "fd00:200:6::/64"],
        )]);
        reconcile(&mut n, CLUSTER_DUAL).unwrap();
        assert_eq!(n.routes_on("eth0")[3..], ["200.200.6.0/24 via 10.0.0.6"]);
        assert!(n.log.contains(
            &"peer \"old\": no IPv6 node IP to route fd00:200:6::/64 through: skipped".into()
        ));
        // a node without an IPv6 IP routes no IPv6 CIDR
        let mut n = node(vec![FakeNode::worker(2)]);
        n.this_node.as_mut().unwrap().ips.truncate(1);
        reconcile(&mut n, CLUSTER_DUAL).unwrap();
        assert_eq!(n.routes_on("eth0")[3..], ["200.200.2.0/24 via 10.0.0.4"]);
        assert!(n.log.contains(
            &"this node has no IPv6 IP: peer \"worker-2\"'s fd00:200:2::/64 is not routed".into()
        ));
        // an IPv4-only network routes no IPv6 CIDR (outside its pod network)
        let mut n = node(vec![FakeNode::worker(2)]);
        reconcile(&mut n, CONF).unwrap();
        assert_eq!(n.routes_on("eth0")[3..], ["200.200.2.0/24 via 10.0.0.4"]);
    }

    #[test]
    fn add_syncs_lazily_then_wires_the_pod_as_the_default_policy_does() {
        let mut n = node(vec![FakeNode::worker(2), FakeNode::worker(3)]);
        let r = add(&mut n, &request("a", CLUSTER_DUAL)).unwrap();
        assert_eq!(r.ips[0].address, "200.200.1.2/24");
        assert_eq!(n.routes_on("eth0").len(), 7);
        assert!(n.links.contains_key(&("host", "cni0".to_string())));
        // the next pod: one store read, no route calls
        n.next_pod();
        add(&mut n, &request("b", CLUSTER_DUAL)).unwrap();
        let calls = n.calls.clone();
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("routes.list(host") || c.starts_with("routes.add(host")),
            "{calls:?}"
        );
        assert!(calls.contains(&r#"store.get("node/peers")"#.to_string()));
        // a peer left: the next ADD removes its routes
        n.peers = vec![FakeNode::worker(3)];
        n.next_pod();
        add(&mut n, &request("c", CLUSTER_DUAL)).unwrap();
        assert_eq!(n.routes_on("eth0").len(), 5);
    }

    #[test]
    fn a_failed_route_fails_add_and_records_no_state() {
        let mut n = node(vec![FakeNode::worker(2)]);
        n.fail.insert("routes.add");
        let e = add(&mut n, &request("a", CLUSTER_DUAL)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (HOST_FAILED, "add peer route: routes.add: denied")
        );
        assert!(!n.store.0.contains_key("node/peers"));
        let e = reconcile(&mut n, CLUSTER_DUAL).unwrap_err();
        assert_eq!(e, "add peer route: routes.add: denied");
        assert_eq!(
            reconcile(&mut n, "{}").unwrap_err(),
            "missing field \"myHostNetwork\" (a CIDR)"
        );
    }

    #[test]
    fn a_peer_off_this_nodes_segment_fails_reconcile_but_not_a_pods_add() {
        // GCP: every VM has a /32, so no peer's IP is on a connected network
        let mut n = FakeNode::default();
        n.cluster("eth0", 1460, &["10.0.0.3/32"], "wcni.1");
        n.peers = vec![FakeNode::worker(2)];
        let e = reconcile(&mut n, CONF).unwrap_err();
        assert!(
            e.contains("200.200.2.0/24 via 10.0.0.4 on eth0 refused by the kernel"),
            "{e}"
        );
        assert!(
            e.contains("host-gw needs every node on this node's network segment"),
            "{e}"
        );
        assert!(!n.store.0.contains_key("node/peers"));
        // a pod still gets its network; the state is not recorded, so the next ADD retries
        add(&mut n, &request("c1", CONF)).unwrap();
        assert!(!n.store.0.contains_key("node/peers"));
        assert!(n
            .routes_on("eth0")
            .iter()
            .all(|r| !r.starts_with("200.200.2.0/24")));
    }
}
