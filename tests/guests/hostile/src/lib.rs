//! A guest that misbehaves on purpose, for the sandbox tests. The config key
//! `"hostile"` picks the misbehaviour; `"target"` names the node's uplink and
//! `"victim"` another pod's container id where a mode needs them.
//!
//! Every forbidden-operation mode first does something it *is* allowed to do (create
//! this attachment's veth), so the test also sees that the runner rolls it back.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "cni-policy",
});

use exports::wasm_cni::plugin::policy::{
    AddResult, Attachment, CniError, Guest, IpConfig, Request, ResultInterface,
};
use wasm_cni::plugin::routes::Route;
use wasm_cni::plugin::types::{HostError, Netns};
use wasm_cni::plugin::{addresses, firewall, links, routes, store, sysctl};

fn cfg(req: &Request, key: &str) -> String {
    serde_json::from_str::<serde_json::Value>(&req.config)
        .ok()
        .and_then(|v| v.get(key).and_then(|s| s.as_str()).map(str::to_string))
        .unwrap_or_default()
}

fn fail(e: HostError) -> CniError {
    CniError {
        code: 100,
        message: e.message,
        details: String::new(),
    }
}

/// Something allowed, so the test can see it rolled back.
fn allowed_work(req: &Request) -> Result<(), CniError> {
    links::create_veth(&req.host_link, &req.ifname, None).map_err(fail)?;
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
                kind: wasm_cni::plugin::types::ErrorKind::Failed,
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
    fn del(_req: Request) -> Result<(), CniError> {
        Ok(())
    }
    fn check(_req: Request) -> Result<(), CniError> {
        Ok(())
    }
    fn gc(_config: String, _valid: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
    fn status(_config: String) -> Result<(), CniError> {
        Ok(())
    }
}

export!(Hostile);
