//! Links, addresses and routes over rtnetlink, in the host or the container namespace.
//!
//! One netlink socket per namespace, opened on first use: the host socket where the
//! runner runs, the container socket from inside CNI_NETNS (see `netns`). After that,
//! every operation is just "which socket". All of it runs on a current-thread tokio
//! runtime driven by `block_on` from the (synchronous) host functions.

use super::netns::Namespaces;
use crate::mac::Mac;
use crate::node::{
    Family, FdbEntry, LinkInfo, NeighborEntry, Ns, OpError, OpKind, OpResult, RouteSpec, VxlanSpec,
};
use futures::stream::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use tokio::runtime::Runtime;

fn nl_err(e: rtnetlink::Error, what: impl FnOnce() -> String) -> OpError {
    match &e {
        rtnetlink::Error::NetlinkError(m) => match m.code {
            Some(c) => OpError::from_errno(-c.get(), format!("{}: {}", what(), m.to_io())),
            None => OpError::failed(format!("{}: {e}", what())),
        },
        _ => OpError::failed(format!("{}: {e}", what())),
    }
}

fn info(msg: &LinkMessage) -> LinkInfo {
    let mut li = LinkInfo {
        name: String::new(),
        index: msg.header.index,
        mac: String::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => li.name = n.clone(),
            LinkAttribute::Address(m) => {
                li.mac = m
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }
            LinkAttribute::Mtu(m) => li.mtu = *m,
            LinkAttribute::Controller(i) if *i != 0 => li.master = Some(*i),
            _ => {}
        }
    }
    li
}

/// A random, locally administered, unicast MAC.
fn local_mac(salt: &str) -> [u8; 6] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{salt}/{now}/{}", std::process::id());
    let h = xxhash_rust::xxh3::xxh3_64(seed.as_bytes()).to_le_bytes();
    [(h[0] & 0xfe) | 0x02, h[1], h[2], h[3], h[4], h[5]]
}

/// Netlink access for one call: a socket per namespace, opened by `open` (the kernel
/// backend, which owns the namespaces, opens what an operation needs first).
#[derive(Default)]
pub struct Netlink {
    rt: Option<Runtime>,
    host: Option<Handle>,
    container: Option<Handle>,
    /// The index of each link this call looked up or created, per namespace (host,
    /// container), so that an operation on a link named again costs one request, not
    /// a lookup and a request (an ADD names its links 11 times, 5 lookups are left).
    /// An index stands for one link for as long as it exists (the kernel allocates
    /// them cyclically, never handing a freed one out again at once), so a remembered
    /// index is that link or no link: the kernel answers ENODEV (EINVAL for a missing
    /// master), and the name is looked up again (`with_index`). Forgotten when this
    /// call deletes the link or a lookup finds none; it lives for one call.
    known: [HashMap<String, u32>; 2],
}

fn slot(which: Ns) -> usize {
    match which {
        Ns::Host => 0,
        Ns::Container => 1,
    }
}

