//! The settings every shipped policy reads, from the network config the runtime sent.
//!
//! The network keys (`myPodSubnet`, `myPodNetwork`/`podNetwork`, `myHostNetwork`) take a
//! CIDR string, as in contract 0.1, or a list of CIDRs with at most one per address
//! family: `["200.200.1.0/24", "fd00:200:1::/64"]` makes the node dual-stack.

use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Bits in an address of this family.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The default route's destination: `0.0.0.0/0` or `::/0`.
    pub fn default_route(self) -> &'static str {
        match self {
            Family::V4 => "0.0.0.0/0",
            Family::V6 => "::/0",
        }
    }

    fn addr_of(self, v: u128) -> IpAddr {
        match self {
            // an IPv4 value is always below 2^32 here (masked or offset inside a /0..32)
            Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A parsed network of either family (`200.200.1.0/24`, `fd00:200:1::/64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    /// Parse CIDR text. With `strict`, host bits must be zero (a subnet, not an address).
    /// Text with a `:` is IPv6, anything else IPv4.
    pub fn parse(text: &str, strict: bool) -> Result<Net, String> {
        let (a, p) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not in CIDR form (like 200.200.1.0/24)"))?;
        let addr: IpAddr = if a.contains(':') {
            a.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| format!("{text:?}: {a:?} is not an IPv6 address"))?
        } else {
            a.parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| format!("{text:?}: {a:?} is not an IPv4 address"))?
        };
        let max = Family::of(addr).bits();
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{text:?}: prefix {p:?} is not a number from 0 to {max}"))?;
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

    pub fn family(self) -> Family {
        Family::of(self.addr)
    }

    /// Host bits: 32 or 128 minus the prefix.
    fn host_bits(self) -> u32 {
        u32::from(self.family().bits() - self.prefix)
    }

    fn mask(self) -> u128 {
        let all = match self.family() {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        };
        // checked: a shift by 128 (a /0 IPv6 network) is no mask at all
        all.checked_shl(self.host_bits()).unwrap_or(0) & all
    }

    /// The network address.
    pub fn network(self) -> IpAddr {
        self.family().addr_of(bits_of(self.addr) & self.mask())
    }

    /// The last address (IPv4's broadcast).
    pub fn broadcast(self) -> IpAddr {
        let all = match self.family() {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        };
        self.family()
            .addr_of(bits_of(self.addr) | (!self.mask() & all))
    }

    /// The address `offset` past the network address (callers keep it inside).
    pub fn nth(self, offset: u128) -> IpAddr {
        self.family()
            .addr_of(bits_of(self.network()).wrapping_add(offset))
    }

    /// How far `ip` lies past the network address (`ip` inside this network).
    pub fn offset_of(self, ip: IpAddr) -> u128 {
        bits_of(ip).wrapping_sub(bits_of(self.network()))
    }

    /// The gateway a policy gives its pods: the first address after the network's.
    pub fn gateway(self) -> IpAddr {
        self.nth(1)
    }

    pub fn contains(self, ip: impl Into<IpAddr>) -> bool {
        let ip = ip.into();
        Family::of(ip) == self.family() && bits_of(ip) & self.mask() == bits_of(self.network())
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

/// What a JSON value is, for messages (printing it would pull a JSON writer into every
/// guest).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// At most one network per address family: what a network key holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nets {
    pub v4: Option<Net>,
    pub v6: Option<Net>,
}

impl Nets {
    /// The network of `family`, if any.
    pub fn get(&self, family: Family) -> Option<Net> {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }

    /// The networks, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = Net> + '_ {
        self.v4.into_iter().chain(self.v6)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// The network that contains `ip`, if any.
    pub fn containing(&self, ip: IpAddr) -> Option<Net> {
        self.get(Family::of(ip)).filter(|n| n.contains(ip))
    }

    /// Read key `name`: a CIDR string or a list of CIDR strings, at most one per family.
    fn parse(name: &str, value: &Value) -> Result<Nets, String> {
        let texts: Vec<&str> = match value {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(format!(
                        "{name}: the list is empty (give a CIDR, or one CIDR per address family)"
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str().ok_or_else(|| {
                            format!("{name}: item {i} is {}, not a CIDR string", kind(v))
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            other => {
                return Err(format!(
                    "{name}: {} is neither a CIDR string nor a list of CIDR strings",
                    kind(other)
                ))
            }
        };
        let mut nets = Nets::default();
        for text in texts {
            let net = Net::parse(text, true).map_err(|e| format!("{name}: {e}"))?;
            let slot = match net.family() {
                Family::V4 => &mut nets.v4,
                Family::V6 => &mut nets.v6,
            };
            if let Some(first) = slot {
                return Err(format!(
                    "{name}: two {} networks ({first} and {net}): give at most one per address family",
                    net.family()
                ));
            }
            *slot = Some(net);
        }
        Ok(nets)
    }
}

/// `200.200.0.0/16`, or `200.200.0.0/16,fd00:200::/32` when dual-stack.
impl std::fmt::Display for Nets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let texts: Vec<String> = self.iter().map(|n| n.to_string()).collect();
        f.write_str(&texts.join(","))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    my_host_network: Option<Value>,
    my_pod_network: Option<Value>,
    pod_network: Option<Value>,
    my_pod_subnet: Option<Value>,
    bridge: Option<String>,
    mtu: Option<u32>,
    ip_masq6: Option<bool>,
}

/// The settings of a policy (the course lab's fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The node network (the cloud VPC), not masqueraded.
    pub host_network: Nets,
    /// The whole cluster pod network: forwarded, not masqueraded.
    pub pod_network: Nets,
    /// This node's slice of the pod network, per family: a pod gets one address of each.
    pub pod_subnet: Nets,
    /// Bridge name (default `cni0`; the routed policy has no bridge and ignores it).
    pub bridge: String,
    /// MTU for the bridge and veths (kernel default when absent).
    pub mtu: Option<u32>,
    /// Masquerade IPv6 pod traffic leaving the cluster (`ipMasq6`, default off: most
    /// dual-stack clusters route their pods' IPv6 addresses). IPv4 is always masqueraded.
    pub ip_masq6: bool,
}

impl Config {
    /// Parse and validate the network config JSON. Errors are messages for code 7.
    pub fn parse(json: &str) -> Result<Config, String> {
        let raw: Raw = serde_json::from_str(json).map_err(|e| format!("network config: {e}"))?;
        let field = |name: &str, v: Option<Value>| -> Result<Nets, String> {
            let v = v.ok_or_else(|| format!("missing field {name:?} (a CIDR)"))?;
            Nets::parse(name, &v)
        };
        let host_network = field("myHostNetwork", raw.my_host_network)?;
        // the runner's grants read `podNetwork` first, then `myPodNetwork`: so do we
        let (pod_key, pod_value) = match raw.pod_network {
            Some(v) => ("podNetwork", Some(v)),
            None => ("myPodNetwork", raw.my_pod_network),
        };
        let pod_network = field(pod_key, pod_value)?;
        let pod_subnet = field("myPodSubnet", raw.my_pod_subnet)?;
        for subnet in pod_subnet.iter() {
            let Some(network) = pod_network.get(subnet.family()) else {
                return Err(format!(
                    "myPodSubnet {subnet} is not inside {pod_key} {pod_network}: it has no {} network",
                    subnet.family()
                ));
            };
            if !network.covers(subnet) {
                return Err(format!(
                    "myPodSubnet {subnet} is not inside {pod_key} {network}"
                ));
            }
            // a gateway and at least one pod between the network and the last address
            let room = subnet.family().bits() - 2;
            if subnet.prefix > room {
                return Err(format!(
                    "myPodSubnet {subnet} is too small: it needs room for a gateway and pods (/{room} or larger)"
                ));
            }
        }
        let bridge = raw.bridge.unwrap_or_else(|| "cni0".to_string());
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ', ':']) {
            return Err(format!("bridge {bridge:?} is not a valid interface name"));
        }
        if let Some(m) = raw.mtu {
            // IPv6 needs 1280 on every link
            let min = if pod_subnet.v6.is_some() { 1280 } else { 576 };
            if !(min..=65535).contains(&m) {
                return Err(format!("mtu {m} is out of range ({min}..65535)"));
            }
        }
        Ok(Config {
            host_network,
            pod_network,
            pod_subnet,
            bridge,
            mtu: raw.mtu,
            ip_masq6: raw.ip_masq6.unwrap_or(false),
        })
    }

    /// The IPv4 gateway: the IPv4 subnet's first address, if the node has an IPv4
    /// subnet (see [`Net::gateway`] for either family).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        match self.pod_subnet.v4?.gateway() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// The gateways in CIDR form with their subnet's prefix, IPv4 first:
    /// `200.200.1.1/24`, `fd00:200:1::1/64`.
    pub fn gateway_cidrs(&self) -> Vec<String> {
        self.pod_subnet
            .iter()
            .map(|s| format!("{}/{}", s.gateway(), s.prefix))
            .collect()
    }

    /// What node setup depends on; stored so later calls can skip verified setup.
    /// An IPv4-only config's is what it was in contract 0.1, so that nodes set up then
    /// are not set up again.
    pub fn fingerprint(&self) -> String {
        let mut f = format!(
            "v1 bridge={} gw={} pods={} hosts={} mtu={:?}",
            self.bridge,
            self.gateway_cidrs().join(","),
            self.pod_network,
            self.host_network,
            self.mtu
        );
        if self.ip_masq6 && self.pod_subnet.v6.is_some() {
            f.push_str(" masq6");
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"wasm-cni",
        "myHostNetwork":"10.0.0.0/16","myPodNetwork":"200.200.0.0/16","myPodSubnet":"200.200.1.0/24"}"#;

    const DUAL: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"wasm-cni",
        "myHostNetwork":["10.0.0.0/16","fd00:10::/64"],
        "myPodNetwork":["200.200.0.0/16","fd00:200::/32"],
        "myPodSubnet":["fd00:200:1::/64","200.200.1.0/24"]}"#;

    fn err(json: &str) -> String {
        Config::parse(json).unwrap_err()
    }

    #[test]
    fn parses_lab_config() {
        let c = Config::parse(OK).unwrap();
        assert_eq!(c.pod_subnet.to_string(), "200.200.1.0/24");
        assert_eq!(c.pod_subnet.v6, None);
        assert_eq!(c.gateway(), Some(Ipv4Addr::new(200, 200, 1, 1)));
        assert_eq!(c.bridge, "cni0");
        assert!(!c.ip_masq6);
        // unchanged from contract 0.1: nodes set up then are not set up again
        assert_eq!(
            c.fingerprint(),
            "v1 bridge=cni0 gw=200.200.1.1/24 pods=200.200.0.0/16 hosts=10.0.0.0/16 mtu=None"
        );
    }

    #[test]
    fn parses_dual_stack_lists_in_any_order() {
        let c = Config::parse(DUAL).unwrap();
        assert_eq!(c.pod_subnet.to_string(), "200.200.1.0/24,fd00:200:1::/64");
        assert_eq!(
            c.gateway_cidrs(),
            ["200.200.1.1/24", "fd00:200:1::1/64"].map(String::from)
        );
        assert_eq!(c.host_network.v6.unwrap().to_string(), "fd00:10::/64");
        assert_eq!(
            c.fingerprint(),
            "v1 bridge=cni0 gw=200.200.1.1/24,fd00:200:1::1/64 \
             pods=200.200.0.0/16,fd00:200::/32 hosts=10.0.0.0/16,fd00:10::/64 mtu=None"
        );
        let masq = DUAL.replace(r#""name":"n""#, r#""name":"n","ipMasq6":true"#);
        let c = Config::parse(&masq).unwrap();
        assert!(c.ip_masq6);
        assert!(c.fingerprint().ends_with(" masq6"), "{}", c.fingerprint());
    }

    #[test]
    fn parses_ipv6_only_and_one_element_lists() {
        let v6 = r#"{"myHostNetwork":"fd00:10::/64","podNetwork":["fd00:200::/32"],
            "myPodSubnet":["fd00:200:1::/64"]}"#;
        let c = Config::parse(v6).unwrap();
        assert_eq!(c.pod_subnet.v4, None);
        assert_eq!(c.gateway(), None);
        assert_eq!(c.gateway_cidrs(), ["fd00:200:1::1/64"]);
        let list4 = OK.replace(r#""200.200.1.0/24""#, r#"["200.200.1.0/24"]"#);
        assert_eq!(Config::parse(&list4).unwrap(), Config::parse(OK).unwrap());
    }

    #[test]
    fn pod_network_key_is_read_as_the_runner_reads_it() {
        // podNetwork wins over myPodNetwork, as in the runner's grants
        let both = OK.replace(
            r#""myPodNetwork""#,
            r#""podNetwork":"200.200.0.0/20","myPodNetwork""#,
        );
        assert_eq!(
            Config::parse(&both).unwrap().pod_network.to_string(),
            "200.200.0.0/20"
        );
        let outside = both.replace("200.200.1.0/24", "200.200.99.0/24");
        assert_eq!(
            err(&outside),
            "myPodSubnet 200.200.99.0/24 is not inside podNetwork 200.200.0.0/20"
        );
    }

    #[test]
    fn rejects_bad_lists() {
        let e = err(&OK.replace(r#""200.200.1.0/24""#, "[]"));
        assert!(e.starts_with("myPodSubnet: the list is empty"), "{e}");
        let e = err(&OK.replace(r#""200.200.1.0/24""#, r#"["200.200.1.0/24", 7]"#));
        assert_eq!(e, "myPodSubnet: item 1 is a number, not a CIDR string");
        let e = err(&OK.replace(r#""200.200.1.0/24""#, "7"));
        assert_eq!(
            e,
            "myPodSubnet: a number is neither a CIDR string nor a list of CIDR strings"
        );
        let e = err(&OK.replace(
            r#""200.200.1.0/24""#,
            r#"["200.200.1.0/24","200.200.2.0/24"]"#,
        ));
        assert_eq!(
            e,
            "myPodSubnet: two IPv4 networks (200.200.1.0/24 and 200.200.2.0/24): give at most one per address family"
        );
        let e = err(&DUAL.replace("fd00:10::/64", "fd00:11::/64\",\"fd00:10::/64"));
        assert!(e.starts_with("myHostNetwork: two IPv6 networks"), "{e}");
        let e = err(&DUAL.replace("fd00:200:1::/64", "fd00:200:1::5/64"));
        assert_eq!(
            e,
            "myPodSubnet: \"fd00:200:1::5/64\" is not a subnet: host bits are set (did you mean fd00:200:1::/64?)"
        );
    }

    #[test]
    fn rejects_a_subnet_of_a_family_the_pod_network_lacks() {
        let e = err(&OK.replace(
            r#""200.200.1.0/24""#,
            r#"["200.200.1.0/24","fd00:200:1::/64"]"#,
        ));
        assert_eq!(
            e,
            "myPodSubnet fd00:200:1::/64 is not inside myPodNetwork 200.200.0.0/16: it has no IPv6 network"
        );
        let e = err(&DUAL.replace("fd00:200:1::/64", "fd00:201:1::/64"));
        assert_eq!(
            e,
            "myPodSubnet fd00:201:1::/64 is not inside myPodNetwork fd00:200::/32"
        );
    }

    #[test]
    fn rejects_address_as_subnet() {
        let bad = OK.replace("200.200.1.0/24", "200.200.1.5/24");
        let e = err(&bad);
        assert!(e.contains("not a subnet"), "{e}");
    }

    #[test]
    fn rejects_subnet_outside_pod_network() {
        let bad = OK.replace("200.200.1.0/24", "10.1.0.0/24");
        assert!(err(&bad).contains("not inside"));
    }

    #[test]
    fn rejects_too_small_subnets_and_mtus() {
        assert!(err(&OK.replace("200.200.1.0/24", "200.200.1.0/31")).contains("(/30 or larger)"));
        assert!(Config::parse(&OK.replace("200.200.1.0/24", "200.200.1.0/30")).is_ok());
        let e = err(&DUAL.replace("fd00:200:1::/64", "fd00:200:1::/127"));
        assert!(e.contains("(/126 or larger)"), "{e}");
        let mtu =
            |json: &str, m: u32| json.replace(r#""name":"n""#, &format!(r#""name":"n","mtu":{m}"#));
        assert!(Config::parse(&mtu(OK, 1000)).is_ok());
        assert_eq!(
            err(&mtu(DUAL, 1000)),
            "mtu 1000 is out of range (1280..65535)"
        );
    }

    #[test]
    fn rejects_missing_and_garbage() {
        assert!(err(r#"{"myPodNetwork":"200.200.0.0/16"}"#).contains("myHostNetwork"));
        let bad = OK.replace("10.0.0.0/16", "10.0.0.0/33");
        assert!(err(&bad).contains("prefix"));
        let bad = OK.replace("10.0.0.0/16", "ten/16");
        assert!(Config::parse(&bad).is_err());
        let bad = DUAL.replace("fd00:10::/64", "fd00:10::/129");
        assert!(err(&bad).contains("from 0 to 128"));
        let bad = DUAL.replace("fd00:10::/64", "fd00:10:::/64");
        assert!(err(&bad).contains("is not an IPv6 address"));
        let bad = OK.replace(r#""200.200.1.0/24""#, "null");
        assert_eq!(err(&bad), "missing field \"myPodSubnet\" (a CIDR)");
        let bad = OK.replace(r#""type""#, r#""ipMasq6":"yes","type""#);
        assert!(err(&bad).contains("expected a boolean"), "{}", err(&bad));
    }

    #[test]
    fn net_math() {
        let n = Net::parse("200.200.1.0/24", true).unwrap();
        assert_eq!(n.broadcast(), IpAddr::from([200, 200, 1, 255]));
        assert!(n.contains(Ipv4Addr::new(200, 200, 1, 77)));
        assert!(!n.contains(Ipv4Addr::new(200, 200, 2, 1)));
        assert!(!n.contains("::1".parse::<Ipv6Addr>().unwrap()));
        let all = Net::parse("0.0.0.0/0", true).unwrap();
        assert!(all.covers(n));
        assert_eq!(all.broadcast(), IpAddr::from([255, 255, 255, 255]));
        let v6 = Net::parse("fd00:200:1::/64", true).unwrap();
        assert_eq!(v6.gateway().to_string(), "fd00:200:1::1");
        assert_eq!(
            v6.broadcast().to_string(),
            "fd00:200:1:0:ffff:ffff:ffff:ffff"
        );
        assert_eq!(v6.offset_of(v6.nth(1 << 40)), 1 << 40);
        assert!(!v6.covers(n));
        let all6 = Net::parse("::/0", true).unwrap();
        assert!(all6.covers(v6));
        assert_eq!(
            all6.broadcast().to_string(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert!(Net::parse("fd00::1/64", true).is_err());
        assert_eq!(
            Net::parse("fd00::1/64", false)
                .unwrap()
                .network()
                .to_string(),
            "fd00::"
        );
    }
}
