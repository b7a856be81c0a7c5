//! Addresses and a MAC the runtime asks for (`runtimeConfig.ips`/`mac`, the `ips` and
//! `mac` capabilities; CNI_ARGS `IP=`/`MAC=`, as host-local takes them). Parsed and
//! validated here, once; the guest (0.2.0) gets them as canonical text in its request
//! and decides whether to honour them.

use crate::error::{Error, Result};
use crate::mac::Mac;
use std::net::IpAddr;

/// One requested address: with the prefix length the runtime gave, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WantedIp {
    pub addr: IpAddr,
    pub prefix: Option<u8>,
}

impl std::fmt::Display for WantedIp {
    /// Canonical text (RFC 5952 for IPv6), the prefix as given.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// What the runtime asked for: at most one address per family, and a MAC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requested {
    pub ips: Vec<WantedIp>,
    pub mac: Option<Mac>,
}

/// Why a requested value is refused (the caller names the key and picks the code).
fn parse_ip(text: &str) -> std::result::Result<WantedIp, String> {
    let bad = || format!("{text:?} is not an IPv4 or IPv6 address or CIDR");
    match text.split_once('/') {
        None => text
            .parse::<IpAddr>()
            .map(|addr| WantedIp { addr, prefix: None })
            .map_err(|_| bad()),
        Some(_) => text
            .parse::<ipnetwork::IpNetwork>()
            .map(|n| WantedIp {
                addr: n.ip(),
                prefix: Some(n.prefix()),
            })
            .map_err(|_| bad()),
    }
}

/// Add `w` to `ips`: the same address again merges (a prefix given once is kept), a
/// second address of a family is refused.
fn add_ip(ips: &mut Vec<WantedIp>, w: WantedIp) -> std::result::Result<(), String> {
    if let Some(have) = ips.iter_mut().find(|h| h.addr == w.addr) {
        return match (have.prefix, w.prefix) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "asks for {} twice, with prefixes /{a} and /{b}",
                w.addr
            )),
            (None, Some(_)) => {
                *have = w;
                Ok(())
            }
            _ => Ok(()),
        };
    }
    if let Some(have) = ips.iter().find(|h| h.addr.is_ipv4() == w.addr.is_ipv4()) {
        return Err(format!(
            "asks for {have} and {w}: at most one address per family",
        ));
    }
    ips.push(w);
    Ok(())
}

impl Requested {
    /// The addresses as the guest gets them, IPv4 first.
    pub fn ips_text(&self) -> Vec<String> {
        let mut v = self.ips.clone();
        v.sort_by_key(|w| !w.addr.is_ipv4());
        v.iter().map(WantedIp::to_string).collect()
    }

