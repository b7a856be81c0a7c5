//! A guest that misbehaves on purpose, for the sandbox tests. The config key
//! `"hostile"` picks the misbehaviour; `"target"` names the node's uplink and
//! `"victim"` another pod's container id where a mode needs them.
//!
//! Every forbidden-operation mode first does something it *is* allowed to do (create
//! this attachment's veth), so the test also sees that the runner rolls it back.
//!
//! The later modes (from exact rollback on) take more settings from the config
//! ("count", "size", "routes", "value", "victim_ip", "how", "ip", "result_*"), and
//! report a host error as `<step>: <kind>: <message>`. STATUS and CHECK misbehave only
//! with "hostile": "status-writes". The `cluster` interface (host-gw, VXLAN) and the
//! `reconcile` export are attacked from `cluster.rs`. It imports `lock` (mode
//! "hold-lock"), so its ADD, DEL and CHECK run in the runner's explicit-lock mode: its
//! store calls enter the lock, every rollback must take it again.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "cni-node-policy",
});

mod cluster;

use exports::wasm_cni::plugin0_2_0::policy::{
    AddResult, Attachment, CniError, Guest, IpConfig, Request, ResultInterface,
};
use wasm_cni::plugin0_2_0::routes::Route;
use wasm_cni::plugin0_2_0::types::{ErrorKind, HostError, Netns};
use wasm_cni::plugin0_2_0::{addresses, firewall, links, log, routes, store, sysctl};

fn cfg(req: &Request, key: &str) -> String {
    cfg_in(&req.config, key)
}

/// A string setting of a config given as JSON text (empty when absent).
fn cfg_in(config: &str, key: &str) -> String {
    serde_json::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v.get(key).and_then(|s| s.as_str()).map(str::to_string))
        .unwrap_or_default()
}

/// A numeric setting (a JSON number or a string of digits), or `default`.
fn cfg_num(req: &Request, key: &str, default: u64) -> u64 {
    serde_json::from_str::<serde_json::Value>(&req.config)
        .ok()
        .and_then(|v| {
            v.get(key).and_then(|n| {
                n.as_u64()
                    .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
            })
        })
        .unwrap_or(default)
}

/// A string setting with a default.
fn cfg_or(req: &Request, key: &str, default: &str) -> String {
    cfg_or_in(&req.config, key, default)
}

/// A string setting of a config text, with a default.
fn cfg_or_in(config: &str, key: &str, default: &str) -> String {
    let v = cfg_in(config, key);
    if v.is_empty() {
        default.to_string()
    } else {
        v
    }
}

fn fail(e: HostError) -> CniError {
    CniError {
        code: 100,
        message: e.message,
        details: String::new(),
    }
}

fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Denied => "denied",
        ErrorKind::NotFound => "not-found",
        ErrorKind::AlreadyExists => "already-exists",
        ErrorKind::InvalidArgument => "invalid-argument",
        ErrorKind::Failed => "failed",
    }
}

/// The host error as `<what>: <kind>: <message>`, so a test sees the kind too (the
/// newer modes use this; `fail` keeps the older modes' messages as they were).
fn fail_kind(what: &str) -> impl Fn(HostError) -> CniError + '_ {
    move |e| CniError {
        code: 100,
        message: format!("{what}: {}: {}", kind_name(e.kind), e.message),
        details: String::new(),
    }
}

/// The end of a mode whose every step was allowed: give up, so the runner rolls back.
fn gave_up(mode: &str) -> CniError {
    CniError {
        code: 100,
        message: format!("hostile mode {mode} did its work and gives up"),
        details: String::new(),
    }
}

fn bridge(req: &Request) -> String {
    cfg_or(req, "bridge", "cni0")
}

fn pod_subnet(req: &Request) -> String {
    cfg_or(req, "myPodSubnet", "200.200.1.0/24")
}

