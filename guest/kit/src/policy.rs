//! The shell around a policy: what every Rust guest does the same way, so that a
//! policy's own file holds only its policy.
//!
//! A guest implements [`Policy`] (ADD, CHECK, and optionally what STATUS looks at) and
//! exports it with `wasm_cni_guest_kit::export!(MyPolicy)`. DEL, GC and STATUS come
//! from here, as do the error codes, IPAM over the store, and the helpers that turn a
//! host error into a CNI error. The shared commands and helpers are written against
//! [`Node`], the host calls as a trait: [`Runner`] in a guest, the kit's
//! [`FakeNode`](crate::fake::FakeNode) in native unit tests. Each helper also has a
//! plain form that uses the runner (`allocate(&cfg, req)`), for policies that call the
//! host functions directly, as the starter does.

use crate::bindings::plugin::cluster::{self, FdbEntry, Neighbor, Node as ThisNode, Peer};
use crate::bindings::plugin::links::VethPair;
use crate::bindings::plugin::routes::Route;
use crate::bindings::plugin::types::{ErrorKind, HostError, LinkInfo, Netns};
use crate::bindings::plugin::{addresses, firewall, links, lock, log, routes, store, sysctl};
use crate::bindings::policy::{AddResult, Attachment, CniError, Guest, Request};
use crate::config::{Config, Family, Net};
use crate::{ipam, prev};
use std::net::IpAddr;

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
/// No free address in a pod subnet.
pub const POOL_EXHAUSTED: u32 = 101;
/// CHECK found the attachment different from what ADD left.
pub const CHECK_FAILED: u32 = 102;
/// The runtime asked for an address this node cannot give (`request.ips`: outside the
/// node's subnet of its family, a reserved address, or held by another attachment).
pub const REQUEST_REFUSED: u32 = 103;

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
    /// addresses. Needs nothing from the config, so a DEL after a config change still
    /// cleans up; a second DEL succeeds.
    fn del(req: &Request) -> Result<(), CniError> {
        del(&mut Runner, req)
    }

    /// GC: DEL for every attachment the store knows that is not in `valid`.
    fn gc(valid: &[Attachment]) -> Result<(), CniError> {
        gc(&mut Runner, valid)
    }

    /// STATUS: 7 when the config is invalid; 50 when the store does not answer; 51 when
    /// pods hold addresses and [`Policy::node_problem`] names a problem; else ready.
    fn status(config: &str) -> Result<(), CniError> {
        status(&mut Runner, config, Self::node_problem)
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

/// A policy that also keeps the node in line with the cluster (host-gw, VXLAN): the
/// world `cni-node-policy`, exported with `wasm_cni_guest_kit::export_node!(MyPolicy)`.
pub trait NodePolicy: Policy {
    /// `node-policy.reconcile`: bring the node in line with `config` (what
    /// `wasm-cni reconcile -c CONFLIST` runs after the peers list changed). An error is
    /// a message naming what failed; the runner undoes the call's changes.
    fn reconcile(config: &str) -> Result<(), String>;
}

impl<P: NodePolicy> crate::node_bindings::node_policy::Guest for P {
    fn reconcile(config: String) -> Result<(), String> {
        P::reconcile(&config)
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

/// The same for a store call made through [`Node`] (its errors are text).
pub fn store_step(what: &str) -> impl Fn(String) -> CniError + '_ {
    move |m| cni(HOST_FAILED, format!("{what}: {m}"))
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

/// The host calls, as a trait: [`Runner`] makes them (in a guest), the kit's
/// [`FakeNode`](crate::fake::FakeNode) records them (in native unit tests). Each is
/// the WIT function of the same name (`link_get` is `links.get`, ...).
pub trait Node: ipam::Store {
    fn link_get(&mut self, ns: Netns, name: &str) -> Result<Option<LinkInfo>, HostError>;
    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<LinkInfo, HostError>;
    fn create_veth(
        &mut self,
        host: &str,
        container: &str,
        mtu: Option<u32>,
        container_mac: Option<&str>,
    ) -> Result<VethPair, HostError>;
    fn set_master(&mut self, name: &str, bridge: &str) -> Result<(), HostError>;
    fn set_up(&mut self, ns: Netns, name: &str) -> Result<(), HostError>;
    fn delete_link(&mut self, ns: Netns, name: &str) -> Result<(), HostError>;
    fn attachment_link(&mut self, container_id: &str, ifname: &str) -> String;
    fn address_add(&mut self, ns: Netns, link: &str, address: &str) -> Result<(), HostError>;
    fn address_list(&mut self, ns: Netns, link: &str) -> Result<Vec<String>, HostError>;
    fn route_add(&mut self, ns: Netns, route: &Route) -> Result<(), HostError>;
    fn route_remove(&mut self, ns: Netns, route: &Route) -> Result<(), HostError>;
    fn route_list(&mut self, ns: Netns, link: Option<&str>) -> Result<Vec<Route>, HostError>;
    fn set_mtu(&mut self, ns: Netns, name: &str, mtu: u32) -> Result<(), HostError>;
    fn sysctl_get(&mut self, ns: Netns, key: &str) -> Result<String, HostError>;
    fn sysctl_set(&mut self, ns: Netns, key: &str, value: &str) -> Result<(), HostError>;
    fn allow_forward(&mut self, network: &str) -> Result<(), HostError>;
    fn masquerade(&mut self, source: &str, except: &[String]) -> Result<(), HostError>;
    fn info(&mut self, msg: &str);
    // interface `lock`: the critical section around shared state (a guest calling
    // these serves pods in parallel; see `wit/world.wit`)
    fn lock_acquire(&mut self) -> Result<(), HostError>;
    fn lock_release(&mut self);
    /// `log.write(warn, ..)`.
    fn warn(&mut self, msg: &str);
    // interface `cluster`
    fn this_node(&mut self) -> Result<ThisNode, HostError>;
    fn peers(&mut self) -> Result<Vec<Peer>, HostError>;
    fn create_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        port: u16,
        local: &str,
        mtu: Option<u32>,
        mac: Option<&str>,
    ) -> Result<LinkInfo, HostError>;
    fn fdb_add(&mut self, link: &str, entry: &FdbEntry) -> Result<(), HostError>;
    fn fdb_remove(&mut self, link: &str, entry: &FdbEntry) -> Result<(), HostError>;
    fn fdb_list(&mut self, link: &str) -> Result<Vec<FdbEntry>, HostError>;
    fn neighbor_add(&mut self, link: &str, entry: &Neighbor) -> Result<(), HostError>;
    fn neighbor_remove(&mut self, link: &str, address: &str) -> Result<(), HostError>;
    fn neighbor_list(&mut self, link: &str) -> Result<Vec<Neighbor>, HostError>;
}

/// The runner: its host functions, and its store as IPAM sees it.
pub struct Runner;

impl ipam::Store for Runner {
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

impl Node for Runner {
    fn link_get(&mut self, ns: Netns, name: &str) -> Result<Option<LinkInfo>, HostError> {
        links::get(ns, name)
    }
    fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<LinkInfo, HostError> {
        links::create_bridge(name, mtu)
    }
    fn create_veth(
        &mut self,
        host: &str,
        container: &str,
        mtu: Option<u32>,
        container_mac: Option<&str>,
    ) -> Result<VethPair, HostError> {
        links::create_veth(host, container, mtu, container_mac)
    }
    fn set_master(&mut self, name: &str, bridge: &str) -> Result<(), HostError> {
        links::set_master(name, bridge)
    }
    fn set_up(&mut self, ns: Netns, name: &str) -> Result<(), HostError> {
        links::set_up(ns, name)
    }
    fn delete_link(&mut self, ns: Netns, name: &str) -> Result<(), HostError> {
        links::delete(ns, name)
    }
    fn attachment_link(&mut self, container_id: &str, ifname: &str) -> String {
        links::attachment_link(container_id, ifname)
    }
    fn address_add(&mut self, ns: Netns, link: &str, address: &str) -> Result<(), HostError> {
        addresses::add(ns, link, address)
    }
    fn address_list(&mut self, ns: Netns, link: &str) -> Result<Vec<String>, HostError> {
        addresses::list(ns, link)
    }
    fn route_add(&mut self, ns: Netns, route: &Route) -> Result<(), HostError> {
        routes::add(ns, route)
    }
    fn route_remove(&mut self, ns: Netns, route: &Route) -> Result<(), HostError> {
        routes::remove(ns, route)
    }
    fn route_list(&mut self, ns: Netns, link: Option<&str>) -> Result<Vec<Route>, HostError> {
        routes::list(ns, link)
    }
    fn set_mtu(&mut self, ns: Netns, name: &str, mtu: u32) -> Result<(), HostError> {
        links::set_mtu(ns, name, mtu)
    }
    fn sysctl_get(&mut self, ns: Netns, key: &str) -> Result<String, HostError> {
        sysctl::get(ns, key)
    }
    fn sysctl_set(&mut self, ns: Netns, key: &str, value: &str) -> Result<(), HostError> {
        sysctl::set(ns, key, value)
    }
    fn allow_forward(&mut self, network: &str) -> Result<(), HostError> {
        firewall::allow_forward(network)
    }
    fn masquerade(&mut self, source: &str, except: &[String]) -> Result<(), HostError> {
        firewall::masquerade(source, except)
    }
    fn info(&mut self, msg: &str) {
        info(msg)
    }
    fn lock_acquire(&mut self) -> Result<(), HostError> {
        lock::acquire()
    }
    fn lock_release(&mut self) {
        lock::release()
    }
    fn warn(&mut self, msg: &str) {
        log::write(log::Level::Warn, msg)
    }
    fn this_node(&mut self) -> Result<ThisNode, HostError> {
        cluster::this_node()
    }
    fn peers(&mut self) -> Result<Vec<Peer>, HostError> {
        cluster::peers()
    }
    fn create_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        port: u16,
        local: &str,
        mtu: Option<u32>,
        mac: Option<&str>,
    ) -> Result<LinkInfo, HostError> {
        cluster::create_vxlan(name, vni, port, local, mtu, mac)
    }
    fn fdb_add(&mut self, link: &str, entry: &FdbEntry) -> Result<(), HostError> {
        cluster::fdb_add(link, entry)
    }
    fn fdb_remove(&mut self, link: &str, entry: &FdbEntry) -> Result<(), HostError> {
        cluster::fdb_remove(link, entry)
    }
    fn fdb_list(&mut self, link: &str) -> Result<Vec<FdbEntry>, HostError> {
        cluster::fdb_list(link)
    }
    fn neighbor_add(&mut self, link: &str, entry: &Neighbor) -> Result<(), HostError> {
        cluster::neighbor_add(link, entry)
    }
    fn neighbor_remove(&mut self, link: &str, address: &str) -> Result<(), HostError> {
        cluster::neighbor_remove(link, address)
    }
    fn neighbor_list(&mut self, link: &str) -> Result<Vec<Neighbor>, HostError> {
        cluster::neighbor_list(link)
    }
}

/// One address a pod got, in one of the node's pod subnets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodAddress {
    pub ip: IpAddr,
    /// The node's subnet of its family.
    pub subnet: Net,
}

impl PodAddress {
    pub fn family(&self) -> Family {
        Family::of(self.ip)
    }
    /// The address with the subnet's prefix: `200.200.1.2/24`, `fd00:200:1::2/64`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.subnet.prefix)
    }
    /// The subnet's gateway (its first address).
    pub fn gateway(&self) -> IpAddr {
        self.subnet.gateway()
    }
}

