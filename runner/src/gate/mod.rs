//! The host side of every guest import: check the grants, do it, journal it.
//! Plain Rust (no wasm types), so it is testable on its own.
//!
//! The promise: whatever a guest does, a failed ADD leaves the node as it was, and a
//! successful call leaves only what the grants allow. So every mutating operation here
//! (1) passes `gate` (grants, per-call limits, read-only commands, the deadline),
//! (2) snapshots the exact prior state of what it changes and journals how to restore
//! it, or is refused when that state cannot be restored exactly, (3) then acts.

use crate::calllog::CallLog;
use crate::cni::config::Limits;
use crate::cni::config::Peer;
use crate::cni::output::AddResult;
use crate::mac::{Mac, MacError};
use crate::node::{
    network_of, Family, FdbEntry, LinkInfo, NeighborEntry, Node, Ns, OpError, OpKind, OpResult,
    RouteSpec, StoreUsage, SysctlKey, SysctlValue, VxlanSpec,
};
use grants::{Grants, LinkOp};
use journal::{Journal, Undo};

pub(crate) mod grants;
pub(crate) mod journal;
#[cfg(test)]
mod tests;
use ipnetwork::IpNetwork;
use std::net::IpAddr;

/// At most this many `except` networks in one masquerade request (each becomes an nft
/// set element; the request must stay a bounded amount of work).
pub const MAX_EXCEPT: usize = 64;

/// The smallest MTU of a link with IPv6 (RFC 8200).
const IPV6_MIN_MTU: u32 = 1280;

/// What one call used of its `Limits`.
#[derive(Default, Debug, Clone, Copy)]
pub struct Used {
    pub links: u64,
    pub addresses: u64,
    pub routes: u64,
    pub firewall_rules: u64,
    pub store_writes: u64,
    pub store_bytes: u64,
    pub log_bytes: u64,
}

pub(crate) struct Gate {
    pub grants: Grants,
    /// The real node (`node::Kernel`) or the simulator's model.
    pub node: Box<dyn Node>,
    /// Present for ADD and RECONCILE: what to undo if the call fails.
    pub journal: Option<Journal>,
    pub log: CallLog,
    /// The digest of the guest making the call (recorded with an ADD's addresses).
    pub guest: String,
    /// The network's nftables table's name (`ip` and, for IPv6 rules, `ip6`).
    pub table: String,
    /// How many host operations were asked for (for fault injection and the log).
    pub calls: u32,
    /// Test switches (feature `fault-injection` only): fail (`WASM_CNI_FAIL_AT`) or
    /// panic (`WASM_CNI_PANIC_AT`) at the k-th host call.
    fail_at: Option<u32>,
    panic_at: Option<u32>,
    /// Whether this call already saved the firewall table of each family (by
    /// `Family::index`) as it was before the call.
    table_saved: [bool; 2],
    /// Time spent in host operations.
    pub host_time: std::time::Duration,
    /// Per-operation timings, kept when the config asks for `"timing": true`.
    pub trace: Option<Vec<(&'static str, std::time::Duration)>>,
    /// Every import call with its arguments and result (`wasm-cni simulate` prints it).
    pub transcript: Option<Vec<String>>,
    /// The call's bounds, and what it used of them.
    pub limits: Limits,
    pub used: Used,
    /// The store's size, learnt at the call's first write and kept up to date.
    store_usage: Option<StoreUsage>,
    /// Set when the call was stopped (deadline, signal): every later host call fails.
    pub aborted: bool,
    log_truncated: bool,
    /// The guest imports `lock` and the command serves pods in parallel (ADD, DEL,
    /// CHECK): the call holds the network's lock only from `acquire` (or its first
    /// store call) to `release`. Otherwise the lock is held for the whole call, and
    /// `release` does nothing.
    pub explicit_lock: bool,
    /// How long the lock may be waited for (`lockTimeoutMs`).
    pub lock_timeout: std::time::Duration,
    /// How long this call waited for the lock inside the gate.
    pub lock_wait: std::time::Duration,
    /// Set when a wait for the lock timed out: the call fails with code 11.
    pub lock_timed_out: Option<String>,
}

/// The boundary: guest text, of either family, parsed once into typed values.
fn cidr(text: &str) -> OpResult<IpNetwork> {
    let n: IpNetwork = text.parse().map_err(|_| {
        OpError::invalid(format!(
            "{text:?} is not an address in CIDR form (like 200.200.1.2/24 or fd00:200:1::2/64)"
        ))
    })?;
    Ok(n)
}

fn network(text: &str) -> OpResult<IpNetwork> {
    let n = cidr(text)?;
    if n.network() != n.ip() {
        return Err(OpError::invalid(format!(
            "{text:?} is not a network: host bits are set"
        )));
    }
    Ok(n)
}

fn addr(text: &str) -> OpResult<IpAddr> {
    text.parse()
        .map_err(|_| OpError::invalid(format!("{text:?} is not an IP address")))
}

/// A MAC a node entry may hold: a typo is an invalid argument; a multicast or all-zero
/// one is refused (an all-zero FDB entry floods every frame to its remote).
fn unicast_mac(what: &str, text: &str) -> OpResult<Mac> {
    text.parse().map_err(|e: MacError| match e {
        MacError::Syntax(_) => OpError::invalid(format!("{what}: {e}")),
        MacError::Multicast(_) | MacError::Zero(_) => OpError::denied(format!("{what}: {e}")),
    })
}

/// Is `ip` a global address (what a node IP learnt from the uplink may be)?
fn global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_link_local() || a.is_loopback() || a.is_unspecified()),
        IpAddr::V6(a) => {
            (a.segments()[0] & 0xffc0) != 0xfe80 && !(a.is_loopback() || a.is_unspecified())
        }
    }
}

/// A refusal because the prior state could not be put back exactly.
fn not_undoable(what: &str, why: &str) -> OpError {
    OpError::denied(format!(
        "{what}: refused in ADD because it cannot be undone exactly if the call fails ({why})"
    ))
}

