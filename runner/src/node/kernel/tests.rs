//! Host functions against real netlink, in throwaway namespaces (needs root).
//!
//! Each test makes a node and a pod namespace with `ip netns add`, moves its own thread
//! into the node namespace (setns is per thread, and cargo runs each test on its own
//! thread), and drives `Netlink` / `Gate` directly. Namespaces are removed by a
//! guard, also when the test fails.

use super::store::Store;
use super::Kernel;
use crate::calllog::CallLog;
use crate::gate::grants::{Grants, Scope};
use crate::gate::Gate;
use crate::node::{
    Family, FdbEntry, NeighborEntry, Node, Ns, OpKind, RouteSpec, SysctlKey, VxlanSpec,
};
use ipnetwork::IpNetwork;
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::process::Command;

struct Netns {
    names: Vec<String>,
    root: File,
}

impl Netns {
    /// Node and pod namespaces for `tag`; this thread enters the node namespace.
    fn new(tag: &str) -> Netns {
        let pid = std::process::id();
        let names = vec![format!("rt{pid}{tag}-node"), format!("rt{pid}{tag}-pod")];
        for n in &names {
            let ok = Command::new("ip")
                .args(["netns", "add", n])
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip netns add {n} (the netlink tests need root)");
        }
        let root = File::open("/proc/thread-self/ns/net").unwrap();
        let node = File::open(format!("/run/netns/{}", names[0])).unwrap();
        setns(&node, CloneFlags::CLONE_NEWNET).unwrap();
        Netns { names, root }
    }

    fn pod_path(&self) -> std::path::PathBuf {
        format!("/run/netns/{}", self.names[1]).into()
    }