/// The addresses the runtime asked for (`request.ips`), one per family at most, as
/// addresses (a prefix length given with one is not used: the subnet's is). Error 103
/// for one of a family the node has no subnet for.
pub fn requested_ips(cfg: &Config, req: &Request) -> Result<Vec<IpAddr>, CniError> {
    let mut out: Vec<IpAddr> = Vec::new();
    for text in &req.ips {
        let addr = text.split_once('/').map_or(text.as_str(), |(a, _)| a);
        let ip: IpAddr = addr.parse().map_err(|_| {
            cni(
                REQUEST_REFUSED,
                format!("requested address {text:?} is not an IP address"),
            )
        })?;
        let family = Family::of(ip);
        if cfg.pod_subnet.get(family).is_none() {
            return Err(cni(
                REQUEST_REFUSED,
                format!(
                    "requested address {ip} is {family} but this node has no {family} pod subnet (myPodSubnet {})",
                    cfg.pod_subnet
                ),
            ));
        }
        if let Some(other) = out.iter().find(|o| Family::of(**o) == family) {
            return Err(cni(
                REQUEST_REFUSED,
                format!(
                    "two {family} addresses requested ({other} and {ip}): at most one per family"
                ),
            ));
        }
        out.push(ip);
    }
    Ok(out)
}

