//! The shell around a policy: what every Rust guest does the same way, so that a
//! policy's own file holds only its policy.
//!
//! A guest implements [`Policy`] (ADD, CHECK, and optionally what STATUS looks at) and
//! exports it with `wasm_cni_guest_kit::export!(MyPolicy)`. DEL, GC and STATUS come
//! from here, as do the error codes, the store adapter IPAM uses and the helpers that
//! turn a host error into a CNI error. The commands are written against [`Node`], the
//! few host calls they make, so that they are unit-tested natively with a fake node.

use crate::bindings::exports::wasm_cni::plugin::policy::{
    AddResult, Attachment, CniError, Guest, Request,
};
use crate::bindings::wasm_cni::plugin::types::{ErrorKind, HostError, Netns};
use crate::bindings::wasm_cni::plugin::{addresses, firewall, links, log, routes, store, sysctl};
use crate::config::Config;
use crate::{ipam, prev};
use std::net::Ipv4Addr;

/// CNI: the network config is invalid.
pub const INVALID_CONFIG: u32 = 7;
/// CNI, STATUS only: the plugin cannot take ADDs (here: the store does not answer).
pub const NOT_AVAILABLE: u32 = 50;
/// CNI, STATUS only: not available, and pods already attached may have limited
/// connectivity (here: they hold addresses and [`Policy::node_problem`] found what
/// they depend on broken).
pub const LIMITED_CONNECTIVITY: u32 = 51;
/// The policy's own codes (CNI leaves 100 and up to plugins): a host call failed.
pub const HOST_FAILED: u32 = 100;
/// Every address of the pod subnet is taken.
pub const POOL_EXHAUSTED: u32 = 101;
/// CHECK found the attachment different from what ADD left.
pub const CHECK_FAILED: u32 = 102;

/// A policy: what a guest writes. DEL, GC and STATUS have the kit's versions.
pub trait Policy {
    /// ADD: wire the pod (`req.ifname` in its namespace) and say what it got.
    fn add(req: &Request) -> Result<AddResult, CniError>;

    /// CHECK: is the attachment still as ADD left it? ([`check_pod`] does the pod side.)
    fn check(req: &Request) -> Result<(), CniError>;

    /// What STATUS reports when pods hold addresses on the node: what they depend on
    /// that is broken now (e.g. `Some("bridge cni0 is missing")`), or `None`. STATUS is
    /// read-only: look, do not repair (the next ADD's node setup does that).
    fn node_problem(_cfg: &Config) -> Result<Option<String>, CniError> {
        Ok(None)
    }

    /// DEL: remove the host end of the veth (the pod end goes with it) and release the
    /// address. Needs nothing from the config, so a DEL after a config change still
    /// cleans up; a second DEL succeeds.
    fn del(req: &Request) -> Result<(), CniError> {
        del(&mut HostStore, req)
    }

    /// GC: DEL for every attachment the store knows that is not in `valid`.
    fn gc(valid: &[Attachment]) -> Result<(), CniError> {
        gc(&mut HostStore, valid)
    }

    /// STATUS: 7 when the config is invalid; 50 when the store does not answer; 51 when
    /// pods hold addresses and [`Policy::node_problem`] names a problem; else ready.
    fn status(config: &str) -> Result<(), CniError> {
        status(&mut HostStore, config, Self::node_problem)
    }
}

/// Every policy is the world's `Guest`: each WIT function calls the policy's.
impl<P: Policy> Guest for P {
    fn add(req: Request) -> Result<AddResult, CniError> {
        P::add(&req)
    }
    fn del(req: Request) -> Result<(), CniError> {
        P::del(&req)
    }
    fn check(req: Request) -> Result<(), CniError> {
        P::check(&req)
    }
    fn gc(_config: String, valid: Vec<Attachment>) -> Result<(), CniError> {
        P::gc(&valid)
    }
    fn status(config: String) -> Result<(), CniError> {
        P::status(&config)
    }
}

