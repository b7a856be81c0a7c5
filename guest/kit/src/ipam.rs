//! Address management in the node's pod subnets (one per address family), kept in the
//! runner's per-network store.
//!
//! Keys (the IPv4 ones are those of contract 0.1, so a node's store still reads):
//! - `ip/<address>`                    -> `<container-id> <ifname>` (who holds the address,
//!   either family)
//! - `attach/<container-id>/<ifname>`  -> its IPv4 address
//! - `attach6/<container-id>/<ifname>` -> its IPv6 address
//! - `last`, `last6`                   -> the address of that family handed out last
//!   (round-robin start)
//!
//! The address key is written first, so an interrupted ADD leaves at worst an `ip/` key
//! whose owner GC or a later DEL (by scanning) can find.

use crate::config::{Family, Net};
use std::net::IpAddr;

/// The store operations IPAM needs (the runner's store in the guest; a map in tests).
pub trait Store {
    fn get(&mut self, key: &str) -> Result<Option<String>, String>;
    fn put(&mut self, key: &str, value: &str) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<bool, String>;
    fn list(&mut self, prefix: &str) -> Result<Vec<String>, String>;
}

#[derive(Debug, PartialEq, Eq)]
pub enum IpamError {
    /// No free pod address was found in the subnet.
    Exhausted(String),
    /// The runtime asked for an address this node cannot give (outside its subnets, a
    /// reserved address, or taken).
    Refused(String),
    /// The store failed.
    Store(String),
}

impl From<String> for IpamError {
    fn from(s: String) -> Self {
        IpamError::Store(s)
    }
}

/// At most this many candidates are tried per allocation, so that a large (IPv6)
/// subnet is never walked address by address. The runner caps a network's store at
/// 4096 keys by default, so fewer addresses than this can be held: the bound is
/// reached only with a raised `storeKeys` limit.
pub const MAX_TRIES: u128 = 8192;

fn attach_prefix(family: Family) -> &'static str {
    match family {
        Family::V4 => "attach/",
        Family::V6 => "attach6/",
    }
}

fn attach_key(family: Family, cid: &str, ifname: &str) -> String {
    format!("{}{cid}/{ifname}", attach_prefix(family))
}

fn last_key(family: Family) -> &'static str {
    match family {
        Family::V4 => "last",
        Family::V6 => "last6",
    }
}

fn owner(cid: &str, ifname: &str) -> String {
    format!("{cid} {ifname}")
}

/// The address of `family` held by an attachment, if any.
pub fn lookup(
    s: &mut dyn Store,
    family: Family,
    cid: &str,
    ifname: &str,
) -> Result<Option<IpAddr>, String> {
    Ok(s.get(&attach_key(family, cid, ifname))?
        .and_then(|v| v.parse::<IpAddr>().ok())
        .filter(|ip| Family::of(*ip) == family))
}

fn reserve(s: &mut dyn Store, ip: IpAddr, cid: &str, ifname: &str) -> Result<(), String> {
    s.put(&format!("ip/{ip}"), &owner(cid, ifname))?;
    s.put(&attach_key(Family::of(ip), cid, ifname), &ip.to_string())
}