/// Reserve the pod's addresses, one in each of the node's pod subnets (IPv4 first):
/// the runtime's requested one of that family if any (error 103 when it cannot be
/// given), else the next free one (error 101 when none is), or what the attachment
/// holds already.
pub fn allocate(cfg: &Config, req: &Request) -> Result<Vec<PodAddress>, CniError> {
    allocate_on(&mut Runner, cfg, req)
}

/// [`allocate`] on `node`.
pub fn allocate_on(
    node: &mut dyn ipam::Store,
    cfg: &Config,
    req: &Request,
) -> Result<Vec<PodAddress>, CniError> {
    let wanted = requested_ips(cfg, req)?;
    let (cid, ifname) = (req.container_id.as_str(), req.ifname.as_str());
    let as_cni = |e| match e {
        ipam::IpamError::Exhausted(m) => cni(POOL_EXHAUSTED, m),
        ipam::IpamError::Refused(m) => cni(REQUEST_REFUSED, m),
        ipam::IpamError::Store(m) => store_error(m),
    };
    let requested = |subnet: Net| {
        wanted
            .iter()
            .copied()
            .find(|ip| Family::of(*ip) == subnet.family())
    };
    // every requested address is checked before any is reserved: a refused IPv6 one
    // must not first take (and the rollback give back) an IPv4 one
    for subnet in cfg.pod_subnet.iter() {
        if let Some(ip) = requested(subnet) {
            ipam::check_requested(node, subnet, ip, cid, ifname).map_err(as_cni)?;
        }
    }
    let mut out = Vec::new();
    for subnet in cfg.pod_subnet.iter() {
        let got = match requested(subnet) {
            Some(ip) => ipam::allocate_requested(node, subnet, ip, cid, ifname),
            None => ipam::allocate(node, subnet, cid, ifname),
        };
        out.push(PodAddress {
            ip: got.map_err(as_cni)?,
            subnet,
        });
    }
    Ok(out)
}

