//! The host side of every guest import: check the grants, do it, journal it.
//! Plain Rust (no wasm types), so it is testable on its own.

use crate::calllog::CallLog;
use crate::grants::{Grants, LinkOp};
use crate::journal::{Journal, Undo};
use crate::netlink::{LinkInfo, RouteSpec};
use crate::netns::Ns;
use crate::node::Node;
use crate::op_error::{OpError, OpKind, OpResult};
use ipnetwork::Ipv4Network;
use std::net::Ipv4Addr;

pub struct Sandbox {
    pub grants: Grants,
    /// The real node (`node::Kernel`) or the simulator's model.
    pub node: Box<dyn Node>,
    /// Present for ADD: what to undo if the call fails.
    pub journal: Option<Journal>,
    pub log: CallLog,
    /// The network's nftables table.
    pub table: String,
    /// How many host operations were asked for (for fault injection and the log).
    pub calls: u32,
    /// Test switch (feature `fault-injection` only): fail the k-th host call.
    fail_at: Option<u32>,
    /// Whether this call already learnt if the firewall table existed before it.
    fw_checked: bool,
    /// Time spent in host operations.
    pub host_time: std::time::Duration,
    /// Per-operation timings, kept when the config asks for `"timing": true`.
    pub trace: Option<Vec<(&'static str, std::time::Duration)>>,
    /// Every import call with its arguments and result (`wasm-cni simulate` prints it).
    pub transcript: Option<Vec<String>>,
}

fn cidr(text: &str) -> OpResult<Ipv4Network> {
    let n: Ipv4Network = text.parse().map_err(|_| {
        OpError::invalid(format!(
            "{text:?} is not an IPv4 address in CIDR form (like 200.200.1.2/24)"
        ))
    })?;
    Ok(n)
}

fn network(text: &str) -> OpResult<Ipv4Network> {
    let n = cidr(text)?;
    if n.network() != n.ip() {
        return Err(OpError::invalid(format!(
            "{text:?} is not a network: host bits are set"
        )));
    }
    Ok(n)
}

fn addr(text: &str) -> OpResult<Ipv4Addr> {
    text.parse()
        .map_err(|_| OpError::invalid(format!("{text:?} is not an IPv4 address")))
}

impl Sandbox {
    pub fn new(
        grants: Grants,
        node: Box<dyn Node>,
        journal: Option<Journal>,
        log: CallLog,
        table: String,
    ) -> Self {
        let fail_at = if cfg!(feature = "fault-injection") {
            std::env::var("WASM_CNI_FAIL_AT")
                .ok()
                .and_then(|v| v.parse().ok())
        } else {
            None
        };
        Sandbox {
            grants,
            node,
            journal,
            log,
            table,
            calls: 0,
            fail_at,
            fw_checked: false,
            host_time: std::time::Duration::ZERO,
            trace: None,
            transcript: None,
        }
    }

    /// Account the time of one host operation (called by the import adapters).
    pub fn note(&mut self, op: &'static str, d: std::time::Duration) {
        self.host_time += d;
        if let Some(t) = &mut self.trace {
            t.push((op, d));
        }
    }

    /// Every host operation starts here: count it, run the grant check, log refusals.
    fn gate(&mut self, what: &str, check: OpResult<()>) -> OpResult<()> {
        self.calls += 1;
        if self.fail_at == Some(self.calls) {
            return Err(OpError::failed(format!(
                "injected failure at host call {} ({what})",
                self.calls
            )));
        }
        if let Err(e) = &check {
            if e.kind == OpKind::Denied {
                self.log
                    .line("WARN", &format!("denied {what}: {}", e.message));
            }
        }
        check
    }

    fn record(&mut self, u: Undo) {
        if let Some(j) = &mut self.journal {
            j.record(u);
        }
    }

    /// Learn which host links carry a default route, the first time a host link that
    /// this call did not create is about to change.
    fn learn_uplinks(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        if self.grants.needs_uplinks(ns, name) {
            let up = self.node.default_route_links(Ns::Host)?;
            self.grants.set_uplinks(up);
        }
        Ok(())
    }

    fn link_check(&mut self, what: &str, ns: Ns, name: &str, op: LinkOp) -> OpResult<()> {
        let check = self
            .learn_uplinks(ns, name)
            .and_then(|_| self.grants.link(ns, name, op));
        self.gate(what, check)
    }