/// Reserve an address of `subnet`'s family for (cid, ifname), or return the one it
/// already holds. Pods get addresses from network+2 to last-1 (network+1 is the
/// gateway; the last is IPv4's broadcast, and IPv6's last is left alike), starting
/// after the last one handed out, so a freed address is not reused at once. At most
/// [`MAX_TRIES`] candidates are looked at.
pub fn allocate(
    s: &mut dyn Store,
    subnet: Net,
    cid: &str,
    ifname: &str,
) -> Result<IpAddr, IpamError> {
    let family = subnet.family();
    if let Some(ip) = lookup(s, family, cid, ifname)? {
        if subnet.contains(ip) {
            return Ok(ip);
        }
    }
    // offsets from the network address; the subnet has at least 4 addresses (config)
    let first: u128 = 2;
    let last: u128 = subnet.offset_of(subnet.broadcast()) - 1;
    let size = last - first + 1;
    let prev = s
        .get(last_key(family))?
        .and_then(|v| v.parse::<IpAddr>().ok())
        .filter(|ip| subnet.contains(*ip))
        .map(|ip| subnet.offset_of(ip))
        .filter(|p| (first..=last).contains(p));
    let start = match prev {
        Some(p) if p < last => p + 1,
        _ => first,
    };
    let tries = size.min(MAX_TRIES);
    for i in 0..tries {
        let cand = subnet.nth(first + (start - first + i) % size);
        let key = format!("ip/{cand}");
        if s.get(&key)?.is_none() {
            reserve(s, cand, cid, ifname)?;
            s.put(last_key(family), &cand.to_string())?;
            return Ok(cand);
        }
    }
    // printed as u64, at most MAX_TRIES (printing a u128 is a lot of code in a guest)
    let whole = tries == size;
    let tries = tries as u64;
    Err(IpamError::Exhausted(if whole {
        format!("no free address in {subnet}: all {tries} pod addresses are in use")
    } else {
        format!(
            "no free address in {subnet}: the {tries} addresses after {} are all in use",
            subnet.nth(start - 1)
        )
    }))
}

/// Reserve the address the runtime asked for, `ip`, in `subnet` (of its family) for
/// (cid, ifname). Refused when outside the subnet, the network, gateway or last
/// address, or held by another attachment. An attachment that holds another address
/// of the family (an earlier ADD with another request) lets it go.
pub fn allocate_requested(
    s: &mut dyn Store,
    subnet: Net,
    ip: IpAddr,
    cid: &str,
    ifname: &str,
) -> Result<IpAddr, IpamError> {
    check_requested(s, subnet, ip, cid, ifname)?;
    let me = owner(cid, ifname);
    if let Some(old) = lookup(s, subnet.family(), cid, ifname)? {
        if old != ip && s.get(&format!("ip/{old}"))?.as_deref() == Some(me.as_str()) {
            s.delete(&format!("ip/{old}"))?;
        }
    }
    reserve(s, ip, cid, ifname)?;
    Ok(ip)
}

/// Whether `ip` may be given to this attachment: inside `subnet`, not one of its
/// reserved addresses, not held by another attachment. Reads only, so a policy can
/// check every requested address before it reserves any.
pub fn check_requested(
    s: &mut dyn Store,
    subnet: Net,
    ip: IpAddr,
    cid: &str,
    ifname: &str,
) -> Result<(), IpamError> {
    let refused = |why: String| IpamError::Refused(format!("requested address {ip} {why}"));
    if !subnet.contains(ip) {
        return Err(refused(format!("is not in {subnet}")));
    }
    let reserved = if ip == subnet.network() {
        Some("the network address")
    } else if ip == subnet.gateway() {
        Some("the gateway")
    } else if ip == subnet.broadcast() {
        Some("the last (broadcast) address")
    } else {
        None
    };
    if let Some(what) = reserved {
        return Err(refused(format!("is {what} of {subnet}")));
    }
    let me = owner(cid, ifname);
    match s.get(&format!("ip/{ip}"))? {
        Some(holder) if holder == me => {}
        Some(holder) => {
            let who = holder.replacen(' ', "/", 1);
            return Err(refused(format!("is taken by {who}")));
        }
        None => {}
    }
    Ok(())
}