impl Netlink {
    fn runtime(&mut self) -> OpResult<&Runtime> {
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| OpError::failed(format!("starting the netlink runtime: {e}")))?;
            self.rt = Some(rt);
        }
        Ok(self.rt.as_ref().expect("built above"))
    }

    /// The socket of `which` namespace (`open` opened it).
    fn handle(&self, which: Ns) -> OpResult<Handle> {
        let have = match which {
            Ns::Host => &self.host,
            Ns::Container => &self.container,
        };
        have.clone().ok_or_else(|| {
            OpError::failed(format!(
                "no netlink socket in the {which} namespace was opened"
            ))
        })
    }

    /// Open the socket of `which` namespace unless it is open: a socket stays bound to
    /// the namespace it was created in, so the container's is created from inside it.
    pub fn open(&mut self, which: Ns, spaces: &mut Namespaces) -> OpResult<()> {
        if self.handle(which).is_ok() {
            return Ok(());
        }
        self.runtime()?;
        let rt = self.rt.as_ref().expect("runtime exists");
        let _guard = rt.enter();
        let open = || rtnetlink::new_connection();
        let opened = match which {
            Ns::Host => open(),
            Ns::Container => spaces.in_container(open)?,
        };
        let (conn, handle, _) = opened.map_err(|e| {
            OpError::failed(format!(
                "opening a netlink socket in the {which} namespace: {e}"
            ))
        })?;
        rt.spawn(conn);
        match which {
            Ns::Host => self.host = Some(handle),
            Ns::Container => self.container = Some(handle),
        }
        Ok(())
    }

    fn block_on<F: std::future::Future>(&mut self, f: F) -> OpResult<F::Output> {
        Ok(self.runtime()?.block_on(f))
    }

    pub fn get_link(&mut self, which: Ns, name: &str) -> OpResult<Option<LinkInfo>> {
        let h = self.handle(which)?;
        let r = self.block_on(async move {
            // no statistics: ~1.5 KB less per answer to build and parse, unused here
            let mut s = h
                .link()
                .get()
                .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
                .match_name(name.to_string())
                .execute();
            s.try_next().await
        })?;
        let found = match r {
            Ok(m) => m.as_ref().map(info),
            Err(e) => {
                let e = nl_err(e, || format!("link {name:?} in the {which} namespace"));
                if e.kind != OpKind::NotFound {
                    return Err(e);
                }
                None
            }
        };
        match &found {
            Some(l) => self.known[slot(which)].insert(name.to_string(), l.index),
            None => self.known[slot(which)].remove(name),
        };
        Ok(found)
    }

    /// Run `op` with the index of link `name`: the remembered one, else (or if the
    /// kernel no longer has it) the one a lookup finds now.
    fn with_index<T>(
        &mut self,
        which: Ns,
        name: &str,
        mut op: impl FnMut(&mut Self, u32) -> OpResult<T>,
    ) -> OpResult<T> {
        if let Some(&i) = self.known[slot(which)].get(name) {
            match op(self, i) {
                Err(e) if matches!(e.errno, Some(libc::ENODEV)) => {
                    self.known[slot(which)].remove(name);
                }
                r => return r,
            }
        }
        let i = self.must_link(which, name)?.index;
        op(self, i)
    }

    fn must_link(&mut self, which: Ns, name: &str) -> OpResult<LinkInfo> {
        self.get_link(which, name)?.ok_or_else(|| {
            OpError::not_found(format!("link {name:?} in the {which} namespace: not found"))
        })
    }

    /// A bridge with a fixed MAC: without one the kernel gives the bridge the lowest MAC
    /// of its ports, so the pods' gateway MAC would change as pods come and go.
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> OpResult<LinkInfo> {
        let h = self.handle(Ns::Host)?;
        let mut b = LinkBridge::new(name)
            .down()
            .address(local_mac(name).to_vec());
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        let msg = b.build();
        self.block_on(async move { h.link().add(msg).execute().await })?
            .map_err(|e| nl_err(e, || format!("create bridge {name:?}")))?;
        self.must_link(Ns::Host, name)
    }

    /// A veth pair whose peer is created directly inside the container namespace
    /// (IFLA_NET_NS_FD on the peer), so a name like `eth0` never exists on the host;
    /// `peer_mac` is set in the same request (IFLA_ADDRESS on the peer).
    pub fn create_veth(
        &mut self,
        host_name: &str,
        peer: &str,
        mtu: Option<u32>,
        peer_mac: Option<crate::mac::Mac>,
        container: &std::fs::File,
    ) -> OpResult<(LinkInfo, LinkInfo)> {
        let h = self.handle(Ns::Host)?;
        let fd = container.as_raw_fd();
        let mut p = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_fd(fd);
        if let Some(m) = peer_mac {
            p = p.address(m.0.to_vec());
        }
        let mut v = LinkVeth::new(host_name, peer);
        if let Some(m) = mtu {
            p = p.mtu(m);
            v = v.mtu(m);
        }
        let msg = v
            .set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())))
            .build();
        self.block_on(async move { h.link().add(msg).execute().await })?
            .map_err(|e| {
                nl_err(e, || {
                    format!("create veth {host_name:?} (peer {peer:?} in the container)")
                })
            })?;
        let host = self.must_link(Ns::Host, host_name)?;
        let cont = self.must_link(Ns::Container, peer)?;
        Ok((host, cont))
    }

    /// The network's VXLAN link in the host namespace: down, address learning off (the
    /// FDB is what the policy writes), no lower device (the kernel routes the UDP by
    /// `local`), MTU and MAC set in the same request.
    pub fn create_vxlan(&mut self, spec: &VxlanSpec) -> OpResult<LinkInfo> {
        let h = self.handle(Ns::Host)?;
        let name = spec.name.as_str();
        let mut b = LinkVxlan::new(name, spec.vni)
            .port(spec.port)
            .learning(false)
            .down();
        b = match spec.local {
            IpAddr::V4(a) => b.local(a),
            IpAddr::V6(a) => b.local6(a),
        };
        // without a lower device the kernel gives it 1500, too much for a 1500 uplink
        // once encapsulated: the default leaves room for the outer headers
        let mtu = spec.mtu.unwrap_or(match spec.local {
            IpAddr::V4(_) => 1450,
            IpAddr::V6(_) => 1430,
        });
        b = b.mtu(mtu);
        if let Some(m) = spec.mac {
            b = b.address(m.0.to_vec());
        }
        let msg = b.build();
        self.block_on(async move { h.link().add(msg).execute().await })?
            .map_err(|e| {
                nl_err(e, || {
                    format!(
                        "create VXLAN link {name:?} (VNI {}, port {}, local {})",
                        spec.vni, spec.port, spec.local
                    )
                })
            })?;
        self.must_link(Ns::Host, name)
    }

    /// Every AF_BRIDGE (FDB) entry of host link `index`: the kernel dumps the whole
    /// table (an index filter needs strict checking on the socket), so it is filtered
    /// here.
    fn fdb_dump(&mut self, index: u32, link: &str) -> OpResult<Vec<NeighbourMessage>> {
        let h = self.handle(Ns::Host)?;
        let all = self
            .block_on(async move {
                h.neighbours()
                    .get()
                    .set_address_family(AddressFamily::Bridge)
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await
            })?
            .map_err(|e| nl_err(e, || format!("list the FDB of {link:?}")))?;
        Ok(all
            .into_iter()
            .filter(|m| m.header.ifindex == index)
            .collect())
    }

    /// The permanent FDB entries with a remote (what `bridge fdb add ... dst IP self
    /// permanent` makes), in the kernel's order.
    pub fn list_fdb(&mut self, link: &str) -> OpResult<Vec<FdbEntry>> {
        let l = self.must_link(Ns::Host, link)?;
        Ok(self
            .fdb_dump(l.index, link)?
            .iter()
            .filter(|m| has_state(m, NUD_PERMANENT))
            .filter_map(|m| {
                Some(FdbEntry {
                    mac: neighbour_mac(m)?,
                    remote: neighbour_ip(m)?,
                })
            })
            .collect())
    }

    /// An FDB request for `entry` on host link `index`, as `bridge fdb add MAC dev L dst
    /// IP self permanent` sends it: NTF_SELF (the VXLAN link's own table, not a
    /// bridge's), NUD_NOARP|NUD_PERMANENT, NDA_LLADDR and NDA_DST.
    fn fdb_message(index: u32, entry: &FdbEntry) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.state = NeighbourState::from(NUD_NOARP | NUD_PERMANENT);
        m.header.flags = NeighbourFlags::Own;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(entry.mac.0.to_vec()));
        m.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(
                entry.remote,
            )));
        m
    }

    pub fn add_fdb(&mut self, link: &str, entry: &FdbEntry) -> OpResult<()> {
        let l = self
            .must_link(Ns::Host, link)
            .map_err(|e| e.context(format!("add FDB entry {} dst {}", entry.mac, entry.remote)))?;
        let h = self.handle(Ns::Host)?;
        let msg = Self::fdb_message(l.index, entry);
        self.block_on(async move {
            let mut req = h.neighbours().add_bridge(l.index, &entry.mac.0);
            *req.message_mut() = msg;
            req.execute().await
        })?
        .map_err(|e| {
            nl_err(e, || {
                format!(
                    "add FDB entry {} dst {} to {link:?}",
                    entry.mac, entry.remote
                )
            })
        })
    }

    /// Remove the exact entry: the kernel finds it by MAC and answers success for a
    /// remote the MAC does not have, removing nothing, so it is looked up first.
    pub fn remove_fdb(&mut self, link: &str, entry: &FdbEntry) -> OpResult<()> {
        let what = || format!("FDB entry {} dst {} on {link:?}", entry.mac, entry.remote);
        let have = self
            .list_fdb(link)
            .map_err(|e| e.context(format!("remove {}", what())))?;
        if !have.contains(entry) {
            return Err(OpError::not_found(format!("{}: not found", what())));
        }
        let l = self.must_link(Ns::Host, link)?;
        let h = self.handle(Ns::Host)?;
        let msg = Self::fdb_message(l.index, entry);
        self.block_on(async move { h.neighbours().del(msg).execute().await })?
            .map_err(|e| nl_err(e, || format!("remove {}", what())))
    }

    /// Every IPv4 and IPv6 neighbour entry of host link `index`, in any state.
    fn neighbour_dump(&mut self, index: u32, link: &str) -> OpResult<Vec<NeighbourMessage>> {
        let h = self.handle(Ns::Host)?;
        let all = self
            .block_on(async move {
                let mut req = h.neighbours().get();
                // the kernel filters a neighbour dump by NDA_IFINDEX
                req.message_mut()
                    .attributes
                    .push(NeighbourAttribute::IfIndex(index));
                req.execute().try_collect::<Vec<_>>().await
            })?
            .map_err(|e| nl_err(e, || format!("list the neighbours of {link:?}")))?;
        Ok(all
            .into_iter()
            .filter(|m| {
                m.header.ifindex == index
                    && matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6)
            })
            .collect())
    }

    /// The permanent neighbour entries, IPv4 first.
    pub fn list_neighbors(&mut self, link: &str) -> OpResult<Vec<NeighborEntry>> {
        let l = self.must_link(Ns::Host, link)?;
        let mut out: Vec<NeighborEntry> = self
            .neighbour_dump(l.index, link)?
            .iter()
            .filter(|m| has_state(m, NUD_PERMANENT))
            .filter_map(|m| {
                Some(NeighborEntry {
                    address: neighbour_ip(m)?,
                    mac: neighbour_mac(m)?,
                })
            })
            .collect();
        out.sort_by_key(|n| n.address.is_ipv6());
        Ok(out)
    }

    /// A permanent entry (`ip neigh add ADDRESS lladdr MAC dev L nud permanent`). An
    /// entry the kernel made itself for that address (resolving it, before the policy
    /// set it) is not one a list shows: it is replaced, not reported as existing.
    pub fn add_neighbor(&mut self, link: &str, entry: &NeighborEntry) -> OpResult<()> {
        let what = || {
            format!(
                "add neighbour {} lladdr {} to {link:?}",
                entry.address, entry.mac
            )
        };
        let l = self
            .must_link(Ns::Host, link)
            .map_err(|e| e.context(what()))?;
        let add = |this: &mut Self, replace: bool| {
            let h = this.handle(Ns::Host)?;
            this.block_on(async move {
                let mut req = h
                    .neighbours()
                    .add(l.index, entry.address)
                    .link_layer_address(&entry.mac.0)
                    .state(NeighbourState::Permanent);
                if replace {
                    req = req.replace();
                }
                req.execute().await
            })?
            .map_err(|e| nl_err(e, what))
        };
        match add(self, false) {
            Err(e) if e.kind == OpKind::AlreadyExists => {
                let transient = self
                    .neighbour_dump(l.index, link)?
                    .iter()
                    .find(|m| neighbour_ip(m) == Some(entry.address))
                    .is_some_and(|m| !has_state(m, NUD_PERMANENT | NUD_NOARP));
                if transient {
                    add(self, true)
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }

    /// Remove the permanent entry of `address`; returns it as it was.
    pub fn remove_neighbor(&mut self, link: &str, address: IpAddr) -> OpResult<NeighborEntry> {
        let Some(entry) = self
            .list_neighbors(link)
            .map_err(|e| e.context(format!("remove neighbour {address}")))?
            .into_iter()
            .find(|n| n.address == address)
        else {
            return Err(OpError::not_found(format!(
                "neighbour {address} on {link:?}: not found"
            )));
        };
        let l = self.must_link(Ns::Host, link)?;
        let h = self.handle(Ns::Host)?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.ifindex = l.index;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(address)));
        self.block_on(async move { h.neighbours().del(msg).execute().await })?
            .map_err(|e| nl_err(e, || format!("remove neighbour {address} from {link:?}")))?;
        Ok(entry)
    }

    fn set(&mut self, which: Ns, what: String, msg: LinkMessage) -> OpResult<()> {
        let h = self.handle(which)?;
        self.block_on(async move { h.link().set(msg).execute().await })?
            .map_err(|e| nl_err(e, || what))
    }

    pub fn set_master(&mut self, name: &str, bridge: &str) -> OpResult<()> {
        let attach = |this: &mut Self, b: u32| {
            this.with_index(Ns::Host, name, |this, l| {
                let msg = LinkUnspec::new_with_index(l).controller(b).build();
                this.set(Ns::Host, format!("attach {name:?} to {bridge:?}"), msg)
            })
        };
        if let Some(&b) = self.known[slot(Ns::Host)].get(bridge) {
            match attach(self, b) {
                // a master index the kernel no longer has is EINVAL
                Err(e) if matches!(e.errno, Some(libc::EINVAL | libc::ENODEV)) => {
                    self.known[slot(Ns::Host)].remove(bridge);
                }
                r => return r,
            }
        }
        let b = self.must_link(Ns::Host, bridge)?.index;
        attach(self, b)
    }

    pub fn unset_master(&mut self, name: &str) -> OpResult<()> {
        self.with_index(Ns::Host, name, |this, l| {
            let msg = LinkUnspec::new_with_index(l).nocontroller().build();
            this.set(Ns::Host, format!("detach {name:?} from its bridge"), msg)
        })
    }

    pub fn set_up(&mut self, which: Ns, name: &str, up: bool) -> OpResult<()> {
        self.with_index(which, name, |this, l| {
            let b = LinkUnspec::new_with_index(l);
            let msg = if up { b.up() } else { b.down() }.build();
            let state = if up { "up" } else { "down" };
            this.set(
                which,
                format!("bring {name:?} {state} in the {which} namespace"),
                msg,
            )
        })
    }

    pub fn set_mtu(&mut self, which: Ns, name: &str, mtu: u32) -> OpResult<()> {
        self.with_index(which, name, |this, l| {
            let msg = LinkUnspec::new_with_index(l).mtu(mtu).build();
            this.set(
                which,
                format!("set mtu {mtu} on {name:?} in the {which} namespace"),
                msg,
            )
        })
    }

    pub fn delete_link(&mut self, which: Ns, name: &str) -> OpResult<()> {
        let r = self.with_index(which, name, |this, l| {
            let h = this.handle(which)?;
            this.block_on(async move { h.link().del(l).execute().await })?
                .map_err(|e| {
                    nl_err(e, || {
                        format!("delete link {name:?} in the {which} namespace")
                    })
                })
        });
        self.known[slot(which)].remove(name);
        r
    }

    pub fn list_addresses(&mut self, which: Ns, link: &str) -> OpResult<Vec<IpNetwork>> {
        let mut out: Vec<IpNetwork> = self
            .address_dump(which, link)?
            .iter()
            // the kernel's own link-locals, which no guest added, are left out
            .filter_map(|m| Some((address_of(m)?, m.header.prefix_len)))
            .filter(|(ip, _)| !is_link_local(*ip))
            .filter_map(|(ip, prefix)| IpNetwork::new(ip, prefix).ok())
            .collect();
        // IPv4 first (the dump's order is the kernel's, not a promise)
        out.sort_by_key(|n| n.is_ipv6());
        Ok(out)
    }

    /// Every address message of a link, both families.
    fn address_dump(&mut self, which: Ns, link: &str) -> OpResult<Vec<AddressMessage>> {
        self.with_index(which, link, |this, l| {
            let h = this.handle(which)?;
            this.block_on(async move {
                h.address()
                    .get()
                    .set_link_index_filter(l)
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await
            })?
            .map_err(|e| nl_err(e, || format!("list addresses of {link:?}")))
        })
    }

    /// The kernel's messages of the link's addresses of `family`, without link-locals.
    pub fn address_messages(
        &mut self,
        which: Ns,
        link: &str,
        family: Family,
    ) -> OpResult<Vec<AddressMessage>> {
        let msgs = self.address_dump(which, link)?;
        Ok(msgs
            .into_iter()
            .filter(|m| {
                address_of(m).is_some_and(|ip| Family::of_ip(ip) == family && !is_link_local(ip))
            })
            .collect())
    }

    pub fn add_address(&mut self, which: Ns, link: &str, addr: IpNetwork) -> OpResult<()> {
        self.with_index(which, link, |this, l| {
            let h = this.handle(which)?;
            this.block_on(
                async move { h.address().add(l, addr.ip(), addr.prefix()).execute().await },
            )?
            .map_err(|e| {
                nl_err(e, || {
                    format!("add address {addr} to {link:?} in the {which} namespace")
                })
            })
        })
    }

    /// Remove an address; returns the kernel's message for it (to restore it exactly).
    pub fn remove_address(
        &mut self,
        which: Ns,
        link: &str,
        addr: IpNetwork,
    ) -> OpResult<AddressMessage> {
        let l = self.must_link(which, link)?;
        let h = self.handle(which)?;
        let found = self
            .block_on(async move {
                let mut s = h.address().get().set_link_index_filter(l.index).execute();
                while let Some(m) = s.try_next().await? {
                    let matches =
                        m.header.prefix_len == addr.prefix() && address_of(&m) == Some(addr.ip());
                    if matches {
                        h.address().del(m.clone()).execute().await?;
                        return Ok(Some(m));
                    }
                }
                Ok(None)
            })?
            .map_err(|e| nl_err(e, || format!("remove address {addr} from {link:?}")))?;
        found.ok_or_else(|| {
            OpError::not_found(format!(
                "address {addr} on {link:?} in the {which} namespace: not found"
            ))
        })
    }

    /// Add back an address `remove_address` removed, with all its attributes.
    pub fn restore_address(
        &mut self,
        which: Ns,
        link: &str,
        saved: &AddressMessage,
    ) -> OpResult<()> {
        let l = self.must_link(which, link)?;
        let h = self.handle(which)?;
        let mut msg = saved.clone();
        msg.header.index = l.index;
        let ip = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let prefix = msg.header.prefix_len;
        self.block_on(async move {
            let mut req = h.address().add(l.index, ip, prefix);
            *req.message_mut() = msg;
            req.execute().await
        })?
        .map_err(|e| nl_err(e, || format!("restore address {ip}/{prefix} on {link:?}")))
    }

    fn index_names(&mut self, which: Ns) -> OpResult<Vec<(u32, String)>> {
        let h = self.handle(which)?;
        let links = self
            .block_on(async move {
                h.link()
                    .get()
                    .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await
            })?
            .map_err(|e| nl_err(e, || format!("list links in the {which} namespace")))?;
        Ok(links.iter().map(info).map(|l| (l.index, l.name)).collect())
    }

    /// The main table's routes of `family` (none: both, in one dump). A node with
    /// many pods has hundreds of IPv6 link-local routes (one per veth), so a caller
    /// that needs one family dumps only that one.
    pub fn route_messages(
        &mut self,
        which: Ns,
        family: Option<Family>,
    ) -> OpResult<Vec<RouteMessage>> {
        let h = self.handle(which)?;
        let query = match family {
            None => RouteMessageBuilder::<IpAddr>::new().build(),
            Some(Family::V4) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            Some(Family::V6) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let all = self
            .block_on(async move { h.route().get(query).execute().try_collect::<Vec<_>>().await })?
            .map_err(|e| nl_err(e, || format!("list routes in the {which} namespace")))?;
        Ok(all
            .into_iter()
            .filter(|m| {
                let table = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(u32::from(m.header.table));
                table == u32::from(RouteHeader::RT_TABLE_MAIN)
                    && matches!(
                        m.header.address_family,
                        AddressFamily::Inet | AddressFamily::Inet6
                    )
            })
            .collect())
    }

    fn spec(m: &RouteMessage, names: &[(u32, String)]) -> RouteSpec {
        let v6 = m.header.address_family == AddressFamily::Inet6;
        let mut dst: IpAddr = if v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let mut gw = None;
        let mut link = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = (*d).into(),
                RouteAttribute::Destination(RouteAddress::Inet6(d)) => dst = (*d).into(),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some((*g).into()),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gw = Some((*g).into()),
                RouteAttribute::Oif(i) => {
                    link = names
                        .iter()
                        .find(|(idx, _)| idx == i)
                        .map(|(_, n)| n.clone())
                }
                _ => {}
            }
        }
        let destination = IpNetwork::new(dst, m.header.destination_prefix_length)
            .unwrap_or_else(|_| IpNetwork::new(dst, 0).expect("a /0 is valid"));
        RouteSpec {
            destination,
            gateway: gw,
            link,
        }
    }

    /// The kernel's own IPv6 routes that no guest added and a list leaves out: the
    /// link-local prefix of every link (`fe80::/64`, proto kernel), multicast and
    /// local entries, and `::1` on `lo`.
    fn kernel_own(m: &RouteMessage, r: &RouteSpec) -> bool {
        if m.header.address_family != AddressFamily::Inet6 {
            return false;
        }
        !matches!(m.header.kind, RouteType::Unicast)
            || (m.header.protocol == RouteProtocol::Kernel
                && (is_link_local(r.destination.ip()) || r.destination.ip().is_loopback()))
    }

    /// Names of the links that carry a default route (the uplinks). Costs one IPv4
    /// route dump (a node has few IPv4 routes), one IPv6 route lookup and one link
    /// lookup per default route, not a dump of every link or of the IPv6 table: a node
    /// with hundreds of pods has hundreds of links, and an IPv6 link-local route each.
    pub fn default_route_links(&mut self, which: Ns) -> OpResult<Vec<String>> {
        let msgs = self.route_messages(which, Some(Family::V4))?;
        let oif = |m: &RouteMessage| {
            m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
        };
        let mut oifs: Vec<u32> = msgs
            .iter()
            .filter(|m| m.header.destination_prefix_length == 0)
            .filter_map(oif)
            .collect();
        // an uplink with only an IPv6 default route is the uplink too: the link the
        // kernel would send `::` through (the best IPv6 default route)
        if let Some(m) = self.ipv6_default(which)? {
            oifs.extend(oif(&m));
        }
        let mut out: Vec<String> = Vec::new();
        for idx in oifs {
            let h = self.handle(which)?;
            let found = self
                .block_on(async move {
                    h.link()
                        .get()
                        .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
                        .match_index(idx)
                        .execute()
                        .try_next()
                        .await
                })?
                .map_err(|e| nl_err(e, || format!("link #{idx} in the {which} namespace")))?;
            if let Some(l) = found {
                let name = info(&l).name;
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    /// The route the kernel picks for `::`, the best IPv6 default route; none without
    /// one (or without IPv6).
    fn ipv6_default(&mut self, which: Ns) -> OpResult<Option<RouteMessage>> {
        let h = self.handle(which)?;
        let mut b =
            RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(Ipv6Addr::UNSPECIFIED, 128);
        // a lookup, not a filter: no table, protocol or type of ours
        let m = b.get_mut();
        m.header.table = 0;
        m.header.protocol = RouteProtocol::Unspec;
        m.header.kind = RouteType::Unspec;
        let msg = b.build();
        let r = self.block_on(async move { h.route().get(msg).execute().try_next().await })?;
        match r {
            Ok(m) => Ok(m),
            Err(e) => {
                let e = nl_err(e, || format!("IPv6 default route in the {which} namespace"));
                match e.errno {
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EAFNOSUPPORT) => Ok(None),
                    _ if e.kind == OpKind::NotFound => Ok(None),
                    _ => Err(e),
                }
            }
        }
    }

    pub fn list_routes(
        &mut self,
        which: Ns,
        link: Option<&str>,
        family: Option<Family>,
    ) -> OpResult<Vec<RouteSpec>> {
        let names = self.index_names(which)?;
        let msgs = self.route_messages(which, family)?;
        let mut out: Vec<RouteSpec> = msgs
            .iter()
            .map(|m| (m, Self::spec(m, &names)))
            .filter(|(m, r)| !Self::kernel_own(m, r))
            .map(|(_, r)| r)
            .filter(|r| link.is_none() || r.link.as_deref() == link)
            .collect();
        // IPv4 first, each family in the kernel's order
        out.sort_by_key(|r| r.destination.is_ipv6());
        Ok(out)
    }

    /// `oif`: the index of `r.link` (see `route_op`).
    fn route_message(r: &RouteSpec, oif: Option<u32>) -> OpResult<RouteMessage> {
        let what = || format!("route to {}", r.destination);
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.destination.network(), r.destination.prefix())
            .map_err(|e| OpError::invalid(format!("{}: {e}", what())))?;
        match r.gateway {
            Some(gw) => {
                if Family::of_ip(gw) != Family::of(&r.destination) {
                    return Err(OpError::invalid(format!(
                        "{}: gateway {gw} is not of the destination's family",
                        what()
                    )));
                }
                b = b
                    .gateway(gw)
                    .map_err(|e| OpError::invalid(format!("{}: {e}", what())))?
            }
            // a route straight onto a link is scope link, as `ip route add ... dev X`
            // makes it: only such a route can resolve another route's gateway (the
            // routed policy's default route via a /32 gateway route)
            None => b = b.scope(RouteScope::Link),
        }
        if let Some(i) = oif {
            b = b.output_interface(i);
        }
        Ok(b.build())
    }

    /// Add (or, `add` false, delete) the route `r` describes, through its link's index.
    fn route_op(&mut self, which: Ns, r: &RouteSpec, add: bool) -> OpResult<()> {
        let send = |this: &mut Self, oif: Option<u32>| {
            let msg = Self::route_message(r, oif)?;
            let h = this.handle(which)?;
            this.block_on(async move {
                if add {
                    h.route().add(msg).execute().await
                } else {
                    h.route().del(msg).execute().await
                }
            })?
            .map_err(|e| {
                nl_err(e, || {
                    let verb = if add { "add" } else { "remove" };
                    format!("{verb} route to {} in the {which} namespace", r.destination)
                })
            })
        };
        match &r.link {
            Some(link) => self.with_index(which, link, |this, i| send(this, Some(i))),
            None => send(self, None),
        }
    }

    pub fn add_route(&mut self, which: Ns, r: &RouteSpec) -> OpResult<()> {
        self.route_op(which, r, true)
    }

    /// Delete a route `add_route` added: the same message, matched by the kernel on
    /// its key, so no listing of the table (an undo of N routes stays linear).
    pub fn unroute(&mut self, which: Ns, r: &RouteSpec) -> OpResult<()> {
        self.route_op(which, r, false)
    }

    /// Add back a route as the kernel listed it (protocol, scope, source, metric...).
    pub fn restore_route(&mut self, which: Ns, saved: &RouteMessage) -> OpResult<()> {
        let mut msg = saved.clone();
        // state the kernel reports but refuses on input
        msg.header.flags.remove(RouteFlags::Dead);
        msg.header.flags.remove(RouteFlags::Linkdown);
        msg.attributes
            .retain(|a| !matches!(a, RouteAttribute::CacheInfo(_)));
        let h = self.handle(which)?;
        let what = Self::spec(&msg, &[]).destination;
        self.block_on(async move { h.route().add(msg).execute().await })?
            .map_err(|e| {
                nl_err(e, || {
                    format!("restore route to {what} in the {which} namespace")
                })
            })
    }

    /// Remove a route; returns the kernel's message for it (to restore it exactly).
    pub fn remove_route(&mut self, which: Ns, r: &RouteSpec) -> OpResult<RouteMessage> {
        let names = self.index_names(which)?;
        let msgs = self.route_messages(which, Some(Family::of(&r.destination)))?;
        let found = msgs.into_iter().find(|m| {
            let s = Self::spec(m, &names);
            s.destination == r.destination
                && (r.gateway.is_none() || s.gateway == r.gateway)
                && (r.link.is_none() || s.link == r.link)
        });
        let Some(msg) = found else {
            return Err(OpError::not_found(format!(
                "route to {} in the {which} namespace: not found",
                r.destination
            )));
        };
        let h = self.handle(which)?;
        let del = msg.clone();
        self.block_on(async move { h.route().del(del).execute().await })?
            .map_err(|e| {
                nl_err(e, || {
                    format!("remove route to {} in the {which} namespace", r.destination)
                })
            })?;
        Ok(msg)
    }
}