/// Both ends of this attachment's veth, created and up.
fn own_veth_up(req: &Request) -> Result<links::VethPair, CniError> {
    let pair = links::create_veth(&req.host_link, &req.ifname, None, None)
        .map_err(fail_kind("create veth"))?;
    links::set_up(Netns::Host, &req.host_link).map_err(fail_kind("set host link up"))?;
    links::set_up(Netns::Container, &req.ifname).map_err(fail_kind("set pod link up"))?;
    Ok(pair)
}

/// A well-formed result: the veth pair, with `ip` on the container end (interface 1)
/// and `gateway` as its gateway.
fn result_for(
    req: &Request,
    pair: links::VethPair,
    ip: &str,
    gateway: Option<String>,
) -> AddResult {
    AddResult {
        interfaces: vec![
            ResultInterface {
                name: req.host_link.clone(),
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
            address: ip.to_string(),
            gateway,
            interface: Some(1),
        }],
        routes: vec![],
        dns: None,
    }
}

/// An ADD that really does what its result says: veth up, config `ip` (default
/// 200.200.1.60/24) on the container end, gateway config `gateway` (200.200.1.1).
fn honest_result(req: &Request) -> Result<AddResult, CniError> {
    let ip = cfg_or(req, "ip", "200.200.1.60/24");
    let pair = own_veth_up(req)?;
    addresses::add(Netns::Container, &req.ifname, &ip).map_err(fail_kind("add pod address"))?;
    Ok(result_for(
        req,
        pair,
        &ip,
        Some(cfg_or(req, "gateway", "200.200.1.1")),
    ))
}

/// The n-th address of a block of /32s starting at 200.200.<third>.0.
fn nth_host(third: u64, n: u64) -> String {
    format!("200.200.{}.{}", third + n / 256, n % 256)
}

/// STATUS and CHECK with config `"hostile": "status-writes"`: try to change the node
/// (ip_forward off, a firewall chain, a store key). Any refusal is reported as a policy
/// error naming each host error; when everything was allowed, the call "succeeds".
fn read_only_attack(config: &str) -> Result<(), CniError> {
    if cfg_in(config, "hostile") != "status-writes" {
        return Ok(());
    }
    let show = |r: Result<(), HostError>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{}: {}", kind_name(e.kind), e.message),
    };
    let steps = [
        (
            "ip_forward",
            sysctl::set(Netns::Host, "net.ipv4.ip_forward", "0"),
        ),
        ("allow_forward", firewall::allow_forward("200.200.9.0/24")),
        ("store", store::put("hostile/status", "was here")),
    ];
    let refused = steps.iter().any(|(_, r)| r.is_err());
    let message = steps
        .into_iter()
        .map(|(what, r)| format!("{what}: {}", show(r)))
        .collect::<Vec<_>>()
        .join(" | ");
    if refused {
        Err(CniError {
            code: 100,
            message,
            details: String::new(),
        })
    } else {
        Ok(())
    }
}

/// Something allowed, so the test can see it rolled back.
fn allowed_work(req: &Request) -> Result<(), CniError> {
    links::create_veth(&req.host_link, &req.ifname, None, None).map_err(fail)?;
    store::put("hostile/marker", "was here").map_err(fail)?;
    Ok(())
}