/// Release what (cid, ifname) holds, both families. Returns the released addresses,
/// IPv4 first. Finds orphaned `ip/` reservations by scanning when no attachment key is
/// there (an ADD interrupted between its writes).
pub fn release(s: &mut dyn Store, cid: &str, ifname: &str) -> Result<Vec<IpAddr>, String> {
    let me = owner(cid, ifname);
    let mut released = Vec::new();
    for family in [Family::V4, Family::V6] {
        let akey = attach_key(family, cid, ifname);
        if let Some(ip) = s.get(&akey)? {
            let key = format!("ip/{ip}");
            if s.get(&key)?.as_deref() == Some(me.as_str()) {
                s.delete(&key)?;
            }
            s.delete(&akey)?;
            released.extend(ip.parse::<IpAddr>().ok());
        }
    }
    if released.is_empty() {
        for key in s.list("ip/")? {
            if s.get(&key)?.as_deref() == Some(me.as_str()) {
                s.delete(&key)?;
                released.extend(key["ip/".len()..].parse::<IpAddr>().ok());
            }
        }
        released.sort_by_key(|ip| ip.is_ipv6());
    }
    Ok(released)
}

/// Every attachment that holds something, from every key family (an interrupted ADD
/// may have left only the `ip/` key).
pub fn holders(s: &mut dyn Store) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        let prefix = attach_prefix(family);
        for key in s.list(prefix)? {
            if let Some((cid, ifname)) = key[prefix.len()..].split_once('/') {
                out.push((cid.to_string(), ifname.to_string()));
            }
        }
    }
    for key in s.list("ip/")? {
        if let Some(v) = s.get(&key)? {
            if let Some((cid, ifname)) = v.split_once(' ') {
                out.push((cid.to_string(), ifname.to_string()));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    pub use crate::fake::MapStore;

    fn net(s: &str) -> Net {
        Net::parse(s, true).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_pod_gets_second_address_and_is_idempotent() {
        let mut s = MapStore::default();
        let a = allocate(&mut s, net("200.200.1.0/24"), "c1", "eth0").unwrap();
        assert_eq!(a, ip("200.200.1.2"));
        let again = allocate(&mut s, net("200.200.1.0/24"), "c1", "eth0").unwrap();
        assert_eq!(a, again, "one attachment never gets two addresses");
        let b = allocate(&mut s, net("200.200.1.0/24"), "c1", "net1").unwrap();
        assert_eq!(b, ip("200.200.1.3"));
        // the keys of contract 0.1
        assert_eq!(s.0["attach/c1/eth0"], "200.200.1.2");
        assert_eq!(s.0["ip/200.200.1.2"], "c1 eth0");
        assert_eq!(s.0["last"], "200.200.1.3");
    }

    #[test]
    fn round_robin_does_not_reuse_at_once() {
        let mut s = MapStore::default();
        let n = net("200.200.1.0/24");
        let a = allocate(&mut s, n, "c1", "eth0").unwrap();
        release(&mut s, "c1", "eth0").unwrap();
        let b = allocate(&mut s, n, "c2", "eth0").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn exhaustion_says_so_and_wraps() {
        let mut s = MapStore::default();
        let n = net("10.9.0.0/29"); // .2 .. .6 usable: 5 pods
        let got: Vec<_> = (0..5)
            .map(|i| allocate(&mut s, n, &format!("c{i}"), "eth0").unwrap())
            .collect();
        assert_eq!(got.last().unwrap(), &ip("10.9.0.6"));
        match allocate(&mut s, n, "c9", "eth0") {
            Err(IpamError::Exhausted(m)) => assert!(m.contains("all 5"), "{m}"),
            other => panic!("expected exhaustion, got {other:?}"),
        }
        release(&mut s, "c1", "eth0").unwrap(); // frees .3
        assert_eq!(allocate(&mut s, n, "c9", "eth0").unwrap(), ip("10.9.0.3"));
    }

    #[test]
    fn ipv6_allocates_round_robin_in_its_own_keys() {
        let mut s = MapStore::default();
        let n4 = net("200.200.1.0/24");
        let n6 = net("fd00:200:1::/64");
        assert_eq!(
            allocate(&mut s, n4, "a", "eth0").unwrap(),
            ip("200.200.1.2")
        );
        assert_eq!(
            allocate(&mut s, n6, "a", "eth0").unwrap(),
            ip("fd00:200:1::2")
        );
        assert_eq!(
            allocate(&mut s, n6, "a", "eth0").unwrap(),
            ip("fd00:200:1::2")
        );
        assert_eq!(
            allocate(&mut s, n6, "b", "eth0").unwrap(),
            ip("fd00:200:1::3")
        );
        assert_eq!(s.0["attach/a/eth0"], "200.200.1.2");
        assert_eq!(s.0["attach6/a/eth0"], "fd00:200:1::2");
        assert_eq!(s.0["ip/fd00:200:1::2"], "a eth0");
        assert_eq!(s.0["last"], "200.200.1.2");
        assert_eq!(s.0["last6"], "fd00:200:1::3");
        assert_eq!(
            release(&mut s, "a", "eth0").unwrap(),
            [ip("200.200.1.2"), ip("fd00:200:1::2")]
        );
        assert!(!s.0.keys().any(|k| k.contains("a/eth0")));
        // round robin: the freed ::2 is not handed out again at once
        assert_eq!(
            allocate(&mut s, n6, "c", "eth0").unwrap(),
            ip("fd00:200:1::4")
        );
    }

    #[test]
    fn ipv6_wraps_after_the_last_pod_address() {
        let mut s = MapStore::default();
        let n6 = net("fd00:200:1::/64");
        // the last pod address is ...:fffe (the last, ...:ffff, is left out as in IPv4)
        s.put("last6", "fd00:200:1:0:ffff:ffff:ffff:fffd").unwrap();
        let a = allocate(&mut s, n6, "a", "eth0").unwrap();
        assert_eq!(a, ip("fd00:200:1:0:ffff:ffff:ffff:fffe"));
        assert_eq!(
            allocate(&mut s, n6, "b", "eth0").unwrap(),
            ip("fd00:200:1::2")
        );
        // a pointer from another subnet (the config changed) starts at the beginning
        s.put("last6", "fd00:999::7").unwrap();
        assert_eq!(
            allocate(&mut s, n6, "c", "eth0").unwrap(),
            ip("fd00:200:1::3")
        );
    }

    #[test]
    fn ipv6_scan_is_bounded() {
        // every candidate after the pointer taken: the allocator gives up after
        // MAX_TRIES store reads instead of walking 2^64 addresses
        struct Full(u128);
        impl Store for Full {
            fn get(&mut self, key: &str) -> Result<Option<String>, String> {
                if key.starts_with("ip/") {
                    self.0 += 1;
                    return Ok(Some("x eth0".into()));
                }
                Ok(None)
            }
            fn put(&mut self, _: &str, _: &str) -> Result<(), String> {
                Err("nothing is free".into())
            }
            fn delete(&mut self, _: &str) -> Result<bool, String> {
                Ok(false)
            }
            fn list(&mut self, _: &str) -> Result<Vec<String>, String> {
                Ok(Vec::new())
            }
        }
        let mut s = Full(0);
        match allocate(&mut s, net("fd00:200:1::/64"), "a", "eth0") {
            Err(IpamError::Exhausted(m)) => assert_eq!(
                m,
                "no free address in fd00:200:1::/64: the 8192 addresses after fd00:200:1::1 are all in use"
            ),
            other => panic!("expected exhaustion, got {other:?}"),
        }
        assert_eq!(s.0, MAX_TRIES);
    }

    #[test]
    fn requested_address_is_honoured_when_free_and_inside() {
        let mut s = MapStore::default();
        let n6 = net("fd00:200:1::/64");
        let n4 = net("200.200.1.0/24");
        let want = ip("fd00:200:1::99");
        assert_eq!(
            allocate_requested(&mut s, n6, want, "a", "eth0").unwrap(),
            want
        );
        assert_eq!(s.0["attach6/a/eth0"], "fd00:200:1::99");
        assert!(
            !s.0.contains_key("last6"),
            "a requested address moves no pointer"
        );
        // again for the same attachment: fine
        assert_eq!(
            allocate_requested(&mut s, n6, want, "a", "eth0").unwrap(),
            want
        );
        // the attachment asks for another one: the first is let go
        let other = ip("fd00:200:1::98");
        allocate_requested(&mut s, n6, other, "a", "eth0").unwrap();
        assert!(!s.0.contains_key("ip/fd00:200:1::99"));
        assert_eq!(s.0["attach6/a/eth0"], "fd00:200:1::98");
        let want4 = ip("200.200.1.200");
        assert_eq!(
            allocate_requested(&mut s, n4, want4, "a", "eth0").unwrap(),
            want4
        );
        // round robin skips it later
        s.put("last", "200.200.1.199").unwrap();
        assert_eq!(
            allocate(&mut s, n4, "b", "eth0").unwrap(),
            ip("200.200.1.201")
        );
    }

    #[test]
    fn requested_address_outside_reserved_or_taken_is_refused() {
        let mut s = MapStore::default();
        let n4 = net("200.200.1.0/24");
        let n6 = net("fd00:200:1::/64");
        let refused = |s: &mut MapStore, n: Net, a: &str| match allocate_requested(
            s,
            n,
            ip(a),
            "b",
            "eth0",
        ) {
            Err(IpamError::Refused(m)) => m,
            other => panic!("expected a refusal for {a}, got {other:?}"),
        };
        assert_eq!(
            refused(&mut s, n4, "200.200.2.9"),
            "requested address 200.200.2.9 is not in 200.200.1.0/24"
        );
        assert_eq!(
            refused(&mut s, n6, "fd00:200:2::9"),
            "requested address fd00:200:2::9 is not in fd00:200:1::/64"
        );
        assert_eq!(
            refused(&mut s, n4, "200.200.1.1"),
            "requested address 200.200.1.1 is the gateway of 200.200.1.0/24"
        );
        assert_eq!(
            refused(&mut s, n4, "200.200.1.0"),
            "requested address 200.200.1.0 is the network address of 200.200.1.0/24"
        );
        assert_eq!(
            refused(&mut s, n4, "200.200.1.255"),
            "requested address 200.200.1.255 is the last (broadcast) address of 200.200.1.0/24"
        );
        assert_eq!(
            refused(&mut s, n6, "fd00:200:1::1"),
            "requested address fd00:200:1::1 is the gateway of fd00:200:1::/64"
        );
        allocate(&mut s, n6, "a", "eth0").unwrap();
        assert_eq!(
            refused(&mut s, n6, "fd00:200:1::2"),
            "requested address fd00:200:1::2 is taken by a/eth0"
        );
        // nothing was written for the refused attachment
        assert!(!s.0.keys().any(|k| k.contains("b/eth0")));
        assert!(!s.0.values().any(|v| v == "b eth0"));
    }

    #[test]
    fn release_finds_orphaned_reservations_of_both_families() {
        let mut s = MapStore::default();
        s.put("ip/fd00::7", "c1 eth0").unwrap();
        s.put("ip/200.200.1.7", "c1 eth0").unwrap();
        s.put("ip/200.200.1.8", "c2 eth0").unwrap();
        assert_eq!(
            release(&mut s, "c1", "eth0").unwrap(),
            [ip("200.200.1.7"), ip("fd00::7")]
        );
        assert_eq!(s.0.len(), 1);
        assert!(release(&mut s, "c1", "eth0").unwrap().is_empty());
    }

    #[test]
    fn holders_lists_every_key_family() {
        let mut s = MapStore::default();
        allocate(&mut s, net("200.200.1.0/24"), "a", "eth0").unwrap();
        s.put("ip/200.200.1.9", "b eth0").unwrap();
        s.put("attach6/c/eth0", "fd00::3").unwrap();
        let h = holders(&mut s).unwrap();
        assert_eq!(
            h,
            vec![
                ("a".into(), "eth0".into()),
                ("b".into(), "eth0".into()),
                ("c".into(), "eth0".into())
            ]
        );
    }
}