impl Gate {
    pub fn new(
        grants: Grants,
        node: Box<dyn Node>,
        journal: Option<Journal>,
        log: CallLog,
        table: String,
    ) -> Self {
        let switch = |name: &str| {
            if cfg!(feature = "fault-injection") {
                std::env::var(name).ok().and_then(|v| v.parse().ok())
            } else {
                None
            }
        };
        let (fail_at, panic_at) = (switch("WASM_CNI_FAIL_AT"), switch("WASM_CNI_PANIC_AT"));
        Gate {
            grants,
            node,
            journal,
            log,
            guest: String::new(),
            table,
            calls: 0,
            fail_at,
            panic_at,
            table_saved: [false; 2],
            host_time: std::time::Duration::ZERO,
            trace: None,
            transcript: None,
            limits: Limits::default(),
            used: Used::default(),
            store_usage: None,
            aborted: false,
            log_truncated: false,
            explicit_lock: false,
            lock_timeout: std::time::Duration::from_secs(20),
            lock_wait: std::time::Duration::ZERO,
            lock_timed_out: None,
        }
    }

    // ---- the network's lock ---------------------------------------------------------

    /// Be inside the network's lock (nothing when inside already, as always in the
    /// whole-call mode). Returns whether this entered it.
    pub fn enter_lock(&mut self) -> OpResult<bool> {
        self.enter_lock_while(true)
    }

    /// `interruptible`: a stop request ends the wait (not for the rollback, which must
    /// wait for the lock to undo store changes).
    fn enter_lock_while(&mut self, interruptible: bool) -> OpResult<bool> {
        match self.node.lock_enter(self.lock_timeout, interruptible) {
            Ok(Some(waited)) => {
                self.lock_wait += waited;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                if e.errno == Some(libc::EAGAIN) {
                    self.lock_timed_out = Some(e.message.clone());
                }
                Err(e)
            }
        }
    }

    /// Leave the network's lock (explicit mode only). The store's size goes back
    /// first: the next holder counts from it.
    pub fn leave_lock(&mut self) {
        if !self.explicit_lock {
            return;
        }
        if let Err(e) = self.save_usage() {
            self.log
                .line("WARN", &format!("{e} (the next call counts the store)"));
        }
        self.node.lock_leave();
    }

    /// `lock.acquire`: enter the critical section.
    pub fn lock_acquire(&mut self) -> OpResult<()> {
        self.gate("lock acquire", Ok(()))?;
        self.enter_lock().map(|_| ())
    }

    /// `lock.release`: leave it (nothing in the whole-call mode, or when outside).
    /// Not counted in `calls`: it cannot fail, so fault injection has nothing to fail.
    pub fn lock_release(&mut self) {
        if !self.aborted {
            self.leave_lock();
        }
    }

    /// Run `f` inside the lock; leave it after if this entered it (runner reads of
    /// its records while the guest works outside the critical section).
    fn inside_lock<T>(&mut self, f: impl FnOnce(&mut Self) -> OpResult<T>) -> OpResult<T> {
        let entered = self.enter_lock()?;
        let r = f(self);
        if entered {
            self.leave_lock();
        }
        r
    }

    /// Account the time of one host operation (called by the import adapters).
    pub fn note(&mut self, op: &'static str, d: std::time::Duration) {
        self.host_time += d;
        if let Some(t) = &mut self.trace {
            t.push((op, d));
        }
    }

    /// A line in the call log on the guest's behalf (its own lines and refusals it
    /// caused), within the call's log budget: past it, one "log truncated" line.
    pub fn guest_log(&mut self, level: &str, msg: &str) {
        let n = msg.len() as u64 + 64;
        if self.used.log_bytes + n > self.limits.log_bytes {
            if !self.log_truncated {
                self.log_truncated = true;
                self.log.line(
                    "WARN",
                    &format!(
                        "log truncated: this call reached its budget of {} bytes (limits.logBytes); later guest lines are dropped",
                        self.limits.log_bytes
                    ),
                );
            }
            return;
        }
        self.used.log_bytes += n;
        self.log.line(level, msg);
    }

    /// Every host operation starts here: count it, refuse everything once the call was
    /// stopped, run the grant check, log refusals.
    fn gate(&mut self, what: &str, check: OpResult<()>) -> OpResult<()> {
        self.calls += 1;
        if self.aborted {
            return Err(OpError::failed(format!(
                "{what}: the call was stopped (deadline or signal)"
            )));
        }
        if self.panic_at == Some(self.calls) {
            panic!("injected panic at host call {} ({what})", self.calls);
        }
        if self.fail_at == Some(self.calls) {
            return Err(OpError::failed(format!(
                "injected failure at host call {} ({what})",
                self.calls
            )));
        }
        if let Err(e) = &check {
            if e.kind == OpKind::Denied {
                self.guest_log("WARN", &format!("denied {what}: {}", e.message));
            }
        }
        check
    }

    /// The gate of an operation that changes the node: also refused in read-only
    /// commands (CHECK, STATUS).
    fn gate_change(&mut self, what: &str, check: OpResult<()>) -> OpResult<()> {
        let check = self.grants.writable(what).and(check);
        self.gate(what, check)
    }

    /// Routes (and FDB and neighbour entries) one call may add: `limits.routes`, plus
    /// 8 per node in `peers`, since a dual-stack VXLAN sync makes 7 objects per peer
    /// (the operator's list, not the guest, sets how many).
    fn routes_limit(&self) -> u64 {
        let per_node = 8 * self.grants.listed_nodes() as u64;
        self.limits.routes.saturating_add(per_node)
    }

    /// One more of something a call may do at most `max` times.
    fn count(used: &mut u64, max: u64, what: &str, key: &str) -> OpResult<()> {
        if *used >= max {
            return Err(OpError::denied(format!(
                "{what}: per-call limit of {max} reached (limits.{key})"
            )));
        }
        *used += 1;
        Ok(())
    }

    fn record(&mut self, u: Undo) {
        if let Some(j) = &mut self.journal {
            j.record(u);
        }
    }

    fn journaled(&self) -> bool {
        self.journal.is_some()
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
        self.gate_change(what, check)
    }

    /// The link as it is now (for its prior state), `not-found` if absent.
    fn current(&mut self, ns: Ns, name: &str) -> OpResult<LinkInfo> {
        self.node.get_link(ns, name)?.ok_or_else(|| {
            OpError::not_found(format!("link {name:?} in the {ns} namespace: not found"))
        })
    }

    // ---- links --------------------------------------------------------------------

