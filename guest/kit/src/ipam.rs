//! Address management in the node's pod subnet, kept in the runner's per-network store.
//!
//! Keys:
//! - `ip/<address>`                 -> `<container-id> <ifname>` (who holds the address)
//! - `attach/<container-id>/<ifname>` -> `<address>`             (what an attachment holds)
//! - `last`                         -> the address handed out last (round-robin start)
//!
//! The address key is written first, so an interrupted ADD leaves at worst an `ip/` key
//! whose owner GC or a later DEL (by scanning) can find.

use crate::config::Net;
use std::net::Ipv4Addr;

/// The store operations IPAM needs (the runner's store in the guest; a map in tests).
pub trait Store {
    fn get(&mut self, key: &str) -> Result<Option<String>, String>;
    fn put(&mut self, key: &str, value: &str) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<bool, String>;
    fn list(&mut self, prefix: &str) -> Result<Vec<String>, String>;
}

#[derive(Debug, PartialEq, Eq)]
pub enum IpamError {
    /// Every pod address of the subnet is taken.
    Exhausted(String),
    /// The store failed.
    Store(String),
}

impl From<String> for IpamError {
    fn from(s: String) -> Self {
        IpamError::Store(s)
    }
}

fn attach_key(cid: &str, ifname: &str) -> String {
    format!("attach/{cid}/{ifname}")
}

fn owner(cid: &str, ifname: &str) -> String {
    format!("{cid} {ifname}")
}

/// The address held by an attachment, if any.
pub fn lookup(s: &mut dyn Store, cid: &str, ifname: &str) -> Result<Option<Ipv4Addr>, String> {
    Ok(s.get(&attach_key(cid, ifname))?
        .and_then(|v| v.parse().ok()))
}

/// Reserve an address for (cid, ifname), or return the one it already holds.
/// Pods get addresses from network+2 to broadcast-1 (network+1 is the gateway),
/// starting after the last one handed out, so a freed address is not reused at once.
pub fn allocate(
    s: &mut dyn Store,
    subnet: Net,
    cid: &str,
    ifname: &str,
) -> Result<Ipv4Addr, IpamError> {
    if let Some(ip) = lookup(s, cid, ifname)? {
        if subnet.contains(ip) {
            return Ok(ip);
        }
    }
    let first = u32::from(subnet.network()) + 2;
    let last = u32::from(subnet.broadcast()) - 1;
    let size = last - first + 1;
    let prev = s
        .get("last")?
        .and_then(|v| v.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .filter(|p| (first..=last).contains(p));
    let start = match prev {
        Some(p) if p < last => p + 1,
        _ => first,
    };
    for i in 0..size {
        let cand = Ipv4Addr::from(first + (start - first + i) % size);
        let key = format!("ip/{cand}");
        if s.get(&key)?.is_none() {
            s.put(&key, &owner(cid, ifname))?;
            s.put(&attach_key(cid, ifname), &cand.to_string())?;
            s.put("last", &cand.to_string())?;
            return Ok(cand);
        }
    }
    Err(IpamError::Exhausted(format!(
        "no free address in {subnet}: all {size} pod addresses are in use"
    )))
}

/// Release what (cid, ifname) holds. Returns the released address, if any.
/// Finds an orphaned `ip/` reservation by scanning when the attachment key is missing
/// (an ADD interrupted between its two writes).
pub fn release(s: &mut dyn Store, cid: &str, ifname: &str) -> Result<Option<Ipv4Addr>, String> {
    let me = owner(cid, ifname);
    let akey = attach_key(cid, ifname);
    let mut released = None;
    if let Some(ip) = s.get(&akey)? {
        let key = format!("ip/{ip}");
        if s.get(&key)?.as_deref() == Some(me.as_str()) {
            s.delete(&key)?;
        }
        s.delete(&akey)?;
        released = ip.parse().ok();
    } else {
        for key in s.list("ip/")? {
            if s.get(&key)?.as_deref() == Some(me.as_str()) {
                s.delete(&key)?;
                released = key["ip/".len()..].parse().ok();
            }
        }
    }
    Ok(released)
}

/// Every attachment that holds something, from both key families (an interrupted ADD
/// may have left only the `ip/` key).
pub fn holders(s: &mut dyn Store) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for key in s.list("attach/")? {
        if let Some((cid, ifname)) = key["attach/".len()..].split_once('/') {
            out.push((cid.to_string(), ifname.to_string()));
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
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct MapStore(pub BTreeMap<String, String>);

    impl Store for MapStore {
        fn get(&mut self, k: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(k).cloned())
        }
        fn put(&mut self, k: &str, v: &str) -> Result<(), String> {
            self.0.insert(k.into(), v.into());
            Ok(())
        }
        fn delete(&mut self, k: &str) -> Result<bool, String> {
            Ok(self.0.remove(k).is_some())
        }
        fn list(&mut self, p: &str) -> Result<Vec<String>, String> {
            Ok(self
                .0
                .keys()
                .filter(|k| k.starts_with(p))
                .cloned()
                .collect())
        }
    }

    fn net(s: &str) -> Net {
        Net::parse(s, true).unwrap()
    }

    #[test]
    fn first_pod_gets_second_address_and_is_idempotent() {
        let mut s = MapStore::default();
        let a = allocate(&mut s, net("200.200.1.0/24"), "c1", "eth0").unwrap();
        assert_eq!(a, Ipv4Addr::new(200, 200, 1, 2));
        let again = allocate(&mut s, net("200.200.1.0/24"), "c1", "eth0").unwrap();
        assert_eq!(a, again, "one attachment never gets two addresses");
        let b = allocate(&mut s, net("200.200.1.0/24"), "c1", "net1").unwrap();
        assert_eq!(b, Ipv4Addr::new(200, 200, 1, 3));
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
        assert_eq!(got.last().unwrap(), &Ipv4Addr::new(10, 9, 0, 6));
        match allocate(&mut s, n, "c9", "eth0") {
            Err(IpamError::Exhausted(m)) => assert!(m.contains("all 5"), "{m}"),
            other => panic!("expected exhaustion, got {other:?}"),
        }
        release(&mut s, "c1", "eth0").unwrap(); // frees .3
        assert_eq!(
            allocate(&mut s, n, "c9", "eth0").unwrap(),
            Ipv4Addr::new(10, 9, 0, 3)
        );
    }

    #[test]
    fn release_finds_orphaned_reservation() {
        let mut s = MapStore::default();
        s.put("ip/200.200.1.7", "c1 eth0").unwrap();
        assert_eq!(
            release(&mut s, "c1", "eth0").unwrap(),
            Some(Ipv4Addr::new(200, 200, 1, 7))
        );
        assert!(s.0.is_empty());
        assert_eq!(release(&mut s, "c1", "eth0").unwrap(), None);
    }

    #[test]
    fn holders_lists_both_families() {
        let mut s = MapStore::default();
        allocate(&mut s, net("200.200.1.0/24"), "a", "eth0").unwrap();
        s.put("ip/200.200.1.9", "b eth0").unwrap();
        let h = holders(&mut s).unwrap();
        assert_eq!(
            h,
            vec![("a".into(), "eth0".into()), ("b".into(), "eth0".into())]
        );
    }
}