/// A CNI error with a code and a message.
pub fn cni(code: u32, message: impl Into<String>) -> CniError {
    CniError {
        code,
        message: message.into(),
        details: String::new(),
    }
}

/// Turn a host error into a CNI error that says which step failed:
/// `links::set_up(..).map_err(step("bring bridge up"))?`.
pub fn step(what: &str) -> impl Fn(HostError) -> CniError + '_ {
    move |e| cni(HOST_FAILED, format!("{what}: {}", e.message))
}

/// A failed store operation of IPAM, as a CNI error.
pub fn store_error(m: String) -> CniError {
    cni(HOST_FAILED, format!("address store: {m}"))
}

/// The network config's fields, or error 7 saying what is wrong.
pub fn parse_config(json: &str) -> Result<Config, CniError> {
    Config::parse(json).map_err(|m| cni(INVALID_CONFIG, m))
}

/// A line in the runner's log.
pub fn info(msg: &str) {
    log::write(log::Level::Info, msg);
}

/// The host calls the shared commands make: the runner's ([`HostStore`]) in a guest, a
/// fake node in the unit tests.
pub trait Node: ipam::Store {
    fn delete_host_link(&mut self, name: &str) -> Result<(), HostError>;
    fn attachment_link(&mut self, container_id: &str, ifname: &str) -> String;
    fn info(&mut self, msg: &str);
}

/// The runner: its store as IPAM sees it, and the host calls of DEL, GC and STATUS.
pub struct HostStore;

impl ipam::Store for HostStore {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        store::get(key).map_err(|e| e.message)
    }
    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        store::put(key, value).map_err(|e| e.message)
    }
    fn delete(&mut self, key: &str) -> Result<bool, String> {
        store::delete(key).map_err(|e| e.message)
    }
    fn list(&mut self, prefix: &str) -> Result<Vec<String>, String> {
        store::list(prefix).map_err(|e| e.message)
    }
}

impl Node for HostStore {
    fn delete_host_link(&mut self, name: &str) -> Result<(), HostError> {
        links::delete(Netns::Host, name)
    }
    fn attachment_link(&mut self, container_id: &str, ifname: &str) -> String {
        links::attachment_link(container_id, ifname)
    }
    fn info(&mut self, msg: &str) {
        info(msg)
    }
}

/// Reserve the pod's address in the pod subnet (or the one it holds already):
/// error 101 when the pool is exhausted.
pub fn allocate(cfg: &Config, req: &Request) -> Result<Ipv4Addr, CniError> {
    allocate_in(&mut HostStore, cfg, req)
}

fn allocate_in(s: &mut dyn ipam::Store, cfg: &Config, req: &Request) -> Result<Ipv4Addr, CniError> {
    ipam::allocate(s, cfg.pod_subnet, &req.container_id, &req.ifname).map_err(|e| match e {
        ipam::IpamError::Exhausted(m) => cni(POOL_EXHAUSTED, m),
        ipam::IpamError::Store(m) => store_error(m),
    })
}

/// Remove the host end of an attachment's veth (the pod end, and routes through it, go
/// with it). Already gone is fine: DEL must succeed twice.
pub fn remove_host_veth(name: &str) -> Result<(), CniError> {
    remove_host_link(&mut HostStore, name)
}

fn remove_host_link(node: &mut impl Node, name: &str) -> Result<(), CniError> {
    match node.delete_host_link(name) {
        Err(e) if e.kind != ErrorKind::NotFound => Err(step("remove host veth")(e)),
        _ => Ok(()),
    }
}