/// Remove the host end of an attachment's veth (the pod end, and routes through it, go
/// with it). Already gone is fine: DEL must succeed twice.
pub fn remove_host_veth(name: &str) -> Result<(), CniError> {
    remove_host_link(&mut Runner, name)
}

/// [`remove_host_veth`] on `node`.
pub fn remove_host_link(node: &mut impl Node, name: &str) -> Result<(), CniError> {
    match node.delete_link(Netns::Host, name) {
        Err(e) if e.kind != ErrorKind::NotFound => Err(step("remove host veth")(e)),
        _ => Ok(()),
    }
}

/// The host sysctl that turns forwarding on for a family.
pub fn forwarding_key(family: Family) -> &'static str {
    match family {
        Family::V4 => "net.ipv4.ip_forward",
        Family::V6 => "net.ipv6.conf.all.forwarding",
    }
}

/// Forwarding for the pods, once per node, for each family the node has a pod subnet
/// of: forwarding on, forwarding of the pod network allowed, and masquerade for pod
/// traffic leaving the cluster (IPv4 always; IPv6 only with `ipMasq6`).
pub fn enable_forwarding(cfg: &Config) -> Result<(), CniError> {
    enable_forwarding_on(&mut Runner, cfg)
}

/// [`enable_forwarding`] on `node`.
pub fn enable_forwarding_on(node: &mut impl Node, cfg: &Config) -> Result<(), CniError> {
    for subnet in cfg.pod_subnet.iter() {
        let family = subnet.family();
        let key = forwarding_key(family);
        let (read, enable) = match family {
            Family::V4 => ("read ip_forward", "enable ip_forward"),
            Family::V6 => ("read IPv6 forwarding", "enable IPv6 forwarding"),
        };
        let fwd = node.sysctl_get(Netns::Host, key).map_err(step(read))?;
        if fwd.trim() != "1" {
            node.sysctl_set(Netns::Host, key, "1")
                .map_err(step(enable))?;
        }
        // the config guarantees a pod network of each subnet's family
        let pods = cfg.pod_network.get(family).unwrap_or(subnet);
        node.allow_forward(&pods.to_string())
            .map_err(step("allow forwarding"))?;
        if family == Family::V6 && !cfg.ip_masq6 {
            continue;
        }
        let except: Vec<String> = [Some(pods), cfg.host_network.get(family)]
            .into_iter()
            .flatten()
            .map(|n| n.to_string())
            .collect();
        node.masquerade(&subnet.to_string(), &except)
            .map_err(step("masquerade"))?;
    }
    Ok(())
}

