//! The `cluster` interface under attack (config `"hostile": "cluster"`, `"attack"`
//! picks the refused change), every cluster change a host-gw/VXLAN policy makes
//! (`"hostile": "overlay"`, for fault injection: each step may fail), and a
//! misbehaving `reconcile` (config `"reconcile"`: the same attacks, `overlay`, `loop`,
//! `panic`).
//!
//! The sandbox node these expect: uplink `target` (default `uplink0`) at 10.0.0.3/16,
//! a peer at 10.0.0.4 owning `peer_cidr` (default 200.200.2.0/24), this node owning
//! 200.200.1.0/24, the VXLAN link `vxlan_link` (default `wcni.1`).

use super::{cfg_or_in, fail_kind};
use crate::exports::wasm_cni::plugin0_2_0::policy::CniError;
use crate::wasm_cni::plugin0_2_0::cluster::{self, FdbEntry, Neighbor};
use crate::wasm_cni::plugin0_2_0::routes::{self, Route};
use crate::wasm_cni::plugin0_2_0::types::Netns;
use crate::wasm_cni::plugin0_2_0::{addresses, links, sysctl};

const PEER_MAC: &str = "0e:cc:0a:00:00:04";

struct Setup {
    uplink: String,
    vxlan: String,
    peer_ip: String,
    peer_cidr: String,
    peer_gw: String,
}

impl Setup {
    fn of(config: &str) -> Setup {
        Setup {
            uplink: cfg_or_in(config, "target", "uplink0"),
            vxlan: cfg_or_in(config, "vxlan_link", "wcni.1"),
            peer_ip: cfg_or_in(config, "peer_ip", "10.0.0.4"),
            peer_cidr: cfg_or_in(config, "peer_cidr", "200.200.2.0/24"),
            peer_gw: cfg_or_in(config, "peer_gw", "200.200.2.0"),
        }
    }
    fn route(&self, dst: &str, gw: Option<&str>, link: &str) -> Route {
        Route {
            destination: dst.into(),
            gateway: gw.map(str::to_string),
            link: Some(link.into()),
        }
    }
    /// The VXLAN link, created unless there (a reconcile attack runs after `overlay`).
    fn vxlan(&self) -> Result<(), CniError> {
        if links::get(Netns::Host, &self.vxlan)
            .map_err(fail_kind("get vxlan"))?
            .is_some()
        {
            return Ok(());
        }
        cluster::create_vxlan(&self.vxlan, 1, 8472, "10.0.0.3", Some(1450), None)
            .map(|_| ())
            .map_err(fail_kind("create vxlan"))
    }
}

/// One refused change (after allowed work in ADD). Ok(()) means the runner let it
/// through: the caller turns that into an error naming the attack.
pub fn attack(config: &str, name: &str) -> Result<(), CniError> {
    let s = Setup::of(config);
    let fdb = |mac: &str, remote: &str| FdbEntry {
        mac: mac.into(),
        remote: remote.into(),
    };
    let neigh = |address: &str, mac: &str| Neighbor {
        address: address.into(),
        mac: mac.into(),
    };
    match name {
        "vxlan-name" => cluster::create_vxlan("evil.1", 1, 8472, "10.0.0.3", None, None)
            .map(|_| ())
            .map_err(fail_kind("create vxlan")),
        "vxlan-second" => {
            s.vxlan()?;
            cluster::create_vxlan("evil.2", 2, 8472, "10.0.0.3", None, None)
                .map(|_| ())
                .map_err(fail_kind("second vxlan"))
        }
        "vxlan-local" => cluster::create_vxlan(&s.vxlan, 1, 8472, "10.0.0.99", None, None)
            .map(|_| ())
            .map_err(fail_kind("create vxlan")),
        "vxlan-vni" => cluster::create_vxlan(&s.vxlan, 0, 8472, "10.0.0.3", None, None)
            .map(|_| ())
            .map_err(fail_kind("create vxlan")),
        "vxlan-mac" => cluster::create_vxlan(
            &s.vxlan,
            1,
            8472,
            "10.0.0.3",
            None,
            Some("01:00:5e:00:00:01"),
        )
        .map(|_| ())
        .map_err(fail_kind("create vxlan")),
        "fdb-remote-outside" => {
            s.vxlan()?;
            cluster::fdb_add(&s.vxlan, &fdb(PEER_MAC, "192.0.2.1")).map_err(fail_kind("fdb"))
        }
        "fdb-not-peer" => {
            s.vxlan()?;
            cluster::fdb_add(&s.vxlan, &fdb(PEER_MAC, "10.0.0.77")).map_err(fail_kind("fdb"))
        }
        "fdb-multicast-mac" => {
            s.vxlan()?;
            cluster::fdb_add(&s.vxlan, &fdb("01:00:5e:00:00:01", &s.peer_ip))
                .map_err(fail_kind("fdb"))
        }
        "fdb-uplink" => {
            cluster::fdb_add(&s.uplink, &fdb(PEER_MAC, &s.peer_ip)).map_err(fail_kind("fdb"))
        }
        "fdb-bridge" => cluster::fdb_add(
            &cfg_or_in(config, "bridge", "cni0"),
            &fdb(PEER_MAC, &s.peer_ip),
        )
        .map_err(fail_kind("fdb")),
        // ARP-poisoning the node's own gateway
        "neigh-uplink" => cluster::neighbor_add(&s.uplink, &neigh("10.0.0.1", PEER_MAC))
            .map_err(fail_kind("neighbour")),
        "neigh-outside" => {
            s.vxlan()?;
            cluster::neighbor_add(&s.vxlan, &neigh("10.0.0.1", PEER_MAC))
                .map_err(fail_kind("neighbour"))
        }
        "uplink-route-not-peer" => routes::add(
            Netns::Host,
            &s.route("200.200.9.0/24", Some(&s.peer_ip), &s.uplink),
        )
        .map_err(fail_kind("uplink route")),
        "uplink-route-wrong-gw" => routes::add(
            Netns::Host,
            &s.route(&s.peer_cidr, Some("10.0.0.1"), &s.uplink),
        )
        .map_err(fail_kind("uplink route")),
        "uplink-route-outside" => routes::add(
            Netns::Host,
            &s.route("8.8.8.0/24", Some(&s.peer_ip), &s.uplink),
        )
        .map_err(fail_kind("uplink route")),
        "uplink-route-own" => routes::add(
            Netns::Host,
            &s.route("200.200.1.0/24", Some(&s.peer_ip), &s.uplink),
        )
        .map_err(fail_kind("uplink route")),
        "uplink-route-no-gw" => routes::add(Netns::Host, &s.route(&s.peer_cidr, None, &s.uplink))
            .map_err(fail_kind("uplink route")),
        "uplink-default-remove" => routes::remove(
            Netns::Host,
            &s.route("0.0.0.0/0", Some("10.0.0.1"), &s.uplink),
        )
        .map_err(fail_kind("uplink default route")),
        "uplink-address" => addresses::add(Netns::Host, &s.uplink, "200.200.1.9/32")
            .map_err(fail_kind("uplink address")),
        "uplink-down-mtu" => {
            links::set_mtu(Netns::Host, &s.uplink, 1280).map_err(fail_kind("uplink mtu"))
        }
        // the VXLAN link exists (a previous call made it): this call may not delete it
        "vxlan-delete" => links::delete(Netns::Host, &s.vxlan).map_err(fail_kind("delete vxlan")),
        other => Err(CniError {
            code: 7,
            message: format!("unknown cluster attack {other:?}"),
            details: String::new(),
        }),
    }
}