/// Forwarding for the pods, once per node: `ip_forward` on, forwarding of the pod
/// network allowed, and masquerade for pod traffic leaving the cluster.
pub fn enable_forwarding(cfg: &Config) -> Result<(), CniError> {
    let fwd = sysctl::get(Netns::Host, "net.ipv4.ip_forward").map_err(step("read ip_forward"))?;
    if fwd.trim() != "1" {
        sysctl::set(Netns::Host, "net.ipv4.ip_forward", "1").map_err(step("enable ip_forward"))?;
    }
    firewall::allow_forward(&cfg.pod_network.to_string()).map_err(step("allow forwarding"))?;
    let except = [cfg.pod_network.to_string(), cfg.host_network.to_string()];
    firewall::masquerade(&cfg.pod_subnet.to_string(), &except).map_err(step("masquerade"))?;
    Ok(())
}

/// For [`Policy::node_problem`]: `ip_forward` is off (pods reach nothing past the node).
pub fn forwarding_problem() -> Result<Option<String>, CniError> {
    let fwd = sysctl::get(Netns::Host, "net.ipv4.ip_forward").map_err(step("read ip_forward"))?;
    Ok((fwd.trim() != "1").then(|| "net.ipv4.ip_forward is off".to_string()))
}

/// The pod side of CHECK: what ADD reported (`prevResult`, error 7 without it) against
/// the container: the interface is there and up with its MAC, addresses and routes
/// (error 102 saying what differs). Returns what ADD reported, for the node side.
pub fn check_pod(req: &Request) -> Result<prev::Expected, CniError> {
    let want = prev::expected(&req.config, &req.ifname).map_err(|m| cni(INVALID_CONFIG, m))?;
    let failed = |m: String| cni(CHECK_FAILED, m);
    let pod =
        links::get(Netns::Container, &req.ifname).map_err(step("look up container interface"))?;
    want.check_link(&req.ifname, pod.as_ref().map(|l| (l.up, l.mac.as_str())))
        .map_err(failed)?;
    let have =
        addresses::list(Netns::Container, &req.ifname).map_err(step("list pod addresses"))?;
    let table: Vec<(String, Option<String>)> = routes::list(Netns::Container, None)
        .map_err(step("list pod routes"))?
        .into_iter()
        .map(|r| (r.destination, r.gateway))
        .collect();
    want.check_config(&req.ifname, &have, &table)
        .map_err(failed)?;
    Ok(want)
}

/// DEL (see [`Policy::del`]).
pub fn del(node: &mut impl Node, req: &Request) -> Result<(), CniError> {
    remove_host_link(node, &req.host_link)?;
    if let Some(ip) = ipam::release(node, &req.container_id, &req.ifname).map_err(store_error)? {
        node.info(&format!("pod {} released {ip}", req.container_id));
    }
    Ok(())
}

/// GC (see [`Policy::gc`]).
pub fn gc(node: &mut impl Node, valid: &[Attachment]) -> Result<(), CniError> {
    for (cid, ifname) in ipam::holders(node).map_err(store_error)? {
        if valid
            .iter()
            .any(|a| a.container_id == cid && a.ifname == ifname)
        {
            continue;
        }
        let link = node.attachment_link(&cid, &ifname);
        remove_host_link(node, &link)?;
        let freed = ipam::release(node, &cid, &ifname).map_err(store_error)?;
        node.info(&format!("gc: released {cid}/{ifname} ({freed:?})"));
    }
    Ok(())
}