/// For [`Policy::node_problem`]: forwarding is off for a family the node has pods of
/// (pods reach nothing past the node).
pub fn forwarding_problem(cfg: &Config) -> Result<Option<String>, CniError> {
    forwarding_problem_on(&mut Runner, cfg)
}

/// [`forwarding_problem`] on `node`.
pub fn forwarding_problem_on(
    node: &mut impl Node,
    cfg: &Config,
) -> Result<Option<String>, CniError> {
    for subnet in cfg.pod_subnet.iter() {
        let key = forwarding_key(subnet.family());
        let what = match subnet.family() {
            Family::V4 => "read ip_forward",
            Family::V6 => "read IPv6 forwarding",
        };
        let fwd = node.sysctl_get(Netns::Host, key).map_err(step(what))?;
        if fwd.trim() != "1" {
            return Ok(Some(format!("{key} is off")));
        }
    }
    Ok(None)
}

/// The pod side of CHECK: what ADD reported (`prevResult`, error 7 without it) against
/// the container: the interface is there and up with its MAC, addresses and routes of
/// both families (error 102 saying what differs). Returns what ADD reported, for the
/// node side.
pub fn check_pod(req: &Request) -> Result<prev::Expected, CniError> {
    check_pod_on(&mut Runner, req)
}

/// [`check_pod`] on `node`.
pub fn check_pod_on(node: &mut impl Node, req: &Request) -> Result<prev::Expected, CniError> {
    let want = prev::expected(&req.config, &req.ifname).map_err(|m| cni(INVALID_CONFIG, m))?;
    let failed = |m: String| cni(CHECK_FAILED, m);
    let pod = node
        .link_get(Netns::Container, &req.ifname)
        .map_err(step("look up container interface"))?;
    want.check_link(&req.ifname, pod.as_ref().map(|l| (l.up, l.mac.as_str())))
        .map_err(failed)?;
    let have = node
        .address_list(Netns::Container, &req.ifname)
        .map_err(step("list pod addresses"))?;
    let table: Vec<(String, Option<String>)> = node
        .route_list(Netns::Container, None)
        .map_err(step("list pod routes"))?
        .into_iter()
        .map(|r| (r.destination, r.gateway))
        .collect();
    want.check_config(&req.ifname, &have, &table)
        .map_err(failed)?;
    Ok(want)
}

/// For CHECK: `prevResult` gave the pod an address in each of the node's pod subnets
/// (error 102 naming the one missing, e.g. after the config became dual-stack).
pub fn check_families(cfg: &Config, want: &prev::Expected, ifname: &str) -> Result<(), CniError> {
    for subnet in cfg.pod_subnet.iter() {
        let has = want.addresses.iter().any(|a| {
            a.split('/')
                .next()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .is_some_and(|ip| subnet.contains(ip))
        });
        if !has {
            return Err(cni(
                CHECK_FAILED,
                format!("the result of ADD has no address in {subnet} on {ifname:?}"),
            ));
        }
    }
    Ok(())
}