    pub fn link_get(&mut self, ns: Ns, name: &str) -> OpResult<Option<LinkInfo>> {
        let check = self.grants.namespace(ns);
        self.gate(&format!("get link {name}"), check)?;
        self.node.get_link(ns, name)
    }

    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo> {
        let what = format!("create bridge {name}");
        self.link_check(&what, Ns::Host, name, LinkOp::Create)?;
        Self::count(&mut self.used.links, self.limits.links, &what, "links")?;
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
        container_mac: Option<&str>,
    ) -> OpResult<(LinkInfo, LinkInfo)> {
        let what = match container_mac {
            None => format!("create veth {host}/{peer}"),
            Some(m) => format!("create veth {host}/{peer} (container mac {m:?})"),
        };
        let mac = container_mac
            .map(|m| {
                m.parse::<crate::mac::Mac>()
                    .map_err(|e| OpError::invalid(format!("container-mac: {e}")))
            })
            .transpose()?;
        let check = self
            .learn_uplinks(Ns::Host, host)
            .and_then(|_| self.grants.link(Ns::Host, host, LinkOp::Create))
            .and_then(|_| self.grants.link(Ns::Container, peer, LinkOp::Create))
            .and_then(|_| self.grants.container_mac(mac));
        self.gate_change(&what, check)?;
        Self::count(&mut self.used.links, self.limits.links, &what, "links")?;
        let r = self.node.create_veth(host, peer, mtu, mac);
        // deleting the host end takes the peer along
        self.after_create(Ns::Host, host, &r);
        if !matches!(&r, Err(e) if e.kind == OpKind::AlreadyExists) {
            self.grants.created(Ns::Container, peer);
        }
        r
    }

    pub fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()> {
        let what = format!("attach {name} to {bridge}");
        let check = self
            .learn_uplinks(Ns::Host, name)
            .and_then(|_| self.learn_uplinks(Ns::Host, bridge))
            .and_then(|_| self.grants.link(Ns::Host, name, LinkOp::Change))
            .and_then(|_| self.grants.link(Ns::Host, bridge, LinkOp::Change))
            .and_then(|_| self.grants.enslave(name));
        self.gate_change(&what, check)?;
        // a link this call created goes whole with its DeleteLink undo
        if self.journaled() && !self.grants.is_created(Ns::Host, name) {
            let link = self.current(Ns::Host, name)?;
            let target = self.current(Ns::Host, bridge)?;
            match link.master {
                Some(i) if i == target.index => {}
                None => self.record(Undo::RestoreMaster {
                    name: name.into(),
                    master: None,
                }),
                Some(i) => {
                    // only the configured bridge can be named back
                    let conf = self.grants.bridge().to_string();
                    match self.node.get_link(Ns::Host, &conf)? {
                        Some(b) if b.index == i => self.record(Undo::RestoreMaster {
                            name: name.into(),
                            master: Some(conf),
                        }),
                        _ => return Err(not_undoable(&what, "it is attached to another bridge")),
                    }
                }
            }
        }
        self.node.set_master(name, bridge)
    }

    /// Before an undo that makes the kernel flush the link's IPv6 addresses: keep them,
    /// to be put back after it (journaled first, so undone last).
    fn keep_ipv6_addresses(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        let saved = self.node.save_addresses(ns, name, Family::V6)?;
        if !saved.is_empty() {
            self.record(Undo::RestoreAddresses {
                ns,
                link: name.into(),
                saved,
            });
        }
        Ok(())
    }

    pub fn set_up(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        self.link_check(&format!("set {name} up"), ns, name, LinkOp::Change)?;
        if self.journaled() && !self.grants.is_created(ns, name) && !self.current(ns, name)?.up {
            // setting it down again flushes its IPv6 addresses (keep_addr_on_down)
            self.keep_ipv6_addresses(ns, name)?;
            self.record(Undo::SetDown {
                ns,
                name: name.into(),
            });
        }
        self.node.set_up(ns, name)
    }

    pub fn set_mtu(&mut self, ns: Ns, name: &str, mtu: u32) -> OpResult<()> {
        let what = format!("set mtu of {name}");
        let check = self
            .learn_uplinks(ns, name)
            .and_then(|_| self.grants.link(ns, name, LinkOp::Change))
            .and_then(|_| self.grants.bridge_mtu(ns, name));
        self.gate_change(&what, check)?;
        if !(68..=65535).contains(&mtu) {
            return Err(OpError::invalid(format!(
                "mtu {mtu} is out of range (68..65535)"
            )));
        }
        if self.journaled() && !self.grants.is_created(ns, name) {
            let old = self.current(ns, name)?.mtu;
            if old >= IPV6_MIN_MTU && mtu < IPV6_MIN_MTU && self.ipv6_on(ns, name)? {
                // below 1280 the kernel drops the link's IPv6 state whole (addresses,
                // routes through it, its net.ipv6.conf settings back to defaults, so
                // accept_ra 1 again); raising the MTU again brings none of it back
                let e = not_undoable(
                    &what,
                    "below 1280 the kernel drops the link's IPv6 addresses, routes and settings",
                );
                self.guest_log("WARN", &format!("denied {}", e.message));
                return Err(e);
            }
            if old != mtu {
                self.record(Undo::SetMtu {
                    ns,
                    name: name.into(),
                    mtu: old,
                });
            }
        }
        self.node.set_mtu(ns, name, mtu)
    }