/// STATUS (see [`Policy::status`]). `node_problem` is asked only when pods hold
/// addresses: a node without pods is ready whatever its setup, which ADD redoes.
pub fn status(
    node: &mut impl Node,
    config: &str,
    node_problem: impl FnOnce(&Config) -> Result<Option<String>, CniError>,
) -> Result<(), CniError> {
    let cfg = parse_config(config)?;
    let pods = node
        .list("ip/")
        .map_err(|m| cni(NOT_AVAILABLE, format!("store unusable: {m}")))?
        .len();
    if pods == 0 {
        return Ok(());
    }
    match node_problem(&cfg)? {
        None => Ok(()),
        Some(problem) => Err(cni(
            LIMITED_CONNECTIVITY,
            format!("{problem}: the {pods} pod address(es) in use may have limited connectivity"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::tests::MapStore;
    use crate::ipam::Store;

    /// A node in memory: a store, the host links there are, what was logged.
    #[derive(Default)]
    struct Fake {
        store: MapStore,
        links: Vec<String>,
        log: Vec<String>,
        broken_links: bool,
        broken_store: bool,
    }

    impl ipam::Store for Fake {
        fn get(&mut self, key: &str) -> Result<Option<String>, String> {
            self.store.get(key)
        }
        fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
            self.store.put(key, value)
        }
        fn delete(&mut self, key: &str) -> Result<bool, String> {
            self.store.delete(key)
        }
        fn list(&mut self, prefix: &str) -> Result<Vec<String>, String> {
            if self.broken_store {
                return Err("store: I/O error".into());
            }
            self.store.list(prefix)
        }
    }

    impl Node for Fake {
        fn delete_host_link(&mut self, name: &str) -> Result<(), HostError> {
            if self.broken_links {
                return Err(HostError {
                    kind: ErrorKind::Denied,
                    message: format!("link {name:?}: denied"),
                });
            }
            match self.links.iter().position(|l| l == name) {
                Some(i) => {
                    self.links.remove(i);
                    Ok(())
                }
                None => Err(HostError {
                    kind: ErrorKind::NotFound,
                    message: format!("link {name:?}: not found"),
                }),
            }
        }
        fn attachment_link(&mut self, container_id: &str, ifname: &str) -> String {
            format!("wc-{container_id}-{ifname}")
        }
        fn info(&mut self, msg: &str) {
            self.log.push(msg.to_string());
        }
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lab","myHostNetwork":"10.0.0.0/16",
        "myPodNetwork":"200.200.0.0/16","myPodSubnet":"200.200.1.0/24"}"#;

    fn request(cid: &str) -> Request {
        Request {
            container_id: cid.into(),
            ifname: "eth0".into(),
            host_link: format!("wc-{cid}-eth0"),
            has_netns: true,
            args: Vec::new(),
            config: CONF.into(),
        }
    }

    /// A node with pods `cids` added: their address reserved, their host link there.
    fn node_with(cids: &[&str]) -> Fake {
        let mut n = Fake::default();
        let cfg = parse_config(CONF).unwrap();
        for cid in cids {
            allocate_in(&mut n, &cfg, &request(cid)).unwrap();
            n.links.push(format!("wc-{cid}-eth0"));
        }
        n
    }

    fn attachment(cid: &str) -> Attachment {
        Attachment {
            container_id: cid.into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn helpers_make_cni_errors() {
        let e = step("bring bridge up")(HostError {
            kind: ErrorKind::NotFound,
            message: "link \"cni0\": not found".into(),
        });
        assert_eq!(e.code, HOST_FAILED);
        assert_eq!(e.message, "bring bridge up: link \"cni0\": not found");
        assert!(e.details.is_empty());
        assert_eq!(store_error("full".into()).message, "address store: full");
        assert_eq!(parse_config("{}").unwrap_err().code, INVALID_CONFIG);
        assert!(parse_config(CONF).is_ok());
    }

    #[test]
    fn allocate_maps_exhaustion_to_101() {
        let conf = CONF.replace("200.200.1.0/24", "200.200.1.0/30");
        let cfg = parse_config(&conf).unwrap();
        let mut s = MapStore::default();
        let ip = allocate_in(&mut s, &cfg, &request("a")).unwrap();
        assert_eq!(ip, Ipv4Addr::new(200, 200, 1, 2));
        let e = allocate_in(&mut s, &cfg, &request("b")).unwrap_err();
        assert_eq!(e.code, POOL_EXHAUSTED);
        assert!(e.message.contains("no free address"), "{}", e.message);
    }

    #[test]
    fn del_removes_link_and_address_and_succeeds_twice() {
        let mut n = node_with(&["a", "b"]);
        del(&mut n, &request("a")).unwrap();
        assert_eq!(n.links, ["wc-b-eth0"]);
        assert!(!n.store.0.contains_key("attach/a/eth0"));
        assert_eq!(n.log, ["pod a released 200.200.1.2"]);
        // again: the link is gone (not found is fine), nothing to release, nothing logged
        del(&mut n, &request("a")).unwrap();
        assert_eq!(n.log.len(), 1);
        assert!(n.store.0.contains_key("attach/b/eth0"));
    }

    #[test]
    fn del_reports_a_link_it_may_not_remove() {
        let mut n = node_with(&["a"]);
        n.broken_links = true;
        let e = del(&mut n, &request("a")).unwrap_err();
        assert_eq!(e.code, HOST_FAILED);
        assert!(e.message.starts_with("remove host veth: "), "{}", e.message);
        // the address stays reserved: a later DEL or GC releases it
        assert!(n.store.0.contains_key("attach/a/eth0"));
    }

    #[test]
    fn gc_keeps_valid_attachments_and_releases_the_rest() {
        let mut n = node_with(&["a", "b", "c"]);
        // an ADD interrupted between its two writes: only the ip/ key
        n.store.put("ip/200.200.1.9", "d eth0").unwrap();
        gc(&mut n, &[attachment("b")]).unwrap();
        assert_eq!(n.links, ["wc-b-eth0"]);
        let left: Vec<&String> = n.store.0.keys().filter(|k| k.starts_with("ip/")).collect();
        assert_eq!(left, ["ip/200.200.1.3"]);
        assert_eq!(
            n.log,
            [
                "gc: released a/eth0 (Some(200.200.1.2))",
                "gc: released c/eth0 (Some(200.200.1.4))",
                "gc: released d/eth0 (Some(200.200.1.9))",
            ]
        );
        gc(&mut n, &[attachment("b")]).unwrap();
        assert_eq!(n.log.len(), 3, "a second GC has nothing to do");
    }

    #[test]
    fn gc_reports_a_broken_store() {
        let mut n = node_with(&["a"]);
        n.broken_store = true;
        let e = gc(&mut n, &[]).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (HOST_FAILED, "address store: store: I/O error")
        );
    }

    fn problem(p: Option<&str>) -> impl FnOnce(&Config) -> Result<Option<String>, CniError> + '_ {
        move |_| Ok(p.map(str::to_string))
    }

    #[test]
    fn status_is_ready_without_pods_whatever_the_node() {
        let mut n = Fake::default();
        status(&mut n, CONF, problem(None)).unwrap();
        // not even asked: ADD sets the node up again
        status(&mut n, CONF, |_| panic!("node_problem asked without pods")).unwrap();
    }

    #[test]
    fn status_is_51_when_pods_lost_what_they_depend_on() {
        let mut n = node_with(&["a", "b"]);
        status(&mut n, CONF, problem(None)).unwrap();
        let e = status(&mut n, CONF, problem(Some("bridge cni0 is missing"))).unwrap_err();
        assert_eq!(e.code, LIMITED_CONNECTIVITY);
        assert_eq!(
            e.message,
            "bridge cni0 is missing: the 2 pod address(es) in use may have limited connectivity"
        );
        // a failed look is the policy's error, as it made it
        let e = status(&mut n, CONF, |_| Err(cni(HOST_FAILED, "look up bridge: x"))).unwrap_err();
        assert_eq!(e.code, HOST_FAILED);
    }

    #[test]
    fn status_is_50_when_the_store_does_not_answer_and_7_for_a_bad_config() {
        let mut n = node_with(&["a"]);
        n.broken_store = true;
        let e = status(&mut n, CONF, problem(None)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (NOT_AVAILABLE, "store unusable: store: I/O error")
        );
        let e = status(&mut n, "{}", problem(None)).unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
    }
}