/// DEL (see [`Policy::del`]).
pub fn del(node: &mut impl Node, req: &Request) -> Result<(), CniError> {
    remove_host_link(node, &req.host_link)?;
    let freed = ipam::release(node, &req.container_id, &req.ifname).map_err(store_error)?;
    if !freed.is_empty() {
        let list: Vec<String> = freed.iter().map(IpAddr::to_string).collect();
        node.info(&format!(
            "pod {} released {}",
            req.container_id,
            list.join(", ")
        ));
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
        // `Some(a)` for one address, as contract 0.1's guests wrote it
        let list: Vec<String> = freed.iter().map(IpAddr::to_string).collect();
        let freed = if list.is_empty() {
            "None".to_string()
        } else {
            format!("Some({})", list.join(", "))
        };
        node.info(&format!("gc: released {cid}/{ifname} ({freed})"));
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
    use crate::fake::{FakeNode, MapStore, CONF, DUAL};
    use crate::ipam::Store;

    fn request(cid: &str) -> Request {
        Request {
            container_id: cid.into(),
            ifname: "eth0".into(),
            host_link: format!("wc-{cid}-eth0"),
            has_netns: true,
            args: Vec::new(),
            ips: Vec::new(),
            mac: None,
            config: CONF.into(),
        }
    }

    /// A node with pods `cids` added: their addresses reserved, their host link there.
    fn node_with(conf: &str, cids: &[&str]) -> FakeNode {
        let mut n = FakeNode::default();
        let cfg = parse_config(conf).unwrap();
        for cid in cids {
            allocate_on(&mut n, &cfg, &request(cid)).unwrap();
            n.add_link(Netns::Host, &format!("wc-{cid}-eth0"), true);
        }
        n.calls.clear();
        n
    }

    fn host_links(n: &FakeNode) -> Vec<&str> {
        n.links
            .keys()
            .filter(|(ns, _)| *ns == "host")
            .map(|(_, l)| l.as_str())
            .collect()
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
        assert_eq!(
            store_step("read node state")("gone".into()).message,
            "read node state: gone"
        );
        assert_eq!(parse_config("{}").unwrap_err().code, INVALID_CONFIG);
        assert!(parse_config(CONF).is_ok());
    }

    #[test]
    fn allocate_maps_exhaustion_to_101() {
        let conf = CONF.replace("200.200.1.0/24", "200.200.1.0/30");
        let cfg = parse_config(&conf).unwrap();
        let mut s = MapStore::default();
        let got = allocate_on(&mut s, &cfg, &request("a")).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].cidr(), "200.200.1.2/30");
        assert_eq!(got[0].gateway().to_string(), "200.200.1.1");
        let e = allocate_on(&mut s, &cfg, &request("b")).unwrap_err();
        assert_eq!(e.code, POOL_EXHAUSTED);
        assert!(e.message.contains("no free address"), "{}", e.message);
    }

    #[test]
    fn allocate_gives_one_address_per_family_ipv4_first() {
        let cfg = parse_config(DUAL).unwrap();
        let mut s = MapStore::default();
        let got = allocate_on(&mut s, &cfg, &request("a")).unwrap();
        let cidrs: Vec<String> = got.iter().map(PodAddress::cidr).collect();
        assert_eq!(cidrs, ["200.200.1.2/24", "fd00:200:1::2/64"]);
        assert_eq!(got[1].gateway().to_string(), "fd00:200:1::1");
        assert_eq!(got[1].family(), Family::V6);
    }

    #[test]
    fn a_refused_requested_address_reserves_nothing_of_the_other_family() {
        let cfg = parse_config(DUAL).unwrap();
        let mut s = MapStore::default();
        allocate_on(&mut s, &cfg, &request("a")).unwrap();
        let before = s.0.clone();
        for bad in ["fd00:200:7::9", "fd00:200:1::1"] {
            let mut b = request("b");
            b.ips = vec![bad.into()];
            let e = allocate_on(&mut s, &cfg, &b).unwrap_err();
            assert_eq!(e.code, REQUEST_REFUSED, "{bad}: {}", e.message);
            assert_eq!(s.0, before, "{bad}: the store is as it was");
        }
        // taken by another attachment: refused before the IPv4 address is reserved
        let mut b = request("b");
        b.ips = vec!["fd00:200:1::2".into()];
        assert!(allocate_on(&mut s, &cfg, &b)
            .unwrap_err()
            .message
            .contains("is taken by a/eth0"));
        assert_eq!(s.0, before);
    }

    #[test]
    fn allocate_honours_requested_addresses_or_says_why_not() {
        let cfg = parse_config(DUAL).unwrap();
        let mut s = MapStore::default();
        let mut req = request("a");
        req.ips = vec!["fd00:200:1::99/64".into()];
        let got = allocate_on(&mut s, &cfg, &req).unwrap();
        let cidrs: Vec<String> = got.iter().map(PodAddress::cidr).collect();
        // the IPv4 one by round robin, the IPv6 one as asked
        assert_eq!(cidrs, ["200.200.1.2/24", "fd00:200:1::99/64"]);
        let mut b = request("b");
        b.ips = vec!["200.200.1.2".into()];
        let e = allocate_on(&mut s, &cfg, &b).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                REQUEST_REFUSED,
                "requested address 200.200.1.2 is taken by a/eth0"
            )
        );
        b.ips = vec!["200.200.7.2".into()];
        let e = allocate_on(&mut s, &cfg, &b).unwrap_err();
        assert_eq!(
            e.message,
            "requested address 200.200.7.2 is not in 200.200.1.0/24"
        );
        b.ips = vec!["200.200.1.9".into(), "200.200.1.10".into()];
        let e = allocate_on(&mut s, &cfg, &b).unwrap_err();
        assert_eq!(e.code, REQUEST_REFUSED);
        assert!(
            e.message.starts_with("two IPv4 addresses requested"),
            "{}",
            e.message
        );
        // a family the node has no subnet of
        let v4 = parse_config(CONF).unwrap();
        b.ips = vec!["fd00:200:1::9".into()];
        let e = allocate_on(&mut s, &v4, &b).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                REQUEST_REFUSED,
                "requested address fd00:200:1::9 is IPv6 but this node has no IPv6 pod subnet (myPodSubnet 200.200.1.0/24)"
            )
        );
        b.ips = vec!["nonsense".into()];
        assert_eq!(
            allocate_on(&mut s, &v4, &b).unwrap_err().code,
            REQUEST_REFUSED
        );
    }

    #[test]
    fn enable_forwarding_for_ipv4_is_as_in_contract_0_1() {
        let mut n = FakeNode::default();
        enable_forwarding_on(&mut n, &parse_config(CONF).unwrap()).unwrap();
        assert_eq!(
            n.host_calls(),
            [
                r#"sysctl.get(host, "net.ipv4.ip_forward")"#,
                r#"sysctl.set(host, "net.ipv4.ip_forward", "1")"#,
                r#"firewall.allow-forward("200.200.0.0/16")"#,
                r#"firewall.masquerade("200.200.1.0/24", ["200.200.0.0/16", "10.0.0.0/16"])"#,
            ]
        );
        // once on, not written again
        n.calls.clear();
        enable_forwarding_on(&mut n, &parse_config(CONF).unwrap()).unwrap();
        assert_eq!(n.host_calls().len(), 3);
    }

    #[test]
    fn enable_forwarding_dual_stack_masquerades_ipv6_only_when_asked() {
        let mut n = FakeNode::default();
        enable_forwarding_on(&mut n, &parse_config(DUAL).unwrap()).unwrap();
        assert_eq!(
            n.host_calls()[4..],
            [
                r#"sysctl.get(host, "net.ipv6.conf.all.forwarding")"#,
                r#"sysctl.set(host, "net.ipv6.conf.all.forwarding", "1")"#,
                r#"firewall.allow-forward("fd00:200::/32")"#,
            ]
        );
        let masq = DUAL.replace(r#""name":"lab""#, r#""name":"lab","ipMasq6":true"#);
        let mut n = FakeNode::default();
        enable_forwarding_on(&mut n, &parse_config(&masq).unwrap()).unwrap();
        // no IPv6 host network given: only the pod network is exempt
        assert_eq!(
            n.host_calls().last().unwrap(),
            &r#"firewall.masquerade("fd00:200:1::/64", ["fd00:200::/32"])"#
        );
        assert_eq!(
            forwarding_problem_on(&mut n, &parse_config(DUAL).unwrap()).unwrap(),
            None
        );
        n.sysctls
            .insert(("host", "net.ipv6.conf.all.forwarding".into()), "0".into());
        assert_eq!(
            forwarding_problem_on(&mut n, &parse_config(DUAL).unwrap()).unwrap(),
            Some("net.ipv6.conf.all.forwarding is off".into())
        );
        // an IPv4-only node does not look at IPv6 forwarding
        assert_eq!(
            forwarding_problem_on(&mut n, &parse_config(CONF).unwrap()).unwrap(),
            None
        );
    }

    #[test]
    fn check_families_wants_an_address_per_subnet() {
        let cfg = parse_config(DUAL).unwrap();
        let mut want = prev::Expected {
            addresses: vec!["200.200.1.2/24".into()],
            ..Default::default()
        };
        let e = check_families(&cfg, &want, "eth0").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                CHECK_FAILED,
                "the result of ADD has no address in fd00:200:1::/64 on \"eth0\""
            )
        );
        want.addresses.push("fd00:200:1::2/64".into());
        check_families(&cfg, &want, "eth0").unwrap();
    }

    #[test]
    fn del_removes_link_and_address_and_succeeds_twice() {
        let mut n = node_with(CONF, &["a", "b"]);
        del(&mut n, &request("a")).unwrap();
        assert_eq!(host_links(&n), ["wc-b-eth0"]);
        assert!(!n.store.0.contains_key("attach/a/eth0"));
        assert_eq!(n.log, ["pod a released 200.200.1.2"]);
        // again: the link is gone (not found is fine), nothing to release, nothing logged
        del(&mut n, &request("a")).unwrap();
        assert_eq!(n.log.len(), 1);
        assert!(n.store.0.contains_key("attach/b/eth0"));
    }

    #[test]
    fn del_releases_both_families() {
        let mut n = node_with(DUAL, &["a", "b"]);
        del(&mut n, &request("a")).unwrap();
        assert_eq!(n.log, ["pod a released 200.200.1.2, fd00:200:1::2"]);
        assert!(!n.store.0.values().any(|v| v == "a eth0"));
        assert_eq!(n.store.0["attach6/b/eth0"], "fd00:200:1::3");
    }

    #[test]
    fn del_reports_a_link_it_may_not_remove() {
        let mut n = node_with(CONF, &["a"]);
        n.fail.insert("links.delete");
        let e = del(&mut n, &request("a")).unwrap_err();
        assert_eq!(e.code, HOST_FAILED);
        assert!(e.message.starts_with("remove host veth: "), "{}", e.message);
        // the address stays reserved: a later DEL or GC releases it
        assert!(n.store.0.contains_key("attach/a/eth0"));
    }

    #[test]
    fn gc_keeps_valid_attachments_and_releases_the_rest() {
        let mut n = node_with(CONF, &["a", "b", "c"]);
        // an ADD interrupted between its two writes: only the ip/ key
        n.store.put("ip/200.200.1.9", "d eth0").unwrap();
        gc(&mut n, &[attachment("b")]).unwrap();
        assert_eq!(host_links(&n), ["wc-b-eth0"]);
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
    fn gc_releases_both_families() {
        let mut n = node_with(DUAL, &["a", "b"]);
        gc(&mut n, &[attachment("b")]).unwrap();
        assert_eq!(
            n.log,
            ["gc: released a/eth0 (Some(200.200.1.2, fd00:200:1::2))"]
        );
        let left: Vec<&String> = n.store.0.keys().filter(|k| k.starts_with("ip/")).collect();
        assert_eq!(left, ["ip/200.200.1.3", "ip/fd00:200:1::3"]);
    }

    #[test]
    fn gc_reports_a_broken_store() {
        let mut n = node_with(CONF, &["a"]);
        n.fail.insert("store.list");
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
        let mut n = FakeNode::default();
        status(&mut n, CONF, problem(None)).unwrap();
        // not even asked: ADD sets the node up again
        status(&mut n, CONF, |_| panic!("node_problem asked without pods")).unwrap();
    }

    #[test]
    fn status_is_51_when_pods_lost_what_they_depend_on() {
        let mut n = node_with(CONF, &["a", "b"]);
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
        let mut n = node_with(CONF, &["a"]);
        n.fail.insert("store.list");
        let e = status(&mut n, CONF, problem(None)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (NOT_AVAILABLE, "store unusable: store: I/O error")
        );
        let e = status(&mut n, "{}", problem(None)).unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
    }
}