    // ---- links --------------------------------------------------------------------

    pub fn link_get(&mut self, ns: Ns, name: &str) -> OpResult<Option<LinkInfo>> {
        let check = self.grants.namespace(ns);
        self.gate(&format!("get link {name}"), check)?;
        self.node.get_link(ns, name)
    }

    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo> {
        self.link_check(
            &format!("create bridge {name}"),
            Ns::Host,
            name,
            LinkOp::Create,
        )?;
        let r = self.node.create_bridge(name, mtu);
        self.after_create(Ns::Host, name, &r);
        r
    }

    /// Journal a creation. A failure other than "already exists" may still have created
    /// the link (e.g. the lookup after the create failed), so it is journaled too:
    /// undoing a link that is not there is a no-op.
    fn after_create<T>(&mut self, ns: Ns, name: &str, r: &OpResult<T>) {
        match r {
            Err(e) if e.kind == OpKind::AlreadyExists => {}
            _ => {
                self.grants.created(ns, name);
                self.record(Undo::DeleteLink {
                    ns,
                    name: name.into(),
                });
            }
        }
    }

    pub fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: Option<u32>,
    ) -> OpResult<(LinkInfo, LinkInfo)> {
        let what = format!("create veth {host}/{peer}");
        let check = self
            .learn_uplinks(Ns::Host, host)
            .and_then(|_| self.grants.link(Ns::Host, host, LinkOp::Create))
            .and_then(|_| self.grants.link(Ns::Container, peer, LinkOp::Create));
        self.gate(&what, check)?;
        let pair = self.node.create_veth(host, peer, mtu)?;
        self.grants.created(Ns::Host, host);
        self.grants.created(Ns::Container, peer);
        self.record(Undo::DeleteLink {
            ns: Ns::Host,
            name: host.into(),
        });
        Ok(pair)
    }

    pub fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()> {
        let what = format!("attach {name} to {bridge}");
        let check = self
            .learn_uplinks(Ns::Host, name)
            .and_then(|_| self.grants.link(Ns::Host, name, LinkOp::Change))
            .and_then(|_| self.grants.link(Ns::Host, bridge, LinkOp::Change));
        self.gate(&what, check)?;
        self.node.set_master(name, bridge)
    }

