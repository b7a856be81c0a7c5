//! What goes to stdout: exactly one JSON document per call (or nothing, where the spec
//! says a successful command prints nothing).

use super::Version;
use crate::error::Error;
use serde_json::{json, Map, Value};

/// A result interface, with the sandbox path filled in by the runner.
#[derive(Clone, Debug, Default)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub sandbox: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct IpConfig {
    pub address: String,
    pub gateway: Option<String>,
    pub interface: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct Route {
    pub dst: String,
    pub gw: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// An ADD result, independent of the spec version.
#[derive(Clone, Debug, Default)]
pub struct AddResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Option<Dns>,
}

impl AddResult {
    /// The result JSON in the shape of `version` (0.3.x/0.4.0 carry `"version": "4"` or
    /// `"6"` on each IP, by its family; 1.x does not).
    pub fn to_json(&self, version: Version) -> Value {
        let old = version < Version::new(1, 0, 0);
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), i.name.clone().into());
                if !i.mac.is_empty() {
                    o.insert("mac".into(), i.mac.clone().into());
                }
                if let Some(s) = &i.sandbox {
                    o.insert("sandbox".into(), s.clone().into());
                }
                Value::Object(o)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = Map::new();
                if old {
                    // the family of the address (the guest's result is checked to be
                    // CIDR text before it gets here); only IPv6 text has a ':'
                    let v = if ip.address.contains(':') { "6" } else { "4" };
                    o.insert("version".into(), v.into());
                }
                o.insert("address".into(), ip.address.clone().into());
                if let Some(g) = &ip.gateway {
                    o.insert("gateway".into(), g.clone().into());
                }
                if let Some(i) = ip.interface {
                    o.insert("interface".into(), i.into());
                }
                Value::Object(o)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| match &r.gw {
                Some(gw) => json!({"dst": r.dst, "gw": gw}),
                None => json!({"dst": r.dst}),
            })
            .collect();
        let mut dns = Map::new();
        if let Some(d) = &self.dns {
            if !d.nameservers.is_empty() {
                dns.insert("nameservers".into(), json!(d.nameservers));
            }
            if let Some(dom) = &d.domain {
                dns.insert("domain".into(), json!(dom));
            }
            if !d.search.is_empty() {
                dns.insert("search".into(), json!(d.search));
            }
            if !d.options.is_empty() {
                dns.insert("options".into(), json!(d.options));
            }
        }
        json!({
            "cniVersion": version.to_string(),
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": dns,
        })
    }
}

/// The VERSION answer.
pub fn version_info(requested: Option<&str>) -> Value {
    let v = requested
        .and_then(super::supported)
        .unwrap_or(super::LATEST);
    json!({"cniVersion": v.to_string(), "supportedVersions": super::supported_list()})
}

/// A CNI error object.
pub fn error(version: Version, e: &Error) -> Value {
    let mut o = json!({"cniVersion": version.to_string(), "code": e.code(), "msg": e.to_string()});
    let details = e.details();
    if !details.is_empty() {
        o["details"] = details.into();
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AddResult {
        AddResult {
            interfaces: vec![
                Interface {
                    name: "wc1".into(),
                    mac: "aa:bb:cc:dd:ee:01".into(),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "aa:bb:cc:dd:ee:02".into(),
                    sandbox: Some("/run/netns/p".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "200.200.1.2/24".into(),
                gateway: Some("200.200.1.1".into()),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("200.200.1.1".into()),
            }],
            dns: None,
        }
    }

    #[test]
    fn shapes_per_version() {
        for v in crate::cni::SUPPORTED_VERSIONS {
            let j = sample().to_json(v);
            assert_eq!(j["cniVersion"], v.to_string());
            assert_eq!(j["interfaces"][1]["sandbox"], "/run/netns/p");
            assert!(j["interfaces"][0].get("sandbox").is_none());
            assert_eq!(j["ips"][0]["interface"], 1);
            assert_eq!(j["routes"][0]["dst"], "0.0.0.0/0");
            let has_version = j["ips"][0].get("version").is_some();
            assert_eq!(has_version, v.major == 0, "{v}");
        }
    }

    /// A dual-stack result: one address and one default route of each family.
    fn dual_stack() -> AddResult {
        let mut r = sample();
        r.ips.push(IpConfig {
            address: "fd00:200:1::2/64".into(),
            gateway: Some("fd00:200:1::1".into()),
            interface: Some(1),
        });
        r.routes.push(Route {
            dst: "::/0".into(),
            gw: Some("fd00:200:1::1".into()),
        });
        r
    }

    #[test]
    fn ipv6_addresses_and_routes_in_every_version_shape() {
        for v in crate::cni::SUPPORTED_VERSIONS {
            let j = dual_stack().to_json(v);
            let (ips, routes) = (&j["ips"], &j["routes"]);
            assert_eq!(ips.as_array().unwrap().len(), 2, "{v}");
            assert_eq!(ips[1]["address"], "fd00:200:1::2/64");
            assert_eq!(ips[1]["gateway"], "fd00:200:1::1");
            assert_eq!(ips[1]["interface"], 1);
            if v.major == 0 {
                // 0.3.x/0.4.0 name each address's family
                assert_eq!(ips[0]["version"], "4", "{v}");
                assert_eq!(ips[1]["version"], "6", "{v}");
            } else {
                assert!(ips[1].get("version").is_none(), "{v}");
            }
            assert_eq!(routes[0], json!({"dst": "0.0.0.0/0", "gw": "200.200.1.1"}));
            assert_eq!(routes[1], json!({"dst": "::/0", "gw": "fd00:200:1::1"}));
        }
    }

    #[test]
    fn ipv6_only_result_is_version_6() {
        let r = AddResult {
            ips: vec![IpConfig {
                address: "fd00::5/64".into(),
                gateway: None,
                interface: None,
            }],
            routes: vec![Route {
                dst: "fd00:1::/64".into(),
                gw: None,
            }],
            ..AddResult::default()
        };
        let j = r.to_json(crate::cni::Version::new(0, 3, 1));
        assert_eq!(
            j["ips"][0],
            json!({"version": "6", "address": "fd00::5/64"})
        );
        assert_eq!(j["routes"][0], json!({"dst": "fd00:1::/64"}));
        let j = r.to_json(crate::cni::Version::new(1, 1, 0));
        assert_eq!(j["ips"][0], json!({"address": "fd00::5/64"}));
    }

    #[test]
    fn version_answer() {
        assert_eq!(version_info(Some("0.4.0"))["cniVersion"], "0.4.0");
        assert_eq!(
            version_info(Some("7.0.0"))["cniVersion"],
            crate::cni::LATEST.to_string()
        );
        assert_eq!(
            version_info(None)["supportedVersions"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
    }
}