    /// From the config's `runtimeConfig` (`ips`: a list of strings, `mac`: a
    /// string); a bad value is an invalid config (code 7) naming it.
    pub fn from_runtime_config(rc: Option<&serde_json::Value>) -> Result<Requested> {
        let bad = |m: String| Error::InvalidConfig(format!("runtimeConfig.{m}"));
        let mut r = Requested::default();
        let Some(rc) = rc.filter(|v| !v.is_null()) else {
            return Ok(r);
        };
        let Some(rc) = rc.as_object() else {
            return Err(Error::InvalidConfig(format!(
                "\"runtimeConfig\" must be an object, not {rc}"
            )));
        };
        match rc.get("ips") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(list)) => {
                for v in list {
                    let text = v
                        .as_str()
                        .ok_or_else(|| bad(format!("ips: {v} is not a string")))?;
                    let w = parse_ip(text).map_err(|m| bad(format!("ips: {m}")))?;
                    add_ip(&mut r.ips, w).map_err(|m| bad(format!("ips {m}")))?;
                }
            }
            Some(v) => return Err(bad(format!("ips must be a list of strings, not {v}"))),
        }
        match rc.get("mac") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => {
                r.mac = Some(s.parse().map_err(|e| bad(format!("mac: {e}")))?);
            }
            Some(v) => return Err(bad(format!("mac must be a string, not {v}"))),
        }
        Ok(r)
    }

    /// From CNI_ARGS `IP=` (comma-separated) and `MAC=`; a bad value is an invalid
    /// environment variable (code 4) naming it.
    pub fn from_args(args: &[(String, String)]) -> Result<Requested> {
        let bad = |reason: String| Error::Env {
            name: "CNI_ARGS",
            reason,
        };
        let mut r = Requested::default();
        for (k, v) in args {
            match k.as_str() {
                "IP" => {
                    for item in v.split(',') {
                        let w = parse_ip(item).map_err(|m| bad(format!("IP: {m}")))?;
                        add_ip(&mut r.ips, w).map_err(|m| bad(format!("IP={v} {m}")))?;
                    }
                }
                "MAC" => {
                    let m: Mac = v.parse().map_err(|e| bad(format!("MAC: {e}")))?;
                    if r.mac.is_some_and(|have| have != m) {
                        return Err(bad(format!(
                            "MAC given twice ({} and {m})",
                            r.mac.unwrap_or(m)
                        )));
                    }
                    r.mac = Some(m);
                }
                _ => {}
            }
        }
        Ok(r)
    }

    /// The config's request and CNI_ARGS' together: the same address or MAC in both
    /// merges; a second address of a family, or another MAC, is refused as a bad
    /// CNI_ARGS (code 4: the environment contradicts the config).
    pub fn merge(config: &Requested, args: &Requested) -> Result<Requested> {
        let bad = |reason: String| Error::Env {
            name: "CNI_ARGS",
            reason,
        };
        let mut r = config.clone();
        for w in &args.ips {
            add_ip(&mut r.ips, *w).map_err(|m| bad(format!("IP with runtimeConfig.ips {m}")))?;
        }
        match (config.mac, args.mac) {
            (Some(a), Some(b)) if a != b => {
                return Err(bad(format!("MAC={b} contradicts runtimeConfig.mac {a}")))
            }
            (None, m) => r.mac = m,
            _ => {}
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc(v: serde_json::Value) -> Result<Requested> {
        Requested::from_runtime_config(Some(&v))
    }
    fn args(s: &[(&str, &str)]) -> Result<Requested> {
        let a: Vec<(String, String)> = s
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Requested::from_args(&a)
    }

    #[test]
    fn runtime_config_ips_and_mac_of_both_families_canonical() {
        let r =
            rc(json!({"ips": ["FD00:200:1:0::9/64", "200.200.1.9"], "mac": "0A:58:00:00:00:09"}))
                .unwrap();
        assert_eq!(r.ips_text(), ["200.200.1.9", "fd00:200:1::9/64"]);
        assert_eq!(r.mac.unwrap().to_string(), "0a:58:00:00:00:09");
        assert_eq!(
            Requested::from_runtime_config(None).unwrap(),
            Requested::default()
        );
        assert_eq!(
            rc(json!({"portMappings": []})).unwrap(),
            Requested::default()
        );
    }

    #[test]
    fn bad_runtime_config_is_code_7_naming_key_and_value() {
        for (v, want) in [
            (json!({"ips": ["200.200.1.300"]}), "200.200.1.300"),
            (json!({"ips": ["fd00::1/129"]}), "fd00::1/129"),
            (json!({"ips": "200.200.1.9"}), "ips must be a list"),
            (json!({"ips": [7]}), "7 is not a string"),
            (
                json!({"ips": ["200.200.1.9", "200.200.1.10"]}),
                "200.200.1.10",
            ),
            (json!({"ips": ["fd00::1", "fd00::2"]}), "fd00::2"),
            (json!({"mac": "01:00:5e:00:00:01"}), "01:00:5e:00:00:01"),
            (json!({"mac": "00:00:00:00:00:00"}), "00:00:00:00:00:00"),
            (json!({"mac": "zz"}), "\"zz\""),
            (json!({"mac": 5}), "mac must be a string"),
        ] {
            let e = rc(v.clone()).unwrap_err();
            assert_eq!(e.code(), 7, "{v}: {e}");
            let m = e.to_string();
            assert!(m.contains("runtimeConfig.") && m.contains(want), "{v}: {m}");
        }
        assert_eq!(rc(json!(5)).unwrap_err().code(), 7);
    }

    #[test]
    fn the_same_address_twice_merges() {
        let r = rc(json!({"ips": ["200.200.1.9", "200.200.1.9/24", "200.200.1.9"]})).unwrap();
        assert_eq!(r.ips_text(), ["200.200.1.9/24"]);
        let e = rc(json!({"ips": ["200.200.1.9/24", "200.200.1.9/16"]})).unwrap_err();
        assert_eq!(e.code(), 7);
    }

    #[test]
    fn cni_args_ip_comma_separated_and_mac() {
        let r = args(&[
            ("IgnoreUnknown", "1"),
            ("IP", "200.200.1.9,fd00::0:9"),
            ("MAC", "0a:58:00:00:00:09"),
        ])
        .unwrap();
        assert_eq!(r.ips_text(), ["200.200.1.9", "fd00::9"]);
        assert!(r.mac.is_some());
        assert_eq!(
            args(&[("K8S_POD_NAME", "p")]).unwrap(),
            Requested::default()
        );
    }

    #[test]
    fn bad_cni_args_are_code_4_naming_the_value() {
        for (a, want) in [
            (vec![("IP", "200.200.1.x")], "200.200.1.x"),
            (vec![("IP", "")], "\"\""),
            (vec![("IP", "200.200.1.9,")], "\"\""),
            (vec![("IP", "200.200.1.9,200.200.1.10")], "200.200.1.10"),
            (vec![("MAC", "ff:ff:ff:ff:ff:ff")], "ff:ff:ff:ff:ff:ff"),
            (vec![("MAC", "0a:58:00:00:00")], "0a:58:00:00:00"),
            (
                vec![("MAC", "0a:58:00:00:00:01"), ("MAC", "0a:58:00:00:00:02")],
                "0a:58:00:00:00:02",
            ),
        ] {
            let e = args(&a).unwrap_err();
            assert_eq!(e.code(), 4, "{a:?}: {e}");
            let m = e.to_string();
            assert!(m.starts_with("CNI_ARGS") && m.contains(want), "{a:?}: {m}");
        }
    }

    #[test]
    fn merging_both_sources() {
        let c = rc(json!({"ips": ["200.200.1.9/24"], "mac": "0a:58:00:00:00:09"})).unwrap();
        // the same address and MAC again: one of each
        let a = args(&[("IP", "200.200.1.9,fd00::9"), ("MAC", "0A:58:00:00:00:09")]).unwrap();
        let m = Requested::merge(&c, &a).unwrap();
        assert_eq!(m.ips_text(), ["200.200.1.9/24", "fd00::9"]);
        assert_eq!(m.mac, c.mac);
        // another IPv4 address, another MAC: refused, code 4
        let e = Requested::merge(&c, &args(&[("IP", "200.200.1.10")]).unwrap()).unwrap_err();
        assert_eq!(e.code(), 4);
        assert!(e.to_string().contains("200.200.1.10"), "{e}");
        let e = Requested::merge(&c, &args(&[("MAC", "0a:58:00:00:00:0a")]).unwrap()).unwrap_err();
        assert_eq!(e.code(), 4);
        assert!(e.to_string().contains("0a:58:00:00:00:0a"), "{e}");
        // only CNI_ARGS
        let m = Requested::merge(&Requested::default(), &a).unwrap();
        assert_eq!(m, a);
    }
}
