//! A test guest on `wasm-cni:plugin@0.2.0` that does literally what the request asks,
//! and no more: ADD makes a veth whose container end gets `request.mac`, puts each of
//! `request.ips` on it (a bare address as a /24 or /64) and returns them; CHECK fails
//! (102) unless the container end has each; DEL deletes the host end. It logs what it
//! received, so a test can see the request as a 0.2.0 guest gets it. No IPAM, no
//! bridge, no routes: it tests the runner's 0.2.0 path, not a policy.

wit_bindgen::generate!({
    // the file, not the directory: wit/deps holds the 0.1.0 package
    path: "../../../wit/world.wit",
    world: "wasm-cni:plugin/cni-policy@0.2.0",
});

use exports::wasm_cni::plugin::policy::{
    AddResult, Attachment, CniError, Guest, IpConfig, Request, ResultInterface,
};
use wasm_cni::plugin::types::{HostError, Netns};
use wasm_cni::plugin::{addresses, links, log};

fn fail(code: u32, step: &str, e: HostError) -> CniError {
    CniError {
        code,
        message: format!("{step}: {}", e.message),
        details: String::new(),
    }
}

/// A requested address as CIDR: the prefix the runtime gave, else /24 or /64.
fn cidr(ip: &str) -> String {
    if ip.contains('/') {
        ip.to_string()
    } else if ip.contains(':') {
        format!("{ip}/64")
    } else {
        format!("{ip}/24")
    }
}

fn received(req: &Request) {
    log::write(
        log::Level::Info,
        &format!("request ips={:?} mac={:?}", req.ips, req.mac),
    );
}

struct Probe;

impl Guest for Probe {
    fn add(req: Request) -> Result<AddResult, CniError> {
        received(&req);
        let pair = links::create_veth(&req.host_link, &req.ifname, None, req.mac.as_deref())
            .map_err(|e| fail(100, "create-veth", e))?;
        links::set_up(Netns::Container, &req.ifname).map_err(|e| fail(100, "set-up", e))?;
        let mut ips = Vec::new();
        for ip in &req.ips {
            let a = cidr(ip);
            addresses::add(Netns::Container, &req.ifname, &a)
                .map_err(|e| fail(100, "addresses.add", e))?;
            ips.push(IpConfig {
                address: a,
                gateway: None,
                interface: Some(1),
            });
        }
        Ok(AddResult {
            interfaces: vec![
                ResultInterface {
                    name: pair.host.name,
                    mac: pair.host.mac,
                    sandbox: false,
                },
                ResultInterface {
                    name: pair.container.name,
                    mac: pair.container.mac,
                    sandbox: true,
                },
            ],
            ips,
            routes: Vec::new(),
            dns: None,
        })
    }

    fn del(req: Request) -> Result<(), CniError> {
        received(&req);
        match links::delete(Netns::Host, &req.host_link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind == wasm_cni::plugin::types::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fail(100, "links.delete", e)),
        }
    }

    fn check(req: Request) -> Result<(), CniError> {
        received(&req);
        let have = addresses::list(Netns::Container, &req.ifname)
            .map_err(|e| fail(102, "addresses.list", e))?;
        for ip in &req.ips {
            let a = cidr(ip);
            if !have.contains(&a) {
                return Err(CniError {
                    code: 102,
                    message: format!("{a} is missing on {}", req.ifname),
                    details: String::new(),
                });
            }
        }
        Ok(())
    }

    fn gc(_config: String, _valid: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }

    fn status(_config: String) -> Result<(), CniError> {
        Ok(())
    }
}

export!(Probe);