/// The address an address message carries (IFA_LOCAL, else IFA_ADDRESS), either family.
fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => addr = Some(*ip),
            AddressAttribute::Address(ip) if addr.is_none() => addr = Some(*ip),
            _ => {}
        }
    }
    addr
}

/// Neighbour states (a bit set; the parser's enum names single bits only).
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;

/// The entry's state has one of the `bits`.
fn has_state(m: &NeighbourMessage, bits: u16) -> bool {
    u16::from(m.header.state) & bits != 0
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

/// A neighbour message's NDA_DST (the neighbour's address; an FDB entry's remote,
/// which the parser leaves as bytes: an AF_BRIDGE message does not say its family).
fn neighbour_ip(m: &NeighbourMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            if let Ok(v4) = <[u8; 4]>::try_from(b.as_slice()) {
                Some(IpAddr::from(v4))
            } else {
                <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from)
            }
        }
        _ => None,
    })
}

/// A neighbour message's NDA_LLADDR, if it is a unicast MAC (an FDB's all-zero
/// default entry and multicast entries are not a policy's).
fn neighbour_mac(m: &NeighbourMessage) -> Option<Mac> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => {
            let b: [u8; 6] = b.as_slice().try_into().ok()?;
            Mac(b).to_string().parse().ok()
        }
        _ => None,
    })
}

/// In `fe80::/10`, the IPv6 link-local range the kernel gives every link itself.
pub(crate) fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}