    fn ip(&self, which: usize, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.names[which])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = setns(&self.root, CloneFlags::CLONE_NEWNET);
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

#[test]
fn links_addresses_routes_in_both_namespaces() {
    let ns = Netns::new("a");
    let dir = tempfile::tempdir().unwrap();
    let mut nl = Kernel::new(Some(ns.pod_path()), Store::open(dir.path()).unwrap()).unwrap();

    assert_eq!(nl.get_link(Ns::Host, "cni0").unwrap(), None);
    let br = nl.create_bridge("cni0", Some(1400)).unwrap();
    assert_eq!((br.name.as_str(), br.mtu, br.up), ("cni0", 1400, false));
    assert_eq!(
        nl.create_bridge("cni0", None).unwrap_err().kind,
        OpKind::AlreadyExists
    );

    let (host, pod) = nl.create_veth("wctest0", "eth0", None, None).unwrap();
    assert_eq!(host.name, "wctest0");
    assert_eq!(pod.name, "eth0");
    assert_eq!(pod.mac.len(), 17);
    // the peer was created in the pod namespace, never in the node's
    assert!(ns.ip(1, &["link", "show", "eth0"]).contains("eth0"));
    assert!(!ns.ip(0, &["-o", "link"]).contains(" eth0"));
    // a requested MAC is the container end's from its creation
    let mac = "0a:58:c8:c8:01:09".parse().unwrap();
    let (_, pod1) = nl.create_veth("wctest1", "eth1", None, Some(mac)).unwrap();
    assert_eq!(pod1.mac, "0a:58:c8:c8:01:09");
    assert!(ns
        .ip(1, &["link", "show", "eth1"])
        .contains("0a:58:c8:c8:01:09"));
    nl.delete_link(Ns::Host, "wctest1").unwrap();

    nl.set_master("wctest0", "cni0").unwrap();
    assert_eq!(
        nl.get_link(Ns::Host, "wctest0").unwrap().unwrap().master,
        Some(br.index)
    );
    nl.set_up(Ns::Host, "wctest0").unwrap();
    nl.set_up(Ns::Host, "cni0").unwrap();
    nl.set_up(Ns::Container, "eth0").unwrap();
    nl.set_mtu(Ns::Container, "eth0", 1300).unwrap();
    assert_eq!(
        nl.get_link(Ns::Container, "eth0").unwrap().unwrap().mtu,
        1300
    );

    nl.add_address(Ns::Host, "cni0", net("200.200.1.1/24"))
        .unwrap();
    nl.add_address(Ns::Container, "eth0", net("200.200.1.2/24"))
        .unwrap();
    assert_eq!(
        nl.add_address(Ns::Container, "eth0", net("200.200.1.2/24"))
            .unwrap_err()
            .kind,
        OpKind::AlreadyExists
    );
    assert_eq!(
        nl.list_addresses(Ns::Container, "eth0").unwrap(),
        vec![net("200.200.1.2/24")]
    );

    let default = RouteSpec {
        destination: net("0.0.0.0/0"),
        gateway: Some("200.200.1.1".parse().unwrap()),
        link: Some("eth0".into()),
    };
    nl.add_route(Ns::Container, &default).unwrap();
    let routes = nl.list_routes(Ns::Container, Some("eth0")).unwrap();
    assert!(routes.contains(&default), "{routes:?}");
    assert!(ns
        .ip(1, &["route"])
        .contains("default via 200.200.1.1 dev eth0"));

    nl.remove_route(Ns::Container, &default).unwrap();
    assert_eq!(
        nl.remove_route(Ns::Container, &default).unwrap_err().kind,
        OpKind::NotFound
    );
    nl.remove_address(Ns::Container, "eth0", net("200.200.1.2/24"))
        .unwrap();
    assert_eq!(
        nl.remove_address(Ns::Container, "eth0", net("200.200.1.2/24"))
            .unwrap_err()
            .kind,
        OpKind::NotFound
    );

    nl.delete_link(Ns::Host, "wctest0").unwrap();
    assert_eq!(
        nl.get_link(Ns::Container, "eth0").unwrap(),
        None,
        "the peer goes with it"
    );
    assert_eq!(
        nl.delete_link(Ns::Host, "wctest0").unwrap_err().kind,
        OpKind::NotFound
    );
}

#[test]
fn a_gone_container_namespace_is_not_found_not_a_crash() {
    let ns = Netns::new("b");
    let dir = tempfile::tempdir().unwrap();
    let mut nl = Kernel::new(
        Some("/run/netns/does-not-exist".into()),
        Store::open(dir.path()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        nl.get_link(Ns::Container, "eth0").unwrap_err().kind,
        OpKind::NotFound
    );
    // and the host side still works
    assert_eq!(nl.get_link(Ns::Host, "cni0").unwrap(), None);
    drop(ns);
}

fn gate(ns: &Netns, dir: &std::path::Path, journal: bool) -> Gate {
    let grants = Grants::new(
        Scope::Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        },
        true,
        "cni0",
        "wc",
        vec![net("200.200.0.0/16"), net("fd00:200::/40")],
    );
    Gate::new(
        grants,
        Box::new(Kernel::new(Some(ns.pod_path()), Store::open(dir).unwrap()).unwrap()),
        journal.then(Default::default),
        CallLog::open(&dir.join("log"), "ADD", "c1", 1 << 20),
        "wasm_cni_test".into(),
    )
}

#[test]
fn the_gate_denies_before_touching_and_rolls_back_what_it_did() {
    let ns = Netns::new("c");
    let dir = tempfile::tempdir().unwrap();
    // a node uplink with the default route, like eth0 on a real node
    Command::new("ip")
        .args([
            "link",
            "add",
            "uplink0",
            "type",
            "veth",
            "peer",
            "name",
            "upstream0",
        ])
        .status()
        .unwrap();
    Command::new("ip")
        .args(["addr", "add", "10.0.0.3/16", "dev", "uplink0"])
        .status()
        .unwrap();
    Command::new("ip")
        .args(["link", "set", "uplink0", "up"])
        .status()
        .unwrap();
    Command::new("ip")
        .args(["route", "add", "default", "via", "10.0.0.1"])
        .status()
        .unwrap();
    // an earlier call set the node up: its bridge is not this call's to delete
    let mut earlier = gate(&ns, dir.path(), false);
    earlier.create_bridge("cni0", None).unwrap();
    earlier
        .address_add(Ns::Host, "cni0", "200.200.1.1/24")
        .unwrap();
    drop(earlier);
    // operstate follows carrier; the admin flags are what a call changes
    // IPv6 on the node too: an address on the uplink, forwarding off but on for one
    // link, the network's ip6 table with a rule
    Command::new("ip")
        .args(["addr", "add", "fd00:10::3/64", "dev", "uplink0", "nodad"])
        .status()
        .unwrap();
    std::fs::write("/proc/sys/net/ipv6/conf/uplink0/forwarding", "1").unwrap();
    let mut earlier = gate(&ns, dir.path(), false);
    earlier.allow_forward("fd00:200:1::/64").unwrap();
    drop(earlier);
    // operstate follows carrier; the admin flags are what a call changes; the
    // kernel's own link-locals (fe80::) come and go with carrier, not with the call
    let snap = || {
        let v6: String = (ns.ip(0, &["-6", "-o", "addr"]) + &ns.ip(0, &["-6", "route"]))
            .lines()
            .filter(|l| !l.contains("fe80::"))
            .map(|l| l.replace(" tentative", "") + "\n")
            .collect();
        let sysctl = |p: &str| std::fs::read_to_string(p).unwrap();
        let nft = Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap()
            .stdout;
        ns.ip(0, &["-o", "link"])
            .replace(" state UNKNOWN", "")
            .replace(" state DOWN", "")
            + &ns.ip(0, &["-4", "-o", "addr"])
            + &ns.ip(0, &["route"])
            + &v6
            + &sysctl("/proc/sys/net/ipv6/conf/all/forwarding")
            + &sysctl("/proc/sys/net/ipv6/conf/uplink0/forwarding")
            + &sysctl("/proc/sys/net/ipv6/conf/default/forwarding")
            + &String::from_utf8_lossy(&nft)
    };
    let before = snap();
    assert!(before.contains("table ip6 wasm_cni_test"), "{before}");

    let mut sb = gate(&ns, dir.path(), true);
    let own = sb.grants.host_link().unwrap().to_string();
    sb.create_veth(&own, "eth0", None, None).unwrap();
    sb.set_master(&own, "cni0").unwrap();
    sb.address_add(Ns::Container, "eth0", "200.200.1.2/24")
        .unwrap();
    sb.set_up(Ns::Container, "eth0").unwrap();
    sb.route_add(
        Ns::Container,
        "0.0.0.0/0",
        Some("200.200.1.1"),
        Some("eth0"),
    )
    .unwrap();
    sb.store_put("ip/200.200.1.2", "c1 eth0").unwrap();
    // and IPv6: address (without DAD), default route, forwarding, firewall
    sb.sysctl_set(Ns::Container, "net.ipv6.conf.eth0.accept_dad", "0")
        .unwrap();
    sb.address_add(Ns::Container, "eth0", "fd00:200:1::2/64")
        .unwrap();
    sb.set_up(Ns::Host, &own).unwrap();
    sb.address_add(Ns::Host, &own, "fd00:200:1::1/128").unwrap();
    sb.route_add(Ns::Host, "fd00:200:1::2/128", None, Some(&own))
        .unwrap();
    sb.route_add(Ns::Container, "::/0", Some("fd00:200:1::1"), Some("eth0"))
        .unwrap_or_else(|e| panic!("{e}"));
    sb.sysctl_set(Ns::Host, "net.ipv6.conf.all.forwarding", "1")
        .unwrap();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/uplink0/forwarding").unwrap(),
        "1\n"
    );
    sb.allow_forward("fd00:200:2::/64").unwrap();
    sb.masquerade("fd00:200:1::/64", &["fd00::/8".into()])
        .unwrap();
    let during = snap();
    assert!(during.contains("fwd_fd00_200_2___64"), "{during}");
    assert!(during.contains("masquerade"), "{during}");

