//! The settings every shipped policy reads, from the network config the runtime sent.

use serde::Deserialize;
use std::net::Ipv4Addr;

/// A parsed IPv4 network (`200.200.1.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Net {
    /// Parse CIDR text. With `strict`, host bits must be zero (a subnet, not an address).
    pub fn parse(text: &str, strict: bool) -> Result<Net, String> {
        let (a, p) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not in CIDR form (like 200.200.1.0/24)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{text:?}: {a:?} is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{text:?}: prefix {p:?} is not a number from 0 to 32"))?;
        let net = Net { addr, prefix };
        if strict && net.network() != addr {
            return Err(format!(
                "{text:?} is not a subnet: host bits are set (did you mean {}/{}?)",
                net.network(),
                prefix
            ));
        }
        Ok(net)
    }

    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// The network address.
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast (last) address.
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// True if all of `inner` lies inside `self`.
    pub fn covers(self, inner: Net) -> bool {
        inner.prefix >= self.prefix && self.contains(inner.network())
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    my_host_network: Option<String>,
    my_pod_network: Option<String>,
    my_pod_subnet: Option<String>,
    bridge: Option<String>,
    mtu: Option<u32>,
}

/// The settings of a policy (the course lab's fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The node network (the cloud VPC), not masqueraded.
    pub host_network: Net,
    /// The whole cluster pod network: forwarded, not masqueraded.
    pub pod_network: Net,
    /// This node's slice of the pod network.
    pub pod_subnet: Net,
    /// Bridge name (default `cni0`; the routed policy has no bridge and ignores it).
    pub bridge: String,
    /// MTU for the bridge and veths (kernel default when absent).
    pub mtu: Option<u32>,
}

impl Config {
    /// Parse and validate the network config JSON. Errors are messages for code 7.
    pub fn parse(json: &str) -> Result<Config, String> {
        let raw: Raw = serde_json::from_str(json).map_err(|e| format!("network config: {e}"))?;
        let field = |name: &str, v: Option<String>| -> Result<Net, String> {
            let v = v.ok_or_else(|| format!("missing field {name:?} (a CIDR)"))?;
            Net::parse(&v, true).map_err(|e| format!("{name}: {e}"))
        };
        let host_network = field("myHostNetwork", raw.my_host_network)?;
        let pod_network = field("myPodNetwork", raw.my_pod_network)?;
        let pod_subnet = field("myPodSubnet", raw.my_pod_subnet)?;
        if !pod_network.covers(pod_subnet) {
            return Err(format!(
                "myPodSubnet {pod_subnet} is not inside myPodNetwork {pod_network}"
            ));
        }
        if pod_subnet.prefix > 30 {
            return Err(format!(
                "myPodSubnet {pod_subnet} is too small: it needs room for a gateway and pods (/30 or larger)"
            ));
        }
        let bridge = raw.bridge.unwrap_or_else(|| "cni0".to_string());
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ', ':']) {
            return Err(format!("bridge {bridge:?} is not a valid interface name"));
        }
        if let Some(m) = raw.mtu {
            if !(576..=65535).contains(&m) {
                return Err(format!("mtu {m} is out of range (576..65535)"));
            }
        }
        Ok(Config {
            host_network,
            pod_network,
            pod_subnet,
            bridge,
            mtu: raw.mtu,
        })
    }

    /// The gateway: the subnet's first address, on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_subnet.network()) + 1)
    }

    /// What node setup depends on; stored so later calls can skip verified setup.
    pub fn fingerprint(&self) -> String {
        format!(
            "v1 bridge={} gw={}/{} pods={} hosts={} mtu={:?}",
            self.bridge,
            self.gateway(),
            self.pod_subnet.prefix,
            self.pod_network,
            self.host_network,
            self.mtu
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"wasm-cni",
        "myHostNetwork":"10.0.0.0/16","myPodNetwork":"200.200.0.0/16","myPodSubnet":"200.200.1.0/24"}"#;

    #[test]
    fn parses_lab_config() {
        let c = Config::parse(OK).unwrap();
        assert_eq!(c.pod_subnet.to_string(), "200.200.1.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(200, 200, 1, 1));
        assert_eq!(c.bridge, "cni0");
    }

    #[test]
    fn rejects_address_as_subnet() {
        let bad = OK.replace("200.200.1.0/24", "200.200.1.5/24");
        let e = Config::parse(&bad).unwrap_err();
        assert!(e.contains("not a subnet"), "{e}");
    }

    #[test]
    fn rejects_subnet_outside_pod_network() {
        let bad = OK.replace("200.200.1.0/24", "10.1.0.0/24");
        assert!(Config::parse(&bad).unwrap_err().contains("not inside"));
    }

    #[test]
    fn rejects_missing_and_garbage() {
        assert!(Config::parse(r#"{"myPodNetwork":"200.200.0.0/16"}"#)
            .unwrap_err()
            .contains("myHostNetwork"));
        let bad = OK.replace("10.0.0.0/16", "10.0.0.0/33");
        assert!(Config::parse(&bad).unwrap_err().contains("prefix"));
        let bad = OK.replace("10.0.0.0/16", "ten/16");
        assert!(Config::parse(&bad).is_err());
    }

    #[test]
    fn net_math() {
        let n = Net::parse("200.200.1.0/24", true).unwrap();
        assert_eq!(n.broadcast(), Ipv4Addr::new(200, 200, 1, 255));
        assert!(n.contains(Ipv4Addr::new(200, 200, 1, 77)));
        assert!(!n.contains(Ipv4Addr::new(200, 200, 2, 1)));
        let all = Net::parse("0.0.0.0/0", true).unwrap();
        assert!(all.covers(n));
    }
}
