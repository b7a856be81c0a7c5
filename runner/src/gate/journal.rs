//! The effects one ADD (or RECONCILE) applied, so that a failed call can be undone in
//! reverse.
//!
//! Each entry restores the exact prior state of one object (snapshotted before the
//! change), not the inverse of the request: a removed route comes back with the
//! kernel's own attributes, a rewritten firewall table comes back as it was listed.

use crate::node::{Family, FdbEntry, NeighborEntry, Ns, RouteSpec, SavedAddress, SavedRoute};
use ipnetwork::IpNetwork;

/// One applied effect, described by how to undo it.
#[derive(Clone, Debug)]
pub enum Undo {
    /// A link this call created.
    DeleteLink {
        ns: Ns,
        name: String,
    },
    /// An address this call added.
    RemoveAddress {
        ns: Ns,
        link: String,
        addr: IpNetwork,
    },
    /// A route this call added (deleted by its key, without listing the table).
    RemoveRoute {
        ns: Ns,
        route: RouteSpec,
    },
    /// An address this call removed, as the kernel had it.
    RestoreAddress {
        ns: Ns,
        link: String,
        saved: SavedAddress,
    },
    /// Addresses the kernel flushes with a change (a link's IPv6 addresses when it goes
    /// down again, or its MTU drops below 1280), put back after that change's undo.
    RestoreAddresses {
        ns: Ns,
        link: String,
        saved: Vec<SavedAddress>,
    },
    /// Routes of a namespace before an address removal (the kernel drops routes that
    /// depended on the address): those missing are added back.
    RestoreRoutes {
        ns: Ns,
        saved: Vec<SavedRoute>,
    },
    /// A route this call removed, as the kernel had it.
    RestoreRoute {
        ns: Ns,
        saved: SavedRoute,
    },
    SetMtu {
        ns: Ns,
        name: String,
        mtu: u32,
    },
    /// A link this call brought up was down.
    SetDown {
        ns: Ns,
        name: String,
    },
    /// A link this call attached to a bridge had this master before (none: no master).
    RestoreMaster {
        name: String,
        master: Option<String>,
    },
    /// Sysctl values before a write, restored in this order (for a forwarding switch,
    /// the per-link `forwarding` values of its family the kernel reset come after it).
    RestoreSysctls {
        ns: Ns,
        values: Vec<crate::node::SysctlValue>,
    },
    /// A key's value before the call's first write (none: it did not exist), and its
    /// owner when a deletion removed it.
    RestoreKey {
        key: String,
        old: Option<String>,
        owner: Option<String>,
    },
    /// An FDB entry this call added to host link `link`.
    RemoveFdb {
        link: String,
        entry: FdbEntry,
    },
    /// An FDB entry this call removed.
    RestoreFdb {
        link: String,
        entry: FdbEntry,
    },
    /// A neighbour entry this call added.
    RemoveNeighbor {
        link: String,
        entry: NeighborEntry,
    },
    /// A neighbour entry this call removed, as the node had it.
    RestoreNeighbor {
        link: String,
        entry: NeighborEntry,
    },
    /// The network's firewall table of `family` (`ip` or `ip6`) as listed before the
    /// call's first change to it (none: it did not exist).
    RestoreTable {
        family: Family,
        table: String,
        saved: Option<String>,
    },
}

/// The journal of one call.
#[derive(Default, Debug)]
pub struct Journal {
    entries: Vec<Undo>,
    /// Store keys with a `RestoreKey` already (recording stays O(1)).
    keys: std::collections::HashSet<String>,
}

impl Journal {
    pub fn record(&mut self, u: Undo) {
        // A key written twice is restored to its value before the first write.
        if let Undo::RestoreKey { key, .. } = &u {
            if !self.keys.insert(key.clone()) {
                return;
            }
        }
        self.entries.push(u);
    }

    /// How many steps the journal holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The undo steps, newest first.
    pub fn drain_reverse(&mut self) -> Vec<Undo> {
        let mut v = std::mem::take(&mut self.entries);
        v.reverse();
        v
    }
}
