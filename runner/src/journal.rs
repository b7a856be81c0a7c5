//! The effects one ADD applied, so that a failed ADD can be undone in reverse.

use crate::netlink::RouteSpec;
use crate::netns::Ns;
use ipnetwork::Ipv4Network;

/// One applied effect, described by how to undo it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Undo {
    DeleteLink {
        ns: Ns,
        name: String,
    },
    RemoveAddress {
        ns: Ns,
        link: String,
        addr: Ipv4Network,
    },
    RemoveRoute {
        ns: Ns,
        route: RouteSpec,
    },
    AddAddress {
        ns: Ns,
        link: String,
        addr: Ipv4Network,
    },
    AddRoute {
        ns: Ns,
        route: RouteSpec,
    },
    SetMtu {
        ns: Ns,
        name: String,
        mtu: u32,
    },
    RestoreSysctl {
        ns: Ns,
        key: String,
        parts: Vec<String>,
        old: String,
    },
    RestoreKey {
        key: String,
        old: Option<String>,
    },
    DeleteTable {
        table: String,
    },
}

/// The journal of one call.
#[derive(Default, Debug)]
pub struct Journal {
    entries: Vec<Undo>,
}

impl Journal {
    pub fn record(&mut self, u: Undo) {
        // A key written twice is restored to its value before the first write.
        if let Undo::RestoreKey { key, .. } = &u {
            if self
                .entries
                .iter()
                .any(|e| matches!(e, Undo::RestoreKey { key: k, .. } if k == key))
            {
                return;
            }
        }
        self.entries.push(u);
    }

    /// The undo steps, newest first.
    pub fn drain_reverse(&mut self) -> Vec<Undo> {
        let mut v = std::mem::take(&mut self.entries);
        v.reverse();
        v
    }
}