    // every forbidden operation is refused, typed, and changes nothing
    for e in [
        sb.delete_link(Ns::Host, "uplink0").unwrap_err(),
        sb.set_up(Ns::Host, "uplink0").unwrap_err(),
        sb.address_add(Ns::Host, "uplink0", "200.200.1.9/24")
            .unwrap_err(),
        sb.delete_link(Ns::Host, "lo").unwrap_err(),
        sb.delete_link(Ns::Host, "cni0").unwrap_err(),
        sb.route_add(Ns::Host, "0.0.0.0/0", Some("10.0.0.9"), None)
            .unwrap_err(),
        sb.route_add(Ns::Container, "8.8.8.0/24", Some("200.200.1.1"), None)
            .unwrap_err(),
        sb.sysctl_set(Ns::Host, "kernel.panic", "1").unwrap_err(),
        sb.store_put("../other/x", "y").unwrap_err(),
        sb.masquerade("10.0.0.0/16", &[]).unwrap_err(),
        sb.create_veth("wcother", "eth1", None, None).unwrap_err(),
        sb.address_add(Ns::Host, "uplink0", "fd00:200:1::9/64")
            .unwrap_err(),
        sb.address_add(Ns::Host, "cni0", "fe80::1/64").unwrap_err(),
        sb.route_add(Ns::Host, "::/0", Some("fd00:10::1"), Some(&own))
            .unwrap_err(),
        sb.route_add(Ns::Container, "fd00:9::/64", Some("fd00:200:1::1"), None)
            .unwrap_err(),
        sb.sysctl_set(Ns::Host, "net.ipv6.conf.all.forwarding", "0")
            .unwrap_err(),
        sb.sysctl_set(Ns::Host, "net.ipv6.conf.uplink0.accept_ra", "0")
            .unwrap_err(),
        sb.masquerade("fd00:10::/64", &[]).unwrap_err(),
    ] {
        assert_eq!(e.kind, OpKind::Denied, "{e}");
    }
    assert!(ns.ip(0, &["link", "show", "uplink0"]).contains("uplink0"));
    assert!(std::fs::read_to_string(dir.path().join("log"))
        .unwrap()
        .contains("denied delete link uplink0"));

    // the failed ADD is undone in reverse: veth, address, route, store key
    let (undone, failures) = sb.rollback();
    assert!(undone >= 4, "{undone}");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(before, snap());
    assert_eq!(
        ns.ip(1, &["-o", "link"]).lines().count(),
        1,
        "only lo left in the pod"
    );
    assert!(Store::open(dir.path())
        .unwrap()
        .list("")
        .unwrap()
        .is_empty());
}