    /// Does the link run IPv6 (its `disable_ipv6` is 0)? Not when the kernel has no
    /// IPv6 for it.
    fn ipv6_on(&mut self, ns: Ns, name: &str) -> OpResult<bool> {
        let key = SysctlKey::per_link(Family::V6, name, "disable_ipv6");
        match self.node.sysctl_get(ns, &key) {
            Ok(v) => Ok(v.trim() == "0"),
            Err(e) if e.kind == OpKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn delete_link(&mut self, ns: Ns, name: &str) -> OpResult<()> {
        let what = format!("delete link {name}");
        let check = self
            .learn_uplinks(ns, name)
            .and_then(|_| self.grants.link(ns, name, LinkOp::Delete));
        // A link that existed before an ADD cannot be re-created as it was (its peer,
        // addresses, routes, counters); the one exception is this attachment's own host
        // link, a leftover of its interrupted earlier ADD that only this attachment uses.
        let check = check.and_then(|_| {
            let own = self.grants.host_link() == Some(name) && ns == Ns::Host;
            if self.journaled() && !self.grants.is_created(ns, name) && !own {
                Err(not_undoable(&what, "the link existed before this call"))
            } else {
                Ok(())
            }
        });
        self.gate_change(&what, check)?;
        self.node.delete_link(ns, name)
    }

    pub fn attachment_link(&self, container_id: &str, ifname: &str) -> String {
        grants::attachment_link(self.grants.prefix(), container_id, ifname)
    }

    // ---- other attachments' addresses ---------------------------------------------

    /// Refuse an address or route that would take another live attachment's address:
    /// the same address anywhere, or (host namespace, any link but the shared bridge) a
    /// prefix that covers one.
    fn others_check(&mut self, ns: Ns, link: Option<&str>, net: IpNetwork) -> OpResult<()> {
        let Some(me) = self.grants.attachment() else {
            return Ok(());
        };
        let me = me.to_string();
        let taken = |holder: Option<String>, ip: IpAddr| match holder {
            Some(h) if h != me => Err(OpError::denied(format!(
                "{ip} belongs to another attachment ({h})"
            ))),
            _ => Ok(()),
        };
        let covering = ns == Ns::Host
            && link != Some(self.grants.bridge())
            && net.prefix() < Family::of(&net).max_prefix();
        self.inside_lock(|g| {
            let h = g.node.address_holder(net.ip())?;
            taken(h, net.ip())?;
            if covering {
                for ip in g.node.held_addresses()? {
                    if net.contains(ip) {
                        let h = g.node.address_holder(ip)?;
                        taken(h, ip)?;
                    }
                }
            }
            Ok(())
        })
    }

    // ---- addresses ----------------------------------------------------------------

    pub fn address_add(&mut self, ns: Ns, link: &str, text: &str) -> OpResult<()> {
        let a = cidr(text)?;
        let what = format!("add address {text} to {link}");
        let check = self
            .learn_uplinks(ns, link)
            .and_then(|_| self.grants.address(ns, link, a, false))
            .and_then(|_| self.others_check(ns, Some(link), a));
        self.gate_change(&what, check)?;
        Self::count(
            &mut self.used.addresses,
            self.limits.addresses,
            &what,
            "addresses",
        )?;
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
        self.gate_change(&format!("remove address {text} from {link}"), check)?;
        // the kernel drops the routes that depended on the address (its prefix route,
        // routes via gateways in it): keep the whole table to put them back
        if self.journaled() {
            // only routes of the address's family can depend on it
            let saved = self.node.save_routes(ns, Family::of(&a))?;
            self.record(Undo::RestoreRoutes { ns, saved });
        }
        let saved = self.node.remove_address(ns, link, a)?;
        self.record(Undo::RestoreAddress {
            ns,
            link: link.into(),
            saved,
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
        let destination = network(dst)?;
        let gateway = gw.map(addr).transpose()?;
        if let Some(g) = gateway {
            if Family::of_ip(g) != Family::of(&destination) {
                return Err(OpError::invalid(format!(
                    "route to {dst}: gateway {g} is {}, the destination {}",
                    Family::of_ip(g).name(),
                    Family::of(&destination).name()
                )));
            }
        }
        Ok(RouteSpec {
            destination,
            gateway,
            link: link.map(str::to_string),
        })
    }

    /// The grant check of a route change (uplinks learnt first when a link is named).
    fn route_check(&mut self, what: &str, ns: Ns, r: &RouteSpec, adding: bool) -> OpResult<()> {
        let check = match &r.link {
            Some(l) => self.learn_uplinks(ns, l),
            None => Ok(()),
        }
        .and_then(|_| {
            let via_uplink =
                ns == Ns::Host && r.link.is_some() && r.link.as_deref() == self.grants.uplink();
            if via_uplink {
                // the one thing a call may do on the uplink (host-gw), by its own rules
                self.learn_node()?;
                self.grants.uplink_route(r.destination, r.gateway, adding)
            } else {
                self.grants
                    .route(ns, r.destination, r.gateway, r.link.as_deref())
            }
        })
        .and_then(|_| {
            if adding && ns == Ns::Host {
                self.others_check(ns, r.link.as_deref(), r.destination)
            } else {
                Ok(())
            }
        });
        self.gate_change(what, check)
    }

    pub fn route_add(
        &mut self,
        ns: Ns,
        dst: &str,
        gw: Option<&str>,
        link: Option<&str>,
    ) -> OpResult<()> {
        let r = Self::route_spec(dst, gw, link)?;
        let what = format!("add route to {dst}");
        self.route_check(&what, ns, &r, true)?;
        let max = self.routes_limit();
        Self::count(&mut self.used.routes, max, &what, "routes")?;
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
        self.route_check(&format!("remove route to {dst}"), ns, &r, false)?;
        let saved = self.node.remove_route(ns, &r)?;
        self.record(Undo::RestoreRoute { ns, saved });
        Ok(())
    }

    pub fn route_list(&mut self, ns: Ns, link: Option<&str>) -> OpResult<Vec<RouteSpec>> {
        let check = self.grants.namespace(ns);
        self.gate("list routes", check)?;
        self.node.list_routes(ns, link)
    }

    /// `route_list` of one family (for a contract version that sees only IPv4).
    pub fn route_list_of(
        &mut self,
        ns: Ns,
        link: Option<&str>,
        family: Family,
    ) -> OpResult<Vec<RouteSpec>> {
        let check = self.grants.namespace(ns);
        self.gate("list routes", check)?;
        self.node.list_routes_of(ns, link, family)
    }

    // ---- firewall -----------------------------------------------------------------

    /// Before the first rule change of an ADD in the table of `family`: keep that table
    /// as it is now (or that it does not exist), so that a rollback puts exactly that
    /// back (an IPv4-only call never lists the `ip6` table).
    fn save_table(&mut self, family: Family) -> OpResult<()> {
        if !self.journaled() || self.table_saved[family.index()] {
            return Ok(());
        }
        let saved = self.node.save_table(family, &self.table)?;
        self.table_saved[family.index()] = true;
        let table = self.table.clone();
        self.record(Undo::RestoreTable {
            family,
            table,
            saved,
        });
        Ok(())
    }

    /// The gate of a firewall request for `net`, and its family's table saved before it.
    fn firewall_gate(&mut self, what: &str, net: IpNetwork) -> OpResult<()> {
        let check = self.grants.firewall(net);
        self.gate_change(what, check)?;
        Self::count(
            &mut self.used.firewall_rules,
            self.limits.firewall_rules,
            what,
            "firewallRules",
        )?;
        self.save_table(Family::of(&net))
    }

    pub fn allow_forward(&mut self, net: &str) -> OpResult<()> {
        let n = network(net)?;
        self.firewall_gate(&format!("allow forwarding for {net}"), n)?;
        self.node.allow_forward(&self.table, n)
    }

    pub fn masquerade(&mut self, source: &str, except: &[String]) -> OpResult<()> {
        if except.len() > MAX_EXCEPT {
            return Err(OpError::invalid(format!(
                "masquerade {source}: {} except networks, at most {MAX_EXCEPT}",
                except.len()
            )));
        }
        let s = network(source)?;
        let ex = except
            .iter()
            .map(|e| {
                let n = cidr(e).map(network_of)?;
                if Family::of(&n) != Family::of(&s) {
                    return Err(OpError::invalid(format!(
                        "masquerade {source}: except {e} is not of the source's family"
                    )));
                }
                Ok(n)
            })
            .collect::<OpResult<Vec<_>>>()?;
        self.firewall_gate(&format!("masquerade {source}"), s)?;
        self.node.masquerade(&self.table, s, &ex)
    }

    // ---- sysctl -------------------------------------------------------------------

    /// The grant check of a sysctl, once: the typed key on success.
    fn sysctl_key(&mut self, ns: Ns, key: &str, write: bool) -> OpResult<SysctlKey> {
        let what = format!("{} sysctl {key}", if write { "set" } else { "read" });
        let check = self.grants.sysctl_key(key).and_then(|k| {
            // a per-link key names a link: learn the uplinks before the link's grant
            if let (true, Some(l)) = (write, k.link()) {
                self.learn_uplinks(ns, l)?;
            }
            self.grants.sysctl(ns, &k, write).map(|_| k)
        });
        let (check, typed) = match check {
            Ok(k) => (Ok(()), Some(k)),
            Err(e) => (Err(e), None),
        };
        if write {
            self.gate_change(&what, check)?;
        } else {
            self.gate(&what, check)?;
        }
        Ok(typed.expect("the gate passed only a checked key"))
    }

    pub fn sysctl_get(&mut self, ns: Ns, key: &str) -> OpResult<String> {
        let key = self.sysctl_key(ns, key, false)?;
        self.node.sysctl_get(ns, &key)
    }

    pub fn sysctl_set(&mut self, ns: Ns, key: &str, value: &str) -> OpResult<()> {
        let key = self.sysctl_key(ns, key, true)?;
        // checked before the no-op test below: what is asked for must be granted
        if let Err(e) = self.grants.sysctl_value(ns, &key, value) {
            if e.kind == OpKind::Denied {
                self.guest_log("WARN", &format!("denied {}", e.message));
            }
            return Err(e);
        }
        let old = self.node.sysctl_get(ns, &key)?;
        if old == value {
            return Ok(()); // writing the same value is a no-op, also for the kernel
        }
        if key.is_forwarding_switch() && value == "0" {
            // the node's routing serves every network on it, not only this one
            let e = OpError::denied(format!(
                "set sysctl {key} to 0: it would stop forwarding for every network on the node; a policy may turn it on, never off"
            ));
            self.guest_log("WARN", &format!("denied {}", e.message));
            return Err(e);
        }
        let mut saved = vec![SysctlValue {
            key: key.clone(),
            value: old.clone(),
        }];
        if self.journaled() {
            if key.leaf() == "disable_ipv6" && old == "0" {
                // turning IPv6 off drops the link's IPv6 addresses and routes, which
                // turning it back on does not bring back
                let link = key.link().unwrap_or_default();
                if !self.grants.is_created(ns, link) {
                    let e = not_undoable(
                        &format!("set sysctl {key}"),
                        "disabling IPv6 drops the link's IPv6 addresses and routes",
                    );
                    self.guest_log("WARN", &format!("denied set sysctl {key}: {}", e.message));
                    return Err(e);
                }
            }
            if key.is_forwarding_switch() {
                // the kernel copies the switch into every link's `forwarding` of its
                // family: undo must put each of those back too, after the switch
                saved.extend(self.node.forwarding_values(ns, key.family())?);
            }
        }
        self.node.sysctl_set(ns, &key, value)?;
        self.record(Undo::RestoreSysctls { ns, values: saved });
        Ok(())
    }

    // ---- cluster ------------------------------------------------------------------

    /// Learn the uplink and this node's IPs (config `nodeIP`, else the uplink's first
    /// global address of each family), the first time a cluster grant needs them.
    fn learn_node(&mut self) -> OpResult<()> {
        if !self.grants.uplinks_known() {
            let up = self.node.default_route_links(Ns::Host)?;
            self.grants.set_uplinks(up);
        }
        if self.grants.node_ips_known() {
            return Ok(());
        }
        let mut ips = self.grants.configured_node_ips().to_vec();
        if ips.is_empty() {
            if let Some(up) = self.grants.uplink().map(str::to_string) {
                for a in self.node.list_addresses(Ns::Host, &up)? {
                    let ip = a.ip();
                    if global(ip) && !ips.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
                        ips.push(ip);
                    }
                }
            }
        }
        self.grants.set_node_ips(ips);
        Ok(())
    }

    /// This node: its uplink, its IPs (IPv4 first), the VXLAN link's name.
    pub fn this_node(&mut self) -> OpResult<(LinkInfo, Vec<IpAddr>, String)> {
        let check = self.learn_node();
        self.gate("cluster this-node", check)?;
        let uplink = self.grants.uplink().map(str::to_string).ok_or_else(|| {
            OpError::not_found("this node has no uplink: the host namespace has no default route")
        })?;
        let ips = self.grants.node_ips()?.to_vec();
        let info = self.current(Ns::Host, &uplink)?;
        Ok((info, ips, self.grants.vxlan_link().to_string()))
    }

    /// The config's peers without this node, in config order.
    pub fn peers(&mut self) -> OpResult<Vec<Peer>> {
        let check = self.learn_node();
        self.gate("cluster peers", check)?;
        Ok(self.grants.peers()?.into_iter().cloned().collect())
    }

    pub fn create_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        port: u16,
        local: &str,
        mtu: Option<u32>,
        mac: Option<&str>,
    ) -> OpResult<LinkInfo> {
        let what = format!("create VXLAN link {name}");
        if !(1..=16_777_215).contains(&vni) {
            return Err(OpError::invalid(format!(
                "{what}: VNI {vni} is out of range (1..16777215)"
            )));
        }
        if port == 0 {
            return Err(OpError::invalid(format!(
                "{what}: UDP port 0 (8472 is the Linux and flannel default, 4789 the IANA one)"
            )));
        }
        if let Some(m) = mtu.filter(|m| !(68..=65535).contains(m)) {
            return Err(OpError::invalid(format!(
                "{what}: mtu {m} is out of range (68..65535)"
            )));
        }
        let local = addr(local)?;
        let mac = mac.map(|m| unicast_mac(&what, m)).transpose();
        let check = self
            .learn_node()
            .and_then(|_| self.grants.create_vxlan(name, port, local))
            .and_then(|_| mac.as_ref().map(|_| ()).map_err(Clone::clone));
        self.gate_change(&what, check)?;
        let mac = mac?;
        Self::count(&mut self.used.links, self.limits.links, &what, "links")?;
        let spec = VxlanSpec {
            name: name.into(),
            vni,
            port,
            local,
            mtu,
            mac,
        };
        let r = self.node.create_vxlan(&spec);
        self.after_create(Ns::Host, name, &r);
        r
    }

    /// The gate of an FDB or neighbour change on `link` (`extra`: the entry's own
    /// grant check).
    fn entry_check(
        &mut self,
        what: &str,
        link: &str,
        mac: Option<&OpResult<Mac>>,
        extra: impl FnOnce(&mut Self) -> OpResult<()>,
    ) -> OpResult<()> {
        let check = self
            .grants
            .vxlan_entries(what, link)
            .and_then(|_| self.grants.node_level(what))
            .and_then(|_| match mac {
                Some(Err(e)) => Err(e.clone()),
                _ => Ok(()),
            })
            .and_then(|_| extra(self));
        self.gate_change(what, check)
    }

    pub fn fdb_add(&mut self, link: &str, mac: &str, remote: &str) -> OpResult<()> {
        let what = format!("add FDB entry {mac} -> {remote} on {link}");
        let remote = addr(remote)?;
        let mac = unicast_mac(&what, mac);
        self.entry_check(&what, link, Some(&mac), |s| {
            s.learn_node()?;
            s.grants.fdb_remote(&what, remote)
        })?;
        let entry = FdbEntry { mac: mac?, remote };
        // FDB and neighbour entries count as routes: each is one forwarding decision
        let max = self.routes_limit();
        Self::count(&mut self.used.routes, max, &what, "routes")?;
        self.node.add_fdb(link, &entry)?;
        self.record(Undo::RemoveFdb {
            link: link.into(),
            entry,
        });
        Ok(())
    }

    pub fn fdb_remove(&mut self, link: &str, mac: &str, remote: &str) -> OpResult<()> {
        let what = format!("remove FDB entry {mac} -> {remote} from {link}");
        let remote = addr(remote)?;
        let mac = unicast_mac(&what, mac);
        self.entry_check(&what, link, Some(&mac), |_| Ok(()))?;
        let entry = FdbEntry { mac: mac?, remote };
        self.node.remove_fdb(link, &entry)?;
        self.record(Undo::RestoreFdb {
            link: link.into(),
            entry,
        });
        Ok(())
    }

    pub fn fdb_list(&mut self, link: &str) -> OpResult<Vec<FdbEntry>> {
        let what = format!("list FDB entries of {link}");
        let check = self.grants.vxlan_entries(&what, link);
        self.gate(&what, check)?;
        self.node.list_fdb(link)
    }

    pub fn neighbor_add(&mut self, link: &str, address: &str, mac: &str) -> OpResult<()> {
        let what = format!("add neighbour {address} at {mac} on {link}");
        let address = addr(address)?;
        let mac = unicast_mac(&what, mac);
        self.entry_check(&what, link, Some(&mac), |s| {
            s.grants.neighbor_address(&what, address)
        })?;
        let entry = NeighborEntry { address, mac: mac? };
        let max = self.routes_limit();
        Self::count(&mut self.used.routes, max, &what, "routes")?;
        self.node.add_neighbor(link, &entry)?;
        self.record(Undo::RemoveNeighbor {
            link: link.into(),
            entry,
        });
        Ok(())
    }

    pub fn neighbor_remove(&mut self, link: &str, address: &str) -> OpResult<()> {
        let what = format!("remove neighbour {address} from {link}");
        let address = addr(address)?;
        self.entry_check(&what, link, None, |_| Ok(()))?;
        let entry = self.node.remove_neighbor(link, address)?;
        self.record(Undo::RestoreNeighbor {
            link: link.into(),
            entry,
        });
        Ok(())
    }

    pub fn neighbor_list(&mut self, link: &str) -> OpResult<Vec<NeighborEntry>> {
        let what = format!("list neighbours of {link}");
        let check = self.grants.vxlan_entries(&what, link);
        self.gate(&what, check)?;
        self.node.list_neighbors(link)
    }

    // ---- store --------------------------------------------------------------------

    pub fn store_get(&mut self, key: &str) -> OpResult<Option<String>> {
        let check = crate::node::check_store_key(key);
        self.gate(&format!("store get {key}"), check)?;
        self.enter_lock()?;
        self.node.store_get(key)
    }

    fn usage(&mut self) -> OpResult<StoreUsage> {
        if self.store_usage.is_none() {
            self.store_usage = Some(self.node.store_usage()?);
        }
        Ok(self.store_usage.unwrap_or_default())
    }

    pub fn store_put(&mut self, key: &str, value: &str) -> OpResult<()> {
        let what = format!("store put {key}");
        let check = crate::node::check_store_key(key);
        self.gate_change(&what, check)?;
        if value.len() > crate::node::MAX_STORE_VALUE {
            return Err(OpError::invalid(format!(
                "store put {key:?}: value of {} bytes is over the {}-byte limit",
                value.len(),
                crate::node::MAX_STORE_VALUE
            )));
        }
        self.enter_lock()?;
        Self::count(
            &mut self.used.store_writes,
            self.limits.store_writes,
            &what,
            "storeWrites",
        )?;
        let bytes = value.len() as u64;
        if self.used.store_bytes + bytes > self.limits.store_bytes {
            return Err(OpError::denied(format!(
                "{what}: per-call limit of {} bytes written reached (limits.storeBytes)",
                self.limits.store_bytes
            )));
        }
        let old = self.node.store_get(key)?;
        let mut u = self.usage()?;
        let old_len = old.as_ref().map_or(0, |v| v.len() as u64);
        if old.is_none() {
            u.keys += 1;
        }
        u.bytes = (u.bytes + bytes).saturating_sub(old_len);
        if u.keys > self.limits.store_keys
            || (bytes > old_len && u.bytes > self.limits.store_total_bytes)
        {
            return Err(OpError::denied(format!(
                "{what}: the network's store quota is full ({} keys, {} bytes; limits.storeKeys {}, limits.storeTotalBytes {})",
                u.keys - u64::from(old.is_none()),
                u.bytes + old_len - bytes,
                self.limits.store_keys,
                self.limits.store_total_bytes
            )));
        }
        self.node.store_put(key, value)?;
        self.used.store_bytes += bytes;
        self.store_usage = Some(u);
        let created = old.is_none();
        // the owner too: a later delete in this call removes it with the key
        let owner = match (&old, self.journaled()) {
            (Some(_), true) => self.node.store_owner(key)?,
            _ => None,
        };
        self.record(Undo::RestoreKey {
            key: key.into(),
            old,
            owner,
        });
        // a new key belongs to the attachment whose call created it; an existing key
        // keeps its owner
        if created {
            if let Some(me) = self.grants.attachment().map(str::to_string) {
                self.node.store_set_owner(key, &me)?;
            }
        }
        Ok(())
    }

    pub fn store_delete(&mut self, key: &str) -> OpResult<bool> {
        let what = format!("store delete {key}");
        let check = crate::node::check_store_key(key);
        self.gate_change(&what, check)?;
        self.enter_lock()?;
        let owner = self.node.store_owner(key)?;
        if let Some(o) = owner.as_deref() {
            if let Err(e) = self.grants.may_delete_owned(o) {
                let e = OpError::denied(format!("{what}: {}", e.message));
                self.guest_log("WARN", &format!("denied {}", e.message));
                return Err(e);
            }
        }
        Self::count(
            &mut self.used.store_writes,
            self.limits.store_writes,
            &what,
            "storeWrites",
        )?;
        self.usage()?;
        let old = self.node.store_get(key)?;
        let existed = self.node.store_delete(key)?;
        if existed {
            if let (Some(u), Some(v)) = (&mut self.store_usage, &old) {
                u.keys = u.keys.saturating_sub(1);
                u.bytes = u.bytes.saturating_sub(v.len() as u64);
            }
            self.record(Undo::RestoreKey {
                key: key.into(),
                old,
                owner,
            });
        }
        Ok(existed)
    }

    /// At the end of a call that was not rolled back: leave the store's size for the
    /// next call (after a rollback there is none, and the next call counts).
    pub fn save_usage(&mut self) -> OpResult<()> {
        match self.store_usage.take() {
            Some(u) => self.node.store_set_usage(u),
            None => Ok(()),
        }
    }

    pub fn store_list(&mut self, prefix: &str) -> OpResult<Vec<String>> {
        self.gate("store list", Ok(()))?;
        self.enter_lock()?;
        self.node.store_list(prefix)
    }

    // ---- the result, and the runner's record of it ----------------------------------

    /// An ADD result may only claim what the call was granted: addresses and gateways
    /// inside the pod network, on interfaces the call created (or CNI_IFNAME), and no
    /// address another live attachment holds.
    pub fn check_result(&mut self, r: &AddResult) -> Result<Vec<IpAddr>, String> {
        let mut ips = Vec::new();
        let pods = self.grants.pod_networks();
        let inside = |ip: IpAddr| pods.iter().any(|p| p.contains(ip));
        let gateway_inside = |g: &str, family: Family, what: &str| match g.parse::<IpAddr>() {
            Ok(g) if Family::of_ip(g) != family => Err(format!(
                "{what} is {}, not of the {}'s family",
                Family::of_ip(g).name(),
                if what.starts_with("route") {
                    "destination"
                } else {
                    "address"
                }
            )),
            Ok(g) if inside(g) => Ok(()),
            _ => Err(format!(
                "{what} is outside the pod network {}",
                Self::list(&pods)
            )),
        };
        for ipc in &r.ips {
            let n: IpNetwork = ipc
                .address
                .parse()
                .map_err(|_| format!("address {:?} is not CIDR", ipc.address))?;
            // the whole prefix inside the pod network of its family
            if !self.grants.inside(n) {
                return Err(format!(
                    "address {} is outside the pod network {}",
                    ipc.address,
                    Self::list(&pods)
                ));
            }
            if let Some(g) = &ipc.gateway {
                gateway_inside(
                    g,
                    Family::of(&n),
                    &format!("gateway {g} of {}", ipc.address),
                )?;
            }
            if let Some(i) = ipc.interface {
                let iface = r.interfaces.get(i as usize).ok_or_else(|| {
                    format!(
                        "ip {} points at interface {i}, which does not exist",
                        ipc.address
                    )
                })?;
                let ns = if iface.sandbox.is_some() {
                    Ns::Container
                } else {
                    Ns::Host
                };
                if !self.grants.owns_link(ns, &iface.name) {
                    return Err(format!(
                        "ip {} is on interface {:?}, which this call did not create",
                        ipc.address, iface.name
                    ));
                }
            }
            if let Some(me) = self.grants.attachment() {
                let me = me.to_string();
                match self.node.address_holder(n.ip()) {
                    Ok(Some(h)) if h != me => {
                        return Err(format!(
                            "address {} belongs to another attachment ({h})",
                            ipc.address
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("address records: {e}")),
                }
            }
            ips.push(n.ip());
        }
        for rt in &r.routes {
            let dst: IpNetwork = rt
                .dst
                .parse()
                .map_err(|_| format!("route destination {:?} is not CIDR", rt.dst))?;
            if let Some(g) = &rt.gw {
                gateway_inside(
                    g,
                    Family::of(&dst),
                    &format!("route to {} via {g}: the gateway", rt.dst),
                )?;
            } else if dst.prefix() != 0 && !self.grants.inside(dst) {
                // the whole prefix, as the route grant asks (its first address alone
                // can lie inside a pod network the prefix is wider than)
                return Err(format!(
                    "route to {} is outside the pod network {}",
                    rt.dst,
                    Self::list(&pods)
                ));
            }
        }
        Ok(ips)
    }

    fn list(nets: &[IpNetwork]) -> String {
        if nets.is_empty() {
            return "(none configured)".into();
        }
        nets.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// After a successful ADD: remember the attachment's addresses (others may not
    /// take them while it lives).
    pub fn hold(&mut self, ips: &[IpAddr]) -> OpResult<()> {
        match self.grants.attachment().map(str::to_string) {
            Some(me) => self.node.hold_addresses(&me, ips, &self.guest),
            None => Ok(()),
        }
    }

    /// After a successful DEL: the attachment's addresses are free.
    pub fn release(&mut self) -> OpResult<()> {
        match self.grants.attachment().map(str::to_string) {
            Some(me) => self.node.release_addresses(&me),
            None => Ok(()),
        }
    }

    /// After a successful GC: forget every attachment that is not valid.
    pub fn release_stale(&mut self, valid: &[(String, String)]) -> OpResult<()> {
        for h in self.node.holders()? {
            if !valid.iter().any(|(c, i)| grants::attachment_id(c, i) == h) {
                self.node.release_addresses(&h)?;
            }
        }
        Ok(())
    }

    // ---- rollback -----------------------------------------------------------------

    fn undo(&mut self, step: &Undo) -> OpResult<()> {
        match step {
            Undo::DeleteLink { ns, name } => self.node.delete_link(*ns, name),
            Undo::RemoveAddress { ns, link, addr } => {
                self.node.remove_address(*ns, link, *addr).map(|_| ())
            }
            Undo::RemoveRoute { ns, route } => self.node.unroute(*ns, route),
            Undo::RestoreAddress { ns, link, saved } => self.node.restore_address(*ns, link, saved),
            Undo::RestoreAddresses { ns, link, saved } => {
                for a in saved {
                    match self.node.restore_address(*ns, link, a) {
                        Err(e) if e.kind != OpKind::AlreadyExists => return Err(e),
                        _ => {}
                    }
                }
                Ok(())
            }
            Undo::RestoreRoutes { ns, saved } => {
                for r in saved {
                    match self.node.restore_route(*ns, r) {
                        Ok(()) => {}
                        Err(e) if matches!(e.kind, OpKind::AlreadyExists | OpKind::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Undo::RestoreRoute { ns, saved } => match self.node.restore_route(*ns, saved) {
                Err(e) if e.kind == OpKind::AlreadyExists => Ok(()),
                other => other,
            },
            Undo::SetMtu { ns, name, mtu } => self.node.set_mtu(*ns, name, *mtu),
            Undo::SetDown { ns, name } => self.node.set_down(*ns, name),
            Undo::RestoreMaster { name, master } => match master {
                Some(b) => self.node.set_master(name, b),
                None => self.node.unset_master(name),
            },
            Undo::RestoreSysctls { ns, values } => {
                for v in values {
                    // a value that is right already is not written: writes have side
                    // effects (ip_forward resets every link's forwarding)
                    match self.node.sysctl_get(*ns, &v.key) {
                        Ok(now) if now == v.value => {}
                        Ok(_) => self.node.sysctl_set(*ns, &v.key, &v.value)?,
                        Err(e) if e.kind == OpKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Undo::RestoreKey {
                key,
                old: Some(v),
                owner,
            } => {
                self.node.store_put(key, v)?;
                match owner {
                    Some(o) => self.node.store_set_owner(key, o),
                    None => Ok(()),
                }
            }
            Undo::RestoreKey { key, old: None, .. } => self.node.store_delete(key).map(|_| ()),
            Undo::RestoreTable {
                family,
                table,
                saved,
            } => self.node.restore_table(*family, table, saved.as_deref()),
            Undo::RemoveFdb { link, entry } => self.node.remove_fdb(link, entry),
            Undo::RestoreFdb { link, entry } => match self.node.add_fdb(link, entry) {
                Err(e) if e.kind == OpKind::AlreadyExists => Ok(()),
                other => other,
            },
            Undo::RemoveNeighbor { link, entry } => {
                self.node.remove_neighbor(link, entry.address).map(|_| ())
            }
            Undo::RestoreNeighbor { link, entry } => match self.node.add_neighbor(link, entry) {
                Err(e) if e.kind == OpKind::AlreadyExists => Ok(()),
                other => other,
            },
        }
    }

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
        // store changes are undone inside the lock (entered again if the call left it)
        let keys = steps.iter().any(|s| matches!(s, Undo::RestoreKey { .. }));
        let locked = !keys || self.enter_lock_while(false).is_ok();
        if keys && locked {
            // the undo writes past the size this call counted: the next call counts
            self.store_usage = None;
            let _ = self.node.store_usage();
        }
        for step in steps {
            if !locked && matches!(step, Undo::RestoreKey { .. }) {
                let m = format!("{step:?}: not undone: the network's lock could not be had");
                self.log.line("ERROR", &format!("rollback {m}"));
                failures.push(m);
                continue;
            }
            match self.undo(&step) {
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

/// The gate as the guest's store and the supervisor share it: whoever holds the lock
/// is the only one touching the node (the guest's host call, the rollback, or the
/// watchdog's rollback after a deadline).
pub type Shared = std::sync::Arc<std::sync::Mutex<Gate>>;

pub fn shared(g: Gate) -> Shared {
    std::sync::Arc::new(std::sync::Mutex::new(g))
}

/// Lock it; a panic while it was held does not make the journal unusable.
pub fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Gate> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}