fn add(req: Request) -> Result<AddResult, CniError> {
    let mode = cfg(&req, "hostile");
    let target = cfg(&req, "target");
    match mode.as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "membomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![7u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("hostile guest panics on purpose"),
        "garbage" => Ok(AddResult {
            interfaces: vec![ResultInterface {
                name: "eth0".into(),
                mac: String::new(),
                sandbox: true,
            }],
            ips: vec![IpConfig {
                address: "not-an-address".into(),
                gateway: None,
                interface: Some(7),
            }],
            routes: vec![],
            dns: None,
        }),
        "oversize" => Ok(AddResult {
            interfaces: (0..100_000)
                .map(|i| ResultInterface {
                    name: format!("if{i}"),
                    mac: "x".repeat(64),
                    sandbox: false,
                })
                .collect(),
            ips: vec![],
            routes: vec![],
            dns: None,
        }),
        "delete-uplink" => {
            allowed_work(&req)?;
            links::delete(Netns::Host, &target).map_err(fail)?;
            Err(fail(HostError {
                kind: wasm_cni::plugin0_2_0::types::ErrorKind::Failed,
                message: "unreachable".into(),
            }))
        }
        "address-on-uplink" => {
            allowed_work(&req)?;
            addresses::add(Netns::Host, &target, "200.200.1.99/24").map_err(fail)?;
            Err(CniError {
                code: 100,
                message: "unreachable".into(),
                details: String::new(),
            })
        }
        "other-pod" => {
            allowed_work(&req)?;
            let victim = links::attachment_link(&cfg(&req, "victim"), "eth0");
            links::delete(Netns::Host, &victim).map_err(fail)?;
            Err(CniError {
                code: 100,
                message: "unreachable".into(),
                details: String::new(),
            })
        }
        "route-outside" => {
            allowed_work(&req)?;
            addresses::add(Netns::Container, &req.ifname, "200.200.1.50/24").map_err(fail)?;
            links::set_up(Netns::Container, &req.ifname).map_err(fail)?;
            let r = Route {
                destination: "8.8.8.0/24".into(),
                gateway: Some("200.200.1.1".into()),
                link: None,
            };
            routes::add(Netns::Container, &r).map_err(fail)?;
            Err(CniError {
                code: 100,
                message: "unreachable".into(),
                details: String::new(),
            })
        }
        "host-route" => {
            allowed_work(&req)?;
            let r = Route {
                destination: "0.0.0.0/0".into(),
                gateway: Some("10.0.0.66".into()),
                link: None,
            };
            routes::add(Netns::Host, &r).map_err(fail)?;
            Err(CniError {
                code: 100,
                message: "unreachable".into(),
                details: String::new(),
            })
        }
        "sysctl-off-list" => {
            allowed_work(&req)?;
            sysctl::set(Netns::Host, "net.ipv4.conf.all.forwarding", "0").map_err(fail)?;
            Err(CniError {
                code: 100,
                message: "unreachable".into(),
                details: String::new(),
            })
        }
        "store-outside" => {
            allowed_work(&req)?;
            store::put("../othernet/kv/owned", "pwned").map_err(fail)?;
            Err(CniError {
                code: 100,
                message: "unreachable".into(),
                details: String::new(),
            })
        }
        "firewall-outside" => {
            allowed_work(&req)?;
            firewall::masquerade("10.0.0.0/16", &[]).map_err(fail)?;
            Err(CniError {
                code: 100,
                message: "unreachable".into(),
                details: String::new(),
            })
        }
        "error-after-work" => {
            // Allowed work, then a plain policy error: everything must be undone.
            allowed_work(&req)?;
            addresses::add(Netns::Container, &req.ifname, "200.200.1.51/24").map_err(fail)?;
            Err(CniError {
                code: 150,
                message: "hostile guest gives up after doing work".into(),
                details: String::new(),
            })
        }
        // ---- exact rollback (class 1) ---------------------------------------------------
        "bridge-mtu" => {
            allowed_work(&req)?;
            links::set_mtu(Netns::Host, &bridge(&req), 1400).map_err(fail_kind("set mtu"))?;
            Err(gave_up(&mode))
        }
        "remove-routes" => {
            // config "routes": comma-separated destinations, each removed from the bridge
            allowed_work(&req)?;
            for dst in cfg(&req, "routes").split(',').filter(|d| !d.is_empty()) {
                let r = Route {
                    destination: dst.to_string(),
                    gateway: None,
                    link: Some(bridge(&req)),
                };
                routes::remove(Netns::Host, &r).map_err(fail_kind("remove route"))?;
            }
            Err(gave_up(&mode))
        }
        "ip-forward" => {
            allowed_work(&req)?;
            let value = cfg_or(&req, "value", "0");
            sysctl::set(Netns::Host, "net.ipv4.ip_forward", &value)
                .map_err(fail_kind("set ip_forward"))?;
            Err(gave_up(&mode))
        }
        "disable-ipv6" => {
            allowed_work(&req)?;
            let link = cfg_or(&req, "link", &bridge(&req));
            let key = format!("net.ipv6.conf.{link}.disable_ipv6");
            sysctl::set(Netns::Host, &key, "1").map_err(fail_kind("set disable_ipv6"))?;
            Err(gave_up(&mode))
        }
        "firewall-change" => {
            // a new chain in the network's table, and the masquerade except list rewritten
            allowed_work(&req)?;
            firewall::allow_forward("200.200.7.0/24").map_err(fail_kind("allow forward"))?;
            firewall::masquerade(&pod_subnet(&req), &["200.200.0.0/16".to_string()])
                .map_err(fail_kind("masquerade"))?;
            Err(gave_up(&mode))
        }
        // ---- deadline (class 2) --------------------------------------------------------
        "hold-lock" => {
            // enter the network's critical section, do allowed work, then spin in wasm
            // past the deadline while holding the lock: others wait for its rollback
            wasm_cni::plugin0_2_0::lock::acquire().map_err(fail)?;
            allowed_work(&req)?;
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "sleep-wasi" => {
            // allowed work, then block in WASI (not in wasm code) past any deadline
            allowed_work(&req)?;
            addresses::add(Netns::Host, &bridge(&req), "200.200.1.77/24")
                .map_err(fail_kind("add bridge address"))?;
            std::thread::sleep(std::time::Duration::from_secs(cfg_num(&req, "sleep_s", 30)));
            Err(gave_up(&mode))
        }
        "masq-huge" => {
            // one host call with a huge argument: `count` distinct /32s to exempt
            allowed_work(&req)?;
            let n = cfg_num(&req, "count", 800_000);
            let mut except = Vec::with_capacity(n as usize);
            for i in 0..n {
                except.push(format!(
                    "10.{}.{}.{}/32",
                    (i >> 16) & 255,
                    (i >> 8) & 255,
                    i & 255
                ));
            }
            firewall::masquerade(&pod_subnet(&req), &except).map_err(fail_kind("masquerade"))?;
            Err(gave_up(&mode))
        }
        // ---- per-call caps (class 4) ----------------------------------------------------
        "many-routes" => {
            // `count` /32 host routes (200.200.50.0, .1, ... on) through this call's own link
            own_veth_up(&req)?;
            for i in 0..cfg_num(&req, "count", 256) {
                let r = Route {
                    destination: format!("{}/32", nth_host(50, i)),
                    gateway: None,
                    link: Some(req.host_link.clone()),
                };
                routes::add(Netns::Host, &r).map_err(fail_kind(&format!("route #{}", i + 1)))?;
            }
            Err(gave_up(&mode))
        }
        "many-addresses" => {
            // `count` /32 addresses (200.200.60.0, .1, ... on) on the container end
            own_veth_up(&req)?;
            for i in 0..cfg_num(&req, "count", 32) {
                let a = format!("{}/32", nth_host(60, i));
                addresses::add(Netns::Container, &req.ifname, &a)
                    .map_err(fail_kind(&format!("address #{}", i + 1)))?;
            }
            Err(gave_up(&mode))
        }
        "many-firewall" => {
            // `count` forward chains, one per 200.200.<100+i>.0/24
            allowed_work(&req)?;
            for i in 0..cfg_num(&req, "count", 32) {
                firewall::allow_forward(&format!("200.200.{}.0/24", 100 + i))
                    .map_err(fail_kind(&format!("firewall rule #{}", i + 1)))?;
            }
            Err(gave_up(&mode))
        }
        // ---- outputs (class 5) -----------------------------------------------------------
        "log-flood" => {
            let line = "L".repeat(cfg_num(&req, "size", 1024) as usize);
            for _ in 0..cfg_num(&req, "count", 200_000) {
                log::write(log::Level::Info, &line);
            }
            Err(gave_up(&mode))
        }
        "store-flood" => {
            // `count` values of `size` bytes under flood/<container>/<i>; with
            // "succeed": "1" an ADD whose puts all pass ends well (honest result)
            let value = "v".repeat(cfg_num(&req, "size", 65536) as usize);
            for i in 0..cfg_num(&req, "count", 17) {
                let key = format!("flood/{}/{i}", req.container_id);
                store::put(&key, &value).map_err(fail_kind(&format!("put #{}", i + 1)))?;
            }
            if cfg(&req, "succeed") == "1" {
                honest_result(&req)
            } else {
                Err(gave_up(&mode))
            }
        }
        // ---- results (class 6) -------------------------------------------------------------
        "result-outside" => {
            // real, allowed work, then a result that does not match the grants: config
            // "result_ip" (10.0.0.5/16), "result_gw" (10.0.0.1; "" for none) and
            // "result_ifname" (interface 0; the container's ifname when absent)
            allowed_work(&req)?;
            addresses::add(Netns::Container, &req.ifname, "200.200.1.60/24")
                .map_err(fail_kind("add pod address"))?;
            links::set_up(Netns::Container, &req.ifname).map_err(fail_kind("set up"))?;
            let name = cfg(&req, "result_ifname");
            let in_pod = name.is_empty();
            let gw = serde_json::from_str::<serde_json::Value>(&req.config)
                .ok()
                .and_then(|v| v.get("result_gw").cloned());
            let gateway = match gw {
                None => Some("10.0.0.1".to_string()),
                Some(serde_json::Value::String(s)) if s.is_empty() => None,
                Some(v) => v.as_str().map(str::to_string),
            };
            Ok(AddResult {
                interfaces: vec![ResultInterface {
                    name: if in_pod { req.ifname.clone() } else { name },
                    mac: String::new(),
                    sandbox: in_pod,
                }],
                ips: vec![IpConfig {
                    address: cfg_or(&req, "result_ip", "10.0.0.5/16"),
                    gateway,
                    interface: Some(0),
                }],
                routes: vec![],
                dns: None,
            })
        }
        // ---- cluster (host-gw, VXLAN): refused changes, and all allowed ones ------------
        "cluster" => {
            allowed_work(&req)?;
            cluster::attack_mode(&req.config)?;
            Err(gave_up(&mode))
        }
        "overlay" => {
            own_veth_up(&req)?;
            cluster::overlay(&req.config)?;
            Err(gave_up(&mode))
        }
        // ---- IPv6: what is refused for IPv4 is refused for IPv6 ----------------------------
        "ipv6" => {
            // config "attack": which IPv6 change to try after allowed work
            allowed_work(&req)?;
            let attack = cfg(&req, "attack");
            let host_route = |dst: &str, gw: Option<&str>, link: &str| Route {
                destination: dst.into(),
                gateway: gw.map(str::to_string),
                link: Some(link.to_string()),
            };
            match attack.as_str() {
                "link-local-on-uplink" => addresses::add(Netns::Host, &target, "fe80::99/64")
                    .map_err(fail_kind("uplink link-local"))?,
                "link-local-on-bridge" => addresses::add(Netns::Host, &bridge(&req), "fe80::1/64")
                    .map_err(fail_kind("bridge link-local"))?,
                "link-local-route" => {
                    routes::add(Netns::Host, &host_route("fe80::/10", None, &req.host_link))
                        .map_err(fail_kind("link-local route"))?
                }
                "default-route-host" => routes::add(
                    Netns::Host,
                    &host_route("::/0", Some("fd00:10::1"), &req.host_link),
                )
                .map_err(fail_kind("host default route"))?,
                "prefix-outside" => addresses::add(Netns::Container, &req.ifname, "fd00:999::2/64")
                    .map_err(fail_kind("pod address"))?,
                "prefix-too-wide" => {
                    addresses::add(Netns::Container, &req.ifname, "fd00:200:1::2/16")
                        .map_err(fail_kind("pod address"))?
                }
                "gateway-family" => routes::add(
                    Netns::Container,
                    &host_route("::/0", Some("200.200.1.1"), &req.ifname),
                )
                .map_err(fail_kind("pod default route"))?,
                "forwarding-off" => sysctl::set(Netns::Host, "net.ipv6.conf.all.forwarding", "0")
                    .map_err(fail_kind("ipv6 forwarding"))?,
                // the kernel reads sysctl integers with base 0: 0x0 is 0
                "forwarding-off-hex" => {
                    sysctl::set(Netns::Host, "net.ipv6.conf.all.forwarding", "0x0")
                        .map_err(fail_kind("ipv6 forwarding"))?
                }
                // a host link accepting a pod's router advertisements
                "accept-ra-bridge" => sysctl::set(
                    Netns::Host,
                    &format!("net.ipv6.conf.{}.accept_ra", bridge(&req)),
                    "2",
                )
                .map_err(fail_kind("bridge accept_ra"))?,
                "forwarding-off-host-link" => sysctl::set(
                    Netns::Host,
                    &format!("net.ipv6.conf.{}.forwarding", req.host_link),
                    "0",
                )
                .map_err(fail_kind("host link ipv6 forwarding"))?,
                "accept-ra-uplink" => sysctl::set(
                    Netns::Host,
                    &format!("net.ipv6.conf.{target}.accept_ra"),
                    "2",
                )
                .map_err(fail_kind("uplink accept_ra"))?,
                "masquerade-outside" => firewall::masquerade("fd00:10::/64", &[])
                    .map_err(fail_kind("ipv6 masquerade"))?,
                other => {
                    return Err(CniError {
                        code: 7,
                        message: format!("unknown ipv6 attack {other:?}"),
                        details: String::new(),
                    })
                }
            }
            Err(gave_up(&mode))
        }
        "dual-stack" => {
            // every kind of IPv6 change a dual-stack policy makes, all allowed, then a
            // result with both addresses (for fault injection: each step may fail);
            // "succeed": "0" gives up at the end instead
            let pair = own_veth_up(&req)?;
            let v6 = cfg_or(&req, "ip6", "fd00:200:1::60/64");
            let gw6 = cfg_or(&req, "gateway6", "fd00:200:1::1");
            let ip = cfg_or(&req, "ip", "200.200.1.60/24");
            sysctl::set(
                Netns::Container,
                &format!("net.ipv6.conf.{}.accept_dad", req.ifname),
                "0",
            )
            .map_err(fail_kind("accept_dad"))?;
            addresses::add(Netns::Container, &req.ifname, &ip).map_err(fail_kind("address"))?;
            addresses::add(Netns::Container, &req.ifname, &v6)
                .map_err(fail_kind("ipv6 address"))?;
            addresses::add(Netns::Host, &req.host_link, &format!("{gw6}/128"))
                .map_err(fail_kind("ipv6 gateway address"))?;
            let bare = v6.split('/').next().unwrap_or_default().to_string();
            routes::add(
                Netns::Host,
                &Route {
                    destination: format!("{bare}/128"),
                    gateway: None,
                    link: Some(req.host_link.clone()),
                },
            )
            .map_err(fail_kind("ipv6 host route"))?;
            routes::add(
                Netns::Container,
                &Route {
                    destination: "::/0".into(),
                    gateway: Some(gw6.clone()),
                    link: Some(req.ifname.clone()),
                },
            )
            .map_err(fail_kind("ipv6 default route"))?;
            sysctl::set(Netns::Host, "net.ipv6.conf.all.forwarding", "1")
                .map_err(fail_kind("ipv6 forwarding"))?;
            sysctl::set(
                Netns::Host,
                &format!("net.ipv6.conf.{}.accept_ra", req.host_link),
                "0",
            )
            .map_err(fail_kind("accept_ra"))?;
            let net6 = cfg_or(&req, "net6", "fd00:200:1::/64");
            firewall::allow_forward(&net6).map_err(fail_kind("ipv6 forward"))?;
            firewall::masquerade(&net6, &["fd00:200::/40".to_string()])
                .map_err(fail_kind("ipv6 masquerade"))?;
            if cfg(&req, "succeed") == "0" {
                return Err(gave_up(&mode));
            }
            let mut r = result_for(&req, pair, &ip, None);
            r.ips.push(IpConfig {
                address: v6,
                gateway: Some(gw6),
                interface: Some(1),
            });
            Ok(r)
        }
        // ---- other pods (class 7) ------------------------------------------------------------
        "steal-address" => {
            // config "victim_ip": another pod's address; "how": route | address | result
            let victim_ip = cfg(&req, "victim_ip");
            match cfg(&req, "how").as_str() {
                "route" => {
                    own_veth_up(&req)?;
                    let host = if victim_ip.contains(':') { 128 } else { 32 };
                    let r = Route {
                        destination: format!("{victim_ip}/{host}"),
                        gateway: None,
                        link: Some(req.host_link.clone()),
                    };
                    routes::add(Netns::Host, &r).map_err(fail_kind("host route"))?;
                    Err(gave_up(&mode))
                }
                "address" => {
                    own_veth_up(&req)?;
                    let prefix = cfg_or(&req, "victim_prefix", "24");
                    addresses::add(
                        Netns::Container,
                        &req.ifname,
                        &format!("{victim_ip}/{prefix}"),
                    )
                    .map_err(fail_kind("pod address"))?;
                    Err(gave_up(&mode))
                }
                _ => {
                    let pair = own_veth_up(&req)?;
                    let prefix = cfg_or(&req, "victim_prefix", "24");
                    Ok(result_for(
                        &req,
                        pair,
                        &format!("{victim_ip}/{prefix}"),
                        Some(cfg_or(&req, "gateway", "200.200.1.1")),
                    ))
                }
            }
        }
        "delete-reservation" => {
            // delete another attachment's IPAM keys; if that is allowed, end well
            let victim_ip = cfg(&req, "victim_ip");
            let victim = cfg(&req, "victim");
            for key in [format!("ip/{victim_ip}"), format!("attach/{victim}/eth0")] {
                store::delete(&key).map_err(fail_kind(&format!("delete {key}")))?;
            }
            honest_result(&req)
        }
        other => Err(CniError {
            code: 7,
            message: format!("unknown hostile mode {other:?}"),
            details: String::new(),
        }),
    }
}

struct Hostile;

impl Guest for Hostile {
    fn add(req: Request) -> Result<AddResult, CniError> {
        add(req)
    }
    fn del(req: Request) -> Result<(), CniError> {
        // config "del_attack": what a DEL tries (a DEL is not rolled back)
        match cfg(&req, "del_attack").as_str() {
            "" => Ok(()),
            "disable-ipv6-bridge" => {
                let key = format!("net.ipv6.conf.{}.disable_ipv6", bridge(&req));
                sysctl::set(Netns::Host, &key, "1").map_err(fail_kind("set disable_ipv6"))
            }
            other => Err(CniError {
                code: 7,
                message: format!("unknown del attack {other:?}"),
                details: String::new(),
            }),
        }
    }
    fn check(req: Request) -> Result<(), CniError> {
        read_only_attack(&req.config)
    }
    fn gc(_config: String, _valid: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
    fn status(config: String) -> Result<(), CniError> {
        read_only_attack(&config)
    }
}

impl exports::wasm_cni::plugin0_2_0::node_policy::Guest for Hostile {
    fn reconcile(config: String) -> Result<(), String> {
        cluster::reconcile(&config)
    }
}

export!(Hostile);