/// Every kind of change a VXLAN + host-gw policy makes, all allowed.
pub fn overlay(config: &str) -> Result<(), CniError> {
    let s = Setup::of(config);
    let node = cluster::this_node().map_err(fail_kind("this node"))?;
    cluster::peers().map_err(fail_kind("peers"))?;
    cluster::create_vxlan(
        &node.vxlan_link,
        1,
        8472,
        node.ips.first().map(String::as_str).unwrap_or("10.0.0.3"),
        Some(node.uplink.mtu.saturating_sub(50)),
        Some("0e:cc:0a:00:00:03"),
    )
    .map_err(fail_kind("create vxlan"))?;
    sysctl::set(
        Netns::Host,
        &format!("net.ipv6.conf.{}.accept_dad", s.vxlan),
        "0",
    )
    .map_err(fail_kind("accept_dad"))?;
    addresses::add(Netns::Host, &s.vxlan, "200.200.1.0/32").map_err(fail_kind("vtep address"))?;
    links::set_up(Netns::Host, &s.vxlan).map_err(fail_kind("vxlan up"))?;
    routes::add(
        Netns::Host,
        &s.route(&format!("{}/32", s.peer_gw), None, &s.vxlan),
    )
    .map_err(fail_kind("vtep route"))?;
    routes::add(
        Netns::Host,
        &s.route(&s.peer_cidr, Some(&s.peer_gw), &s.vxlan),
    )
    .map_err(fail_kind("peer route"))?;
    cluster::neighbor_add(
        &s.vxlan,
        &Neighbor {
            address: s.peer_gw.clone(),
            mac: PEER_MAC.into(),
        },
    )
    .map_err(fail_kind("neighbour"))?;
    cluster::fdb_add(
        &s.vxlan,
        &FdbEntry {
            mac: PEER_MAC.into(),
            remote: s.peer_ip.clone(),
        },
    )
    .map_err(fail_kind("fdb"))?;
    // host-gw's route: the peer's other CIDR half through the uplink
    let half = cfg_or_in(config, "hostgw_cidr", "200.200.2.128/25");
    routes::add(Netns::Host, &s.route(&half, Some(&s.peer_ip), &s.uplink))
        .map_err(fail_kind("host-gw route"))?;
    Ok(())
}

/// `"hostile": "cluster"`: the attack named by `"attack"`, which must be refused.
pub fn attack_mode(config: &str) -> Result<(), CniError> {
    let name = cfg_or_in(config, "attack", "");
    attack(config, &name)?;
    Err(CniError {
        code: 100,
        message: format!("cluster attack {name} was let through"),
        details: String::new(),
    })
}

/// `reconcile` as the config's `"reconcile"` says.
pub fn reconcile(config: &str) -> Result<(), String> {
    let what = cfg_or_in(config, "reconcile", "");
    let err = |e: CniError| e.message;
    match what.as_str() {
        "" => Ok(()),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "panic" => panic!("hostile reconcile panics on purpose"),
        // all allowed, then a failure: the runner must undo all of it
        "overlay" => {
            overlay(config).map_err(err)?;
            Err("hostile reconcile did its work and gives up".into())
        }
        // all allowed, kept
        "overlay-ok" => overlay(config).map_err(err),
        attack_name => {
            overlay(config).map_err(err)?;
            attack(config, attack_name).map_err(err)?;
            Err(format!("cluster attack {attack_name} was let through"))
        }
    }
}