/// `wasm-cni simulate`'s model must answer like the kernel for what it covers: the same
/// sequence of operations, on a real node and on the model, gives the same outcome
/// (ok, which error kind, some/none) at every step.
#[test]
fn the_simulator_answers_like_the_kernel() {
    use crate::node::model::{Model, World};
    let ns = Netns::new("s");
    let dir = tempfile::tempdir().unwrap();
    let mut kernel = Kernel::new(Some(ns.pod_path()), Store::open(dir.path()).unwrap()).unwrap();
    let mut world = World::new(net("10.0.0.2/24"), "10.0.0.1".parse().unwrap());
    world.ensure_pod_ns("pod:c1");
    let mut model = Model {
        world,
        container: Some("pod:c1".into()),
    };
    fn route(dst: &str, gw: Option<&str>, link: Option<&str>) -> RouteSpec {
        RouteSpec {
            destination: dst.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            link: link.map(str::to_string),
        }
    }
    fn outcome<T>(r: Result<T, crate::node::OpError>, some: impl Fn(&T) -> bool) -> String {
        match r {
            Ok(v) if some(&v) => "ok some".into(),
            Ok(_) => "ok".into(),
            Err(e) => format!("{:?}", e.kind),
        }
    }
    // a list as comparable text: sorted, the orders the kernel does not promise
    fn listed<T: std::fmt::Debug>(r: Result<Vec<T>, crate::node::OpError>) -> String {
        match r {
            Ok(v) => {
                let mut t: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
                t.sort();
                t.join(", ")
            }
            Err(e) => format!("{:?}", e.kind),
        }
    }
    use crate::node::fixtures::{fdb, neigh, vxlan};
    const VX: &str = "wcni.1";
    const MAC_A: &str = "0e:cc:0a:00:00:04";
    const MAC_B: &str = "0e:cc:0a:00:00:06";
    type Step = (&'static str, fn(&mut dyn Node) -> String);
    let steps: Vec<Step> = vec![
        ("create bridge", |n| {
            outcome(n.create_bridge("cni0", None), |_| true)
        }),
        ("create bridge again", |n| {
            outcome(n.create_bridge("cni0", None), |_| true)
        }),
        ("set up a missing link", |n| {
            outcome(n.set_up(Ns::Host, "nope"), |_| false)
        }),
        ("create veth", |n| {
            outcome(n.create_veth("wcx", "eth0", None, None), |_| true)
        }),
        ("create veth, host name taken", |n| {
            outcome(n.create_veth("wcx", "eth1", None, None), |_| true)
        }),
        ("attach to bridge", |n| {
            outcome(n.set_master("wcx", "cni0"), |_| false)
        }),
        ("attach a missing link", |n| {
            outcome(n.set_master("nope", "cni0"), |_| false)
        }),
        ("address", |n| {
            outcome(
                n.add_address(Ns::Container, "eth0", net("200.200.1.2/24")),
                |_| false,
            )
        }),
        ("address again", |n| {
            outcome(
                n.add_address(Ns::Container, "eth0", net("200.200.1.2/24")),
                |_| false,
            )
        }),
        ("address on a missing link", |n| {
            outcome(
                n.add_address(Ns::Container, "nope", net("200.200.1.2/24")),
                |_| false,
            )
        }),
        ("default route, link down", |n| {
            let r = route("0.0.0.0/0", Some("200.200.1.1"), Some("eth0"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        ("link up", |n| {
            outcome(n.set_up(Ns::Container, "eth0"), |_| false)
        }),
        ("default route", |n| {
            let r = route("0.0.0.0/0", Some("200.200.1.1"), Some("eth0"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        ("default route again", |n| {
            let r = route("0.0.0.0/0", Some("200.200.1.1"), Some("eth0"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        ("route via an unreachable gateway", |n| {
            let r = route("10.9.0.0/16", Some("192.168.7.1"), Some("eth0"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        ("host route on a down link", |n| {
            let r = route("200.200.1.9/32", None, Some("wcx"));
            outcome(n.add_route(Ns::Host, &r), |_| false)
        }),
        ("host link up", |n| {
            outcome(n.set_up(Ns::Host, "wcx"), |_| false)
        }),
        ("host route", |n| {
            let r = route("200.200.1.9/32", None, Some("wcx"));
            outcome(n.add_route(Ns::Host, &r), |_| false)
        }),
        ("gateway /32 on the host end", |n| {
            outcome(
                n.add_address(Ns::Host, "wcx", net("200.200.1.1/32")),
                |_| false,
            )
        }),
        ("link route to a gateway, then a route via it", |n| {
            let a = n.add_route(Ns::Container, &route("200.200.9.1/32", None, Some("eth0")));
            let b = n.add_route(
                Ns::Container,
                &route("10.8.0.0/16", Some("200.200.9.1"), Some("eth0")),
            );
            format!("{} / {}", outcome(a, |_| false), outcome(b, |_| false))
        }),
        // IPv6, as the same calls
        ("IPv6 address", |n| {
            outcome(
                n.add_address(Ns::Container, "eth0", net("fd00:200:1::2/64")),
                |_| false,
            )
        }),
        ("IPv6 address again", |n| {
            outcome(
                n.add_address(Ns::Container, "eth0", net("fd00:200:1::2/64")),
                |_| false,
            )
        }),
        ("IPv6 address again, another prefix length", |n| {
            outcome(
                n.add_address(Ns::Container, "eth0", net("fd00:200:1::2/80")),
                |_| false,
            )
        }),
        ("IPv6 route via an unreachable gateway", |n| {
            let r = route("fd00:9::/64", Some("fd00:7::1"), Some("eth0"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        ("IPv6 link route to a gateway, then a route via it", |n| {
            let a = n.add_route(
                Ns::Container,
                &route("fd00:200:9::1/128", None, Some("eth0")),
            );
            let b = n.add_route(
                Ns::Container,
                &route("fd00:8::/64", Some("fd00:200:9::1"), Some("eth0")),
            );
            format!("{} / {}", outcome(a, |_| false), outcome(b, |_| false))
        }),
        ("IPv6 default route in the container", |n| {
            let r = route("::/0", Some("fd00:200:1::1"), Some("eth0"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        ("IPv6 default route again", |n| {
            let r = route("::/0", Some("fd00:200:1::1"), Some("eth0"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        ("IPv6 route via an IPv4 gateway", |n| {
            let r = route("fd00:6::/64", Some("200.200.1.1"), Some("eth0"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        ("IPv6 route on a missing link", |n| {
            let r = route("fd00:6::/64", None, Some("nope"));
            outcome(n.add_route(Ns::Container, &r), |_| false)
        }),
        // the kernel has given eth0 its fe80:: link-local by now (the loop waits)
        ("addresses, without the kernel's link-local", |n| {
            listed(n.list_addresses(Ns::Container, "eth0"))
        }),
        ("routes, without the kernel's own IPv6 ones", |n| {
            listed(n.list_routes(Ns::Container, Some("eth0")))
        }),
        ("IPv6 forwarding switch, copied into every link", |n| {
            let all = SysctlKey::forwarding_switch(Family::V6);
            let set = outcome(n.sysctl_set(Ns::Host, &all, "1"), |_| false);
            let link = SysctlKey::per_link(Family::V6, "cni0", "forwarding");
            let v4 = SysctlKey::per_link(Family::V4, "cni0", "forwarding");
            format!(
                "{set} / {:?} / ipv4 {:?}",
                n.sysctl_get(Ns::Host, &link).map_err(|e| e.kind),
                n.sysctl_get(Ns::Host, &v4).map_err(|e| e.kind)
            )
        }),
        ("IPv6 per-link defaults", |n| {
            let get = |n: &mut dyn Node, leaf: &str| {
                let k = SysctlKey::per_link(Family::V6, "eth0", leaf);
                n.sysctl_get(Ns::Container, &k).map_err(|e| e.kind)
            };
            format!(
                "{:?} {:?} {:?}",
                get(n, "accept_ra"),
                get(n, "accept_dad"),
                get(n, "disable_ipv6")
            )
        }),
        (
            "disable_ipv6 drops the link's IPv6 addresses and routes",
            |n| {
                let k = SysctlKey::per_link(Family::V6, "eth0", "disable_ipv6");
                let set = outcome(n.sysctl_set(Ns::Container, &k, "1"), |_| false);
                format!(
                    "{set} / {} / {}",
                    listed(n.list_addresses(Ns::Container, "eth0")),
                    listed(n.list_routes(Ns::Container, Some("eth0")))
                )
            },
        ),
        ("IPv6 address with IPv6 disabled", |n| {
            outcome(
                n.add_address(Ns::Container, "eth0", net("fd00:200:1::3/64")),
                |_| false,
            )
        }),
        ("remove a missing route", |n| {
            outcome(
                n.remove_route(Ns::Container, &route("10.1.0.0/16", None, None)),
                |_| false,
            )
        }),
        ("remove a missing address", |n| {
            let a = net("200.200.1.7/24");
            outcome(n.remove_address(Ns::Container, "eth0", a), |_| false)
        }),
        ("delete the host end", |n| {
            outcome(n.delete_link(Ns::Host, "wcx"), |_| false)
        }),
        ("the pod end went with it", |n| {
            outcome(n.get_link(Ns::Container, "eth0"), |l| l.is_some())
        }),
        ("its routes went too", |n| {
            outcome(n.list_routes(Ns::Container, None), |r| !r.is_empty())
        }),
        ("delete it again", |n| {
            outcome(n.delete_link(Ns::Host, "wcx"), |_| false)
        }),
        ("the bridge is still there", |n| {
            outcome(n.get_link(Ns::Host, "cni0"), |l| l.is_some())
        }),
        // the VXLAN link, its FDB and neighbours
        ("create the VXLAN link", |n| {
            match n.create_vxlan(&vxlan(VX, 1, "10.0.0.2", Some("0e:cc:0a:00:00:02"))) {
                Ok(l) => format!(
                    "mtu {} up {} mac {} master {:?}",
                    l.mtu, l.up, l.mac, l.master
                ),
                Err(e) => format!("{:?}", e.kind),
            }
        }),
        ("create it again", |n| {
            outcome(n.create_vxlan(&vxlan(VX, 1, "10.0.0.2", None)), |_| true)
        }),
        ("a VXLAN link with a taken name", |n| {
            outcome(n.create_vxlan(&vxlan("cni0", 2, "10.0.0.2", None)), |_| {
                true
            })
        }),
        ("a second VXLAN link with the same VNI and port", |n| {
            outcome(n.create_vxlan(&vxlan("wcvx2", 1, "10.0.0.9", None)), |_| {
                true
            })
        }),
        ("a VNI over 24 bits", |n| {
            outcome(
                n.create_vxlan(&vxlan("wcvx3", 1 << 24, "10.0.0.2", None)),
                |_| true,
            )
        }),
        ("an IPv6 VXLAN link: the IPv6 default MTU", |n| {
            let mtu = n
                .create_vxlan(&vxlan("wcvx6", 1, "fd00:10::2", None))
                .map(|l| l.mtu);
            let del = outcome(n.delete_link(Ns::Host, "wcvx6"), |_| false);
            format!("{:?} / {del}", mtu.map_err(|e| e.kind))
        }),
        ("the VXLAN link takes no router advertisements", |n| {
            let k = SysctlKey::per_link(Family::V6, VX, "accept_ra");
            format!("{:?}", n.sysctl_get(Ns::Host, &k).map_err(|e| e.kind))
        }),
        ("FDB entry", |n| {
            outcome(n.add_fdb(VX, &fdb(MAC_A, "10.0.0.4")), |_| false)
        }),
        ("FDB entry again", |n| {
            outcome(n.add_fdb(VX, &fdb(MAC_A, "10.0.0.4")), |_| false)
        }),
        ("FDB entry, its MAC with another remote", |n| {
            outcome(n.add_fdb(VX, &fdb(MAC_A, "10.0.0.5")), |_| false)
        }),
        ("FDB entry, an IPv6 remote on an IPv4 link", |n| {
            outcome(n.add_fdb(VX, &fdb(MAC_B, "fd00:10::6")), |_| false)
        }),
        ("FDB entry on a missing link", |n| {
            outcome(n.add_fdb("nope", &fdb(MAC_B, "10.0.0.6")), |_| false)
        }),
        ("another FDB entry, then the list", |n| {
            let a = outcome(n.add_fdb(VX, &fdb(MAC_B, "10.0.0.6")), |_| false);
            format!("{a} / {}", listed(n.list_fdb(VX)))
        }),
        ("remove an FDB entry with the wrong remote", |n| {
            outcome(n.remove_fdb(VX, &fdb(MAC_A, "10.0.0.9")), |_| false)
        }),
        ("remove an FDB entry, twice", |n| {
            let a = outcome(n.remove_fdb(VX, &fdb(MAC_A, "10.0.0.4")), |_| false);
            let b = outcome(n.remove_fdb(VX, &fdb(MAC_A, "10.0.0.4")), |_| false);
            format!("{a} / {b} / {}", listed(n.list_fdb(VX)))
        }),
        ("neighbours of both families", |n| {
            let a = outcome(n.add_neighbor(VX, &neigh("200.200.2.0", MAC_A)), |_| false);
            let b = outcome(
                n.add_neighbor(VX, &neigh("fd00:200:200:2::", MAC_A)),
                |_| false,
            );
            format!("{a} / {b} / {:?}", n.list_neighbors(VX).map_err(|e| e.kind))
        }),
        ("a neighbour again, with the same or another MAC", |n| {
            let a = outcome(n.add_neighbor(VX, &neigh("200.200.2.0", MAC_A)), |_| false);
            let b = outcome(n.add_neighbor(VX, &neigh("200.200.2.0", MAC_B)), |_| false);
            format!("{a} / {b}")
        }),
        ("a neighbour on a missing link", |n| {
            outcome(n.add_neighbor("nope", &neigh("200.200.2.0", MAC_A)), |_| {
                false
            })
        }),
        ("remove a missing neighbour", |n| {
            let a = "200.200.9.0".parse().unwrap();
            outcome(n.remove_neighbor(VX, a), |_| false)
        }),
        ("remove a neighbour: the entry as it was", |n| {
            let a = "fd00:200:200:2::".parse().unwrap();
            format!("{:?}", n.remove_neighbor(VX, a).map_err(|e| e.kind))
        }),
        (
            "a scope-link route to the peer's gateway, its podCIDR via it",
            |n| {
                let up = outcome(n.set_up(Ns::Host, VX), |_| false);
                let addr = outcome(n.add_address(Ns::Host, VX, net("200.200.1.0/32")), |_| {
                    false
                });
                let a = n.add_route(Ns::Host, &route("200.200.2.0/32", None, Some(VX)));
                let b = n.add_route(
                    Ns::Host,
                    &route("200.200.2.0/24", Some("200.200.2.0"), Some(VX)),
                );
                format!(
                    "{up} / {addr} / {} / {} / {}",
                    outcome(a, |_| false),
                    outcome(b, |_| false),
                    listed(n.list_routes(Ns::Host, Some(VX)))
                )
            },
        ),
        ("the link down drops its neighbours, not its FDB", |n| {
            let a = outcome(
                n.add_neighbor(VX, &neigh("fd00:200:200:2::", MAC_A)),
                |_| false,
            );
            let down = outcome(n.set_down(Ns::Host, VX), |_| false);
            format!(
                "{a} / {down} / {} / {}",
                listed(n.list_neighbors(VX)),
                listed(n.list_fdb(VX))
            )
        }),
        ("its last IPv4 address gone, its IPv4 neighbours go", |n| {
            let a = outcome(n.add_neighbor(VX, &neigh("200.200.2.0", MAC_A)), |_| false);
            let b = outcome(
                n.add_neighbor(VX, &neigh("fd00:200:200:2::", MAC_A)),
                |_| false,
            );
            let rm = n.remove_address(Ns::Host, VX, net("200.200.1.0/32"));
            format!(
                "{a} / {b} / {} / {}",
                outcome(rm, |_| false),
                listed(n.list_neighbors(VX))
            )
        }),
        ("an MTU too small for IPv6 drops the IPv6 neighbours", |n| {
            let a = outcome(n.add_neighbor(VX, &neigh("200.200.2.0", MAC_A)), |_| false);
            let mtu = outcome(n.set_mtu(Ns::Host, VX, 1200), |_| false);
            let b = outcome(
                n.add_neighbor(VX, &neigh("fd00:200:200:3::", MAC_A)),
                |_| false,
            );
            let back = outcome(n.set_mtu(Ns::Host, VX, 1450), |_| false);
            format!(
                "{a} / {mtu} / {b} / {back} / {}",
                listed(n.list_neighbors(VX))
            )
        }),
        (
            "deleting the VXLAN link takes its entries and routes",
            |n| {
                let up = outcome(n.set_up(Ns::Host, VX), |_| false);
                let r = outcome(
                    n.add_route(Ns::Host, &route("200.200.3.0/32", None, Some(VX))),
                    |_| false,
                );
                let del = outcome(n.delete_link(Ns::Host, VX), |_| false);
                let gone = format!(
                    "{} / {}",
                    listed(n.list_fdb(VX)),
                    listed(n.list_neighbors(VX))
                );
                let again = outcome(n.create_vxlan(&vxlan(VX, 1, "10.0.0.2", None)), |_| true);
                format!(
                    "{up} / {r} / {del} / {gone} / {again} / {} / {} / {}",
                    listed(n.list_fdb(VX)),
                    listed(n.list_neighbors(VX)),
                    listed(n.list_routes(Ns::Host, Some(VX)))
                )
            },
        ),
    ];
    let mut differ = Vec::new();
    for (what, step) in &steps {
        if what.starts_with("addresses, without") {
            // the kernel adds eth0's fe80:: link-local a moment after the link is up
            let mut tries = 0;
            while !ns.ip(1, &["-6", "addr", "show", "eth0"]).contains("fe80::") {
                tries += 1;
                assert!(tries < 100, "no IPv6 link-local on eth0 after 5 s");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let k = step(&mut kernel);
        let m = step(&mut model);
        if k != m {
            differ.push(format!("{what}: kernel {k}, model {m}"));
        }
    }
    assert!(
        differ.is_empty(),
        "the model differs:\n{}",
        differ.join("\n")
    );
}

/// The uplinks are the links of the IPv4 default routes and of the best IPv6 one (an
/// IPv6-only uplink is protected too), found without dumping the IPv6 table.
#[test]
fn uplinks_of_both_families() {
    let ns = Netns::new("u");
    let dir = tempfile::tempdir().unwrap();
    let mut k = Kernel::new(Some(ns.pod_path()), Store::open(dir.path()).unwrap()).unwrap();
    assert!(k.default_route_links(Ns::Host).unwrap().is_empty());
    let ip = |args: &[&str]| {
        let ok = Command::new("ip").args(args).status().unwrap().success();
        assert!(ok, "ip {args:?}");
    };
    ip(&["link", "add", "up4", "type", "veth", "peer", "name", "up4p"]);
    ip(&["link", "add", "up6", "type", "veth", "peer", "name", "up6p"]);
    for l in ["up4", "up4p", "up6", "up6p"] {
        ip(&["link", "set", l, "up"]);
    }
    ip(&["addr", "add", "10.0.0.3/24", "dev", "up4"]);
    ip(&["route", "add", "default", "via", "10.0.0.1"]);
    assert_eq!(k.default_route_links(Ns::Host).unwrap(), vec!["up4"]);
    ip(&["-6", "addr", "add", "fd00:10::3/64", "dev", "up6", "nodad"]);
    ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:10::1",
        "dev",
        "up6",
    ]);
    assert_eq!(k.default_route_links(Ns::Host).unwrap(), vec!["up4", "up6"]);
    // and the listing shows the IPv6 default route, without the kernel's fe80::/64
    let routes = k.list_routes(Ns::Host, Some("up6")).unwrap();
    let mut text: Vec<String> = routes
        .iter()
        .map(|r| format!("{} {:?}", r.destination, r.gateway))
        .collect();
    text.sort();
    assert_eq!(
        text,
        ["::/0 Some(fd00:10::1)", "fd00:10::/64 None"],
        "{routes:?}"
    );
    // one family only, from a dump of that family
    let v4 = k.list_routes_of(Ns::Host, None, Family::V4).unwrap();
    assert!(
        v4.iter().all(|r| r.destination.is_ipv4()) && v4.len() == 2,
        "{v4:?}"
    );
    let v6 = k.list_routes_of(Ns::Host, Some("up6"), Family::V6).unwrap();
    assert_eq!(v6, routes);
    drop(ns);
}

#[test]
fn host_links_the_runner_creates_take_no_router_advertisements() {
    // a pod's router advertisement on a host link would give the node a default route
    // through that pod (CVE-2020-10749): the bridge and the host end of a veth are
    // created with accept_ra 0, the pod's end keeps the kernel's default
    let ns = Netns::new("ra");
    let dir = tempfile::tempdir().unwrap();
    let mut g = gate(&ns, dir.path(), true);
    let own = g.attachment_link("c1", "eth0");
    g.create_bridge("cni0", None).unwrap();
    g.create_veth(&own, "eth0", None, None).unwrap();
    for link in ["cni0", own.as_str()] {
        assert_eq!(
            g.sysctl_get(Ns::Host, &format!("net.ipv6.conf.{link}.accept_ra"))
                .unwrap(),
            "0",
            "{link}"
        );
    }
    assert_eq!(
        g.sysctl_get(Ns::Container, "net.ipv6.conf.eth0.accept_ra")
            .unwrap(),
        "1"
    );
    let (_, failures) = g.rollback();
    assert!(failures.is_empty(), "{failures:?}");
}

/// The VXLAN link, FDB entries and neighbours are what `ip` and `bridge` make and show:
/// the same messages both ways, entries of other links and the kernel's own transient
/// neighbours left out.
#[test]
fn vxlan_fdb_and_neighbours_as_the_tools_see_them() {
    let ns = Netns::new("vx");
    let dir = tempfile::tempdir().unwrap();
    let mut k = Kernel::new(Some(ns.pod_path()), Store::open(dir.path()).unwrap()).unwrap();
    let tool = |cmd: &str, args: &[&str]| {
        let out = Command::new(cmd)
            .arg("-n")
            .arg(&ns.names[0])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let spec = VxlanSpec {
        name: "wcni.1".into(),
        vni: 42,
        port: 4789,
        local: "10.0.0.2".parse().unwrap(),
        mtu: Some(1400),
        mac: Some("0e:cc:0a:00:00:02".parse().unwrap()),
    };
    let l = k.create_vxlan(&spec).unwrap();
    assert_eq!(
        (l.mtu, l.up, l.mac.as_str()),
        (1400, false, "0e:cc:0a:00:00:02")
    );
    let detail = tool("ip", &["-d", "link", "show", "wcni.1"]);
    for want in [
        "vxlan id 42 ",
        "local 10.0.0.2 ",
        "dstport 4789 ",
        "nolearning",
        "mtu 1400 ",
    ] {
        assert!(detail.contains(want), "{want:?} in {detail}");
    }
    assert!(!detail.contains(" dev "), "no lower device: {detail}");

    let a = FdbEntry {
        mac: "0e:cc:0a:00:00:04".parse().unwrap(),
        remote: "10.0.0.4".parse().unwrap(),
    };
    k.add_fdb("wcni.1", &a).unwrap();
    // errors name the link and the entry
    for e in [
        k.add_fdb("nope", &a).unwrap_err(),
        k.add_fdb("wcni.1", &a).unwrap_err(),
    ] {
        assert!(
            e.message.contains("0e:cc:0a:00:00:04") && e.message.contains("10.0.0.4"),
            "{e}"
        );
    }
    assert_eq!(
        tool("bridge", &["fdb", "show", "dev", "wcni.1"]).trim(),
        "0e:cc:0a:00:00:04 dst 10.0.0.4 self permanent"
    );
    // an entry the tool adds is listed as the same entry; a bridge's are not the
    // VXLAN link's
    tool(
        "bridge",
        &[
            "fdb",
            "add",
            "0e:cc:0a:00:00:05",
            "dev",
            "wcni.1",
            "dst",
            "10.0.0.5",
            "self",
            "permanent",
        ],
    );
    k.create_bridge("cni0", None).unwrap();
    let b = FdbEntry {
        mac: "0e:cc:0a:00:00:05".parse().unwrap(),
        remote: "10.0.0.5".parse().unwrap(),
    };
    let mut listed = k.list_fdb("wcni.1").unwrap();
    listed.sort_by_key(|e| e.mac.0);
    assert_eq!(listed, vec![a, b]);
    assert!(k.list_fdb("cni0").unwrap().is_empty());
    k.remove_fdb("wcni.1", &b).unwrap();
    assert!(!tool("bridge", &["fdb", "show", "dev", "wcni.1"]).contains("0e:cc:0a:00:00:05"));

    let n4 = NeighborEntry {
        address: "200.200.2.0".parse().unwrap(),
        mac: a.mac,
    };
    let n6 = NeighborEntry {
        address: "fd00:200:200:2::".parse().unwrap(),
        mac: a.mac,
    };
    k.add_neighbor("wcni.1", &n6).unwrap();
    k.add_neighbor("wcni.1", &n4).unwrap();
    let shown = tool("ip", &["neigh", "show", "dev", "wcni.1"]);
    for want in [
        "200.200.2.0 lladdr 0e:cc:0a:00:00:04 PERMANENT",
        "fd00:200:200:2:: lladdr 0e:cc:0a:00:00:04 PERMANENT",
    ] {
        assert!(shown.contains(want), "{want:?} in {shown}");
    }
    assert_eq!(
        k.list_neighbors("wcni.1").unwrap(),
        vec![n4, n6],
        "IPv4 first"
    );
    // a neighbour of another link is not this link's
    k.add_neighbor("cni0", &n4).unwrap();
    assert_eq!(k.list_neighbors("cni0").unwrap(), vec![n4]);
    assert_eq!(k.list_neighbors("wcni.1").unwrap().len(), 2);
    // an entry the kernel keeps while resolving (here: stale) is not listed, cannot be
    // removed as a policy's, and a permanent one replaces it
    tool(
        "ip",
        &[
            "neigh",
            "add",
            "200.200.3.0",
            "lladdr",
            "0e:cc:0a:00:00:09",
            "dev",
            "wcni.1",
            "nud",
            "stale",
        ],
    );
    assert_eq!(k.list_neighbors("wcni.1").unwrap().len(), 2);
    let addr3 = "200.200.3.0".parse().unwrap();
    assert_eq!(
        k.remove_neighbor("wcni.1", addr3).unwrap_err().kind,
        OpKind::NotFound
    );
    let n3 = NeighborEntry {
        address: addr3,
        mac: a.mac,
    };
    k.add_neighbor("wcni.1", &n3).unwrap();
    assert!(
        tool("ip", &["neigh", "show", "dev", "wcni.1"])
            .contains("200.200.3.0 lladdr 0e:cc:0a:00:00:04 PERMANENT"),
        "replaced"
    );
    // a permanent one is not replaced
    let e = k
        .add_neighbor(
            "wcni.1",
            &NeighborEntry {
                address: addr3,
                mac: b.mac,
            },
        )
        .unwrap_err();
    assert_eq!(e.kind, OpKind::AlreadyExists, "{e}");
    assert!(
        e.message.contains("200.200.3.0") && e.message.contains("wcni.1"),
        "{e}"
    );
    assert_eq!(k.remove_neighbor("wcni.1", addr3).unwrap(), n3);
    assert!(!tool("ip", &["neigh", "show", "dev", "wcni.1"]).contains("200.200.3.0"));
    drop(ns);
}

/// The netlink layer remembers the index of each link a call looked up or made; a link
/// deleted and made again under the same name behind its back (another index) is found
/// again by name, never acted on through the old index.
#[test]
fn a_remembered_link_index_that_went_stale_is_looked_up_again() {
    let ns = Netns::new("k");
    let dir = tempfile::tempdir().unwrap();
    let mut nl = Kernel::new(Some(ns.pod_path()), Store::open(dir.path()).unwrap()).unwrap();
    let link = |n: &str| {
        let ok = Command::new("ip")
            .args(["-n", &ns.names[0], "link"])
            .args(n.split(' '))
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip link {n}");
    };
    let mut old = nl.create_bridge("br-k", None).unwrap().index;
    link("add vk0 type veth peer name vk1");
    nl.get_link(Ns::Host, "vk0").unwrap().unwrap();
    // made again behind the runner's back before each operation
    let mut again = || {
        link("del br-k");
        link("add br-k type bridge");
        let now = ns.ip(0, &["-o", "link", "show", "br-k"]);
        let index: u32 = now.split(':').next().unwrap().trim().parse().unwrap();
        assert_ne!(index, old, "a new index");
        old = index;
        index
    };
    let br = again();
    nl.set_master("vk0", "br-k").unwrap(); // a master index gone: EINVAL
    let d = nl.get_link(Ns::Host, "vk0").unwrap().unwrap();
    assert_eq!(d.master, Some(br), "on the new br-k");
    let br = again();
    nl.set_up(Ns::Host, "br-k").unwrap(); // a link index gone: ENODEV
    let now = nl.get_link(Ns::Host, "br-k").unwrap().unwrap();
    assert!(now.up && now.index == br, "the new br-k is up: {now:?}");
    again();
    nl.add_address(Ns::Host, "br-k", net("10.9.0.1/24"))
        .unwrap();
    assert!(ns.ip(0, &["addr", "show", "br-k"]).contains("10.9.0.1/24"));
    again();
    link("set br-k up"); // a route onto a link that is down: ENETDOWN
    nl.add_route(
        Ns::Host,
        &RouteSpec {
            destination: net("10.99.0.0/16"),
            gateway: None,
            link: Some("br-k".into()),
        },
    )
    .unwrap();
    assert!(ns
        .ip(0, &["route", "show", "10.99.0.0/16"])
        .contains("dev br-k"));
    // deleted by this call: forgotten, and then not found
    nl.delete_link(Ns::Host, "br-k").unwrap();
    assert_eq!(nl.get_link(Ns::Host, "br-k").unwrap(), None);
    let e = nl.set_up(Ns::Host, "br-k").unwrap_err();
    assert_eq!(e.kind, OpKind::NotFound, "{e:?}");
}