    pub fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.link_check(&format!("set {name} up"), ns, name, LinkOp::Change)?;
        self.node.set_up(ns, name)
    }

    pub fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()> {
        self.link_check(&format!("set mtu of {name}"), ns, name, LinkOp::Change)?;
        if !(68..=65535).contains(&mtu) {
            return Err(OpError::invalid(format!(
                "mtu {mtu} is out of range (68..65535)"
            )));
        }
        self.node.set_mtu(ns, name, mtu)
    }

    pub fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.link_check(&format!("delete link {name}"), ns, name, LinkOp::Delete)?;
        self.node.delete_link(ns, name)
    }

    pub fn attachment_link(&self, container_id: &str, ifname: &str) -> String {
        crate::grants::attachment_link(self.grants.prefix(), container_id, ifname)
    }

    // ---- addresses ----------------------------------------------------------------

    pub fn address_add(&mut self, ns: Ns, link: &str, text: &str) -> OpResult<()> {
        let a = cidr(text)?;
        let check = self
            .learn_uplinks(ns, link)
            .and_then(|_| self.grants.address(ns, link, a, false));
        self.gate(&format!("add address {text} to {link}"), check)?;
        self.node.add_address(ns, link, a)?;
        self.record(Undo::RemoveAddress {
            ns,
            link: link.into(),
            addr: a,
        });
        Ok(())
    }

    pub fn address_remove(&mut self, ns: Ns, link: &str, text: &str) -> OpResult<()> {
        let a = cidr(text)?;
        let check = self
            .learn_uplinks(ns, link)
            .and_then(|_| self.grants.address(ns, link, a, true));
        self.gate(&format!("remove address {text} from {link}"), check)?;
        self.node.remove_address(ns, link, a)?;
        self.record(Undo::AddAddress {
            ns,
            link: link.into(),
            addr: a,
        });
        Ok(())
    }

    pub fn address_list(&mut self, ns: Ns, link: &str) -> OpResult<Vec<String>> {
        let check = self.grants.namespace(ns);
        self.gate(&format!("list addresses of {link}"), check)?;
        Ok(self
            .node
            .list_addresses(ns, link)?
            .iter()
            .map(|n| n.to_string())
            .collect())
    }

    // ---- routes -------------------------------------------------------------------

    fn route_spec(dst: &str, gw: Option<&str>, link: Option<&str>) -> OpResult<RouteSpec> {
        Ok(RouteSpec {
            destination: network(dst)?,
            gateway: gw.map(addr).transpose()?,
            link: link.map(str::to_string),
        })
    }

    /// The grant check of a route change (uplinks learnt first when a link is named).
    fn route_check(&mut self, what: &str, ns: Ns, r: &RouteSpec) -> OpResult<()> {
        let check = match &r.link {
            Some(l) => self.learn_uplinks(ns, l),
            None => Ok(()),
        }
        .and_then(|_| {
            self.grants
                .route(ns, r.destination, r.gateway, r.link.as_deref())
        });
        self.gate(what, check)
    }

    pub fn route_add(
        &mut self,
        ns: Ns,
        dst: &str,
        gw: Option<&str>,
        link: Option<&str>,
    ) -> OpResult<()> {
        let r = Self::route_spec(dst, gw, link)?;
        self.route_check(&format!("add route to {dst}"), ns, &r)?;
        self.node.add_route(ns, &r)?;
        self.record(Undo::RemoveRoute { ns, route: r });
        Ok(())
    }

    pub fn route_remove(
        &mut self,
        ns: Ns,
        dst: &str,
        gw: Option<&str>,
        link: Option<&str>,
    ) -> OpResult<()> {
        let r = Self::route_spec(dst, gw, link)?;
        self.route_check(&format!("remove route to {dst}"), ns, &r)?;
        self.node.remove_route(ns, &r)?;
        self.record(Undo::AddRoute { ns, route: r });
        Ok(())
    }

    pub fn route_list(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>> {
        let check = self.grants.namespace(ns);
        self.gate("list routes", check)?;
        self.node.list_routes(ns, link)
    }

    // ---- firewall -----------------------------------------------------------------

    /// Before the first rule change of an ADD: if our table does not exist yet, a
    /// rollback removes it whole.
    fn journal_table(&mut self) -> OpResult<()> {
        if self.journal.is_none() || self.fw_checked {
            return Ok(());
        }
        self.fw_checked = true;
        if !self.node.table_exists(&self.table)? {
            let t = self.table.clone();
            self.record(Undo::DeleteTable { table: t });
        }
        Ok(())
    }

    pub fn allow_forward(&mut self, net: &str) -> OpResult<()> {
        let n = network(net)?;
        let check = self.grants.firewall(n);
        self.gate(&format!("allow forwarding for {net}"), check)?;
        self.journal_table()?;
        self.node.allow_forward(&self.table, n)
    }

    pub fn masquerade(&mut self, source: &str, except: &[String]) -> OpResult<()> {
        let s = network(source)?;
        let ex = except
            .iter()
            .map(|e| cidr(e).map(|n| Ipv4Network::new(n.network(), n.prefix()).expect("valid")))
            .collect::<OpResult<Vec<_>>>()?;
        let check = self.grants.firewall(s);
        self.gate(&format!("masquerade {source}"), check)?;
        self.journal_table()?;
        self.node.masquerade(&self.table, s, &ex)
    }

    // ---- sysctl -------------------------------------------------------------------

    /// The grant check of a sysctl, once: the /proc path parts on success.
    fn sysctl_parts(&mut self, ns: Ns, key: &str, write: bool) -> OpResult<Vec<String>> {
        let what = format!("{} sysctl {key}", if write { "set" } else { "read" });
        // per-link keys name the link as the 4th part: learn the uplinks for it
        let link = key
            .split('.')
            .nth(3)
            .filter(|_| write && key.starts_with("net.ipv"));
        let check = match link {
            Some(l) => self.learn_uplinks(ns, l),
            None => Ok(()),
        }
        .and_then(|_| self.grants.sysctl(ns, key, write))
        .map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        match check {
            Ok(parts) => self.gate(&what, Ok(())).map(|_| parts),
            Err(e) => self.gate(&what, Err(e)).map(|_| Vec::new()),
        }
    }

    pub fn sysctl_get(&mut self, ns: Ns, key: &str) -> OpResult<String> {
        let parts = self.sysctl_parts(ns, key, false)?;
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        self.node.sysctl_get(ns, key, &refs)
    }

    pub fn sysctl_set(&mut self, ns: Ns, key: &str, value: &str) -> OpResult<()> {
        let parts = self.sysctl_parts(ns, key, true)?;
        if value.is_empty() || value.len() > 32 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(OpError::invalid(format!(
                "sysctl {key}: value {value:?} is not a short plain value"
            )));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let old = self.node.sysctl_get(ns, key, &refs)?;
        self.node.sysctl_set(ns, key, &refs, value)?;
        if old != value {
            self.record(Undo::RestoreSysctl {
                ns,
                key: key.into(),
                parts,
                old,
            });
        }
        Ok(())
    }

    // ---- store --------------------------------------------------------------------

    pub fn store_get(&mut self, key: &str) -> OpResult<Option<String>> {
        let check = crate::store::check_key(key);
        self.gate(&format!("store get {key}"), check)?;
        self.node.store_get(key)
    }

    pub fn store_put(&mut self, key: &str, value: &str) -> OpResult<()> {
        let check = crate::store::check_key(key);
        self.gate(&format!("store put {key}"), check)?;
        let old = if self.journal.is_some() {
            Some(self.node.store_get(key)?)
        } else {
            None
        };
        self.node.store_put(key, value)?;
        if let Some(old) = old {
            self.record(Undo::RestoreKey {
                key: key.into(),
                old,
            });
        }
        Ok(())
    }

    pub fn store_delete(&mut self, key: &str) -> OpResult<bool> {
        let check = crate::store::check_key(key);
        self.gate(&format!("store delete {key}"), check)?;
        let old = if self.journal.is_some() {
            self.node.store_get(key)?
        } else {
            None
        };
        let existed = self.node.store_delete(key)?;
        if existed {
            self.record(Undo::RestoreKey {
                key: key.into(),
                old,
            });
        }
        Ok(existed)
    }

    pub fn store_list(&mut self, prefix: &str) -> OpResult<Vec<String>> {
        self.gate("store list", Ok(()))?;
        self.node.store_list(prefix)
    }

    // ---- rollback -----------------------------------------------------------------

    /// Undo everything this call applied, newest first. Best effort: a step whose
    /// object is already gone is fine; other failures are logged and the rest goes on.
    /// Returns how many steps were undone and the failures.
    pub fn rollback(&mut self) -> (usize, Vec<String>) {
        let Some(mut j) = self.journal.take() else {
            return (0, Vec::new());
        };
        let steps = j.drain_reverse();
        let n = steps.len();
        let mut failures = Vec::new();
        for step in steps {
            let r = match &step {
                Undo::DeleteLink { ns, name } => self.node.delete_link(*ns, name),
                Undo::RemoveAddress { ns, link, addr } => {
                    self.node.remove_address(*ns, link, *addr)
                }
                Undo::RemoveRoute { ns, route } => self.node.remove_route(*ns, route),
                Undo::AddAddress { ns, link, addr } => self.node.add_address(*ns, link, *addr),
                Undo::AddRoute { ns, route } => self.node.add_route(*ns, route),
                Undo::SetMtu { ns, name, mtu } => self.node.set_mtu(*ns, name, *mtu),
                Undo::RestoreSysctl {
                    ns,
                    key,
                    parts,
                    old,
                } => {
                    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                    self.node.sysctl_set(*ns, key, &refs, old)
                }
                Undo::RestoreKey { key, old: Some(v) } => self.node.store_put(key, v),
                Undo::RestoreKey { key, old: None } => self.node.store_delete(key).map(|_| ()),
                Undo::DeleteTable { table } => self.node.delete_table(table),
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind == OpKind::NotFound => {}
                Err(e) => {
                    self.log.line("ERROR", &format!("rollback {step:?}: {e}"));
                    failures.push(format!("{step:?}: {e}"));
                }
            }
        }
        (n, failures)
    }
}
