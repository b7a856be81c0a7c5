//! CHECK compares the node with the result ADD returned (`prevResult` in the config).
//! This module reads that result into what to look for in the container.

use serde_json::Value;

/// What CHECK should find in the container for one attachment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// The container interface's MAC, if the result recorded one.
    pub mac: Option<String>,
    /// Addresses (CIDR text) that belong on the container interface.
    pub addresses: Vec<String>,
    /// Routes in the container: destination and optional gateway.
    pub routes: Vec<(String, Option<String>)>,
}

/// Read `prevResult` from the network config for the container interface `ifname`.
/// Errors are messages for code 7 (the config lacks or garbles `prevResult`).
pub fn expected(config_json: &str, ifname: &str) -> Result<Expected, String> {
    let conf: Value =
        serde_json::from_str(config_json).map_err(|e| format!("network config: {e}"))?;
    let prev = conf
        .get("prevResult")
        .filter(|p| p.is_object())
        .ok_or("CHECK needs prevResult in the network config")?;
    let ifaces: Vec<&Value> = prev["interfaces"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mac = ifaces
        .iter()
        .find(|i| i["name"] == ifname && i.get("sandbox").is_some())
        .and_then(|i| i["mac"].as_str())
        .map(str::to_string);
    let mut addresses = Vec::new();
    for ip in prev["ips"].as_array().into_iter().flatten() {
        // an address without an interface index is taken to be the pod's
        let on_pod = match ip["interface"].as_u64() {
            Some(i) => ifaces.get(i as usize).is_some_and(|f| f["name"] == ifname),
            None => true,
        };
        if let (true, Some(a)) = (on_pod, ip["address"].as_str()) {
            addresses.push(a.to_string());
        }
    }
    let routes = prev["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            Some((dst.to_string(), r["gw"].as_str().map(str::to_string)))
        })
        .collect();
    Ok(Expected {
        mac,
        addresses,
        routes,
    })
}

impl Expected {
    /// The container interface as found (`None`: missing; else whether it is up, and
    /// its MAC) against the result. Errors are messages for code 102.
    pub fn check_link(&self, ifname: &str, found: Option<(bool, &str)>) -> Result<(), String> {
        let (up, mac) = found.ok_or(format!("interface {ifname:?} is missing in the container"))?;
        if !up {
            return Err(format!("interface {ifname:?} in the container is down"));
        }
        match &self.mac {
            Some(want) if !want.eq_ignore_ascii_case(mac) => Err(format!(
                "interface {ifname:?} has MAC {mac} instead of {want}"
            )),
            _ => Ok(()),
        }
    }

    /// The interface's addresses and the container's routes (destination, gateway)
    /// against the result: each expected one must be there (more is fine).
    pub fn check_config(
        &self,
        ifname: &str,
        addresses: &[String],
        routes: &[(String, Option<String>)],
    ) -> Result<(), String> {
        if let Some(missing) = self.addresses.iter().find(|a| !addresses.contains(a)) {
            return Err(format!("address {missing} is missing on {ifname:?}"));
        }
        for (dst, gw) in &self.routes {
            if !routes
                .iter()
                .any(|(d, g)| d == dst && (gw.is_none() || g == gw))
            {
                return Err(format!("route to {dst} is missing in the container"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pod_side_of_a_result() {
        let conf = r#"{"prevResult":{
            "interfaces":[{"name":"wc1","mac":"aa:aa:aa:aa:aa:aa"},
                          {"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/run/netns/x"}],
            "ips":[{"address":"200.200.1.2/24","gateway":"200.200.1.1","interface":1},
                   {"address":"10.9.9.9/32","interface":0}],
            "routes":[{"dst":"0.0.0.0/0","gw":"200.200.1.1"},{"dst":"200.200.1.1/32"}]}}"#;
        let e = expected(conf, "eth0").unwrap();
        assert_eq!(e.mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(e.addresses, vec!["200.200.1.2/24".to_string()]);
        assert_eq!(
            e.routes,
            vec![
                ("0.0.0.0/0".to_string(), Some("200.200.1.1".to_string())),
                ("200.200.1.1/32".to_string(), None)
            ]
        );
    }

    #[test]
    fn compares_what_is_found_with_the_result() {
        let e = Expected {
            mac: Some("02:00:00:00:00:01".into()),
            addresses: vec!["200.200.1.2/24".into()],
            routes: vec![("0.0.0.0/0".into(), Some("200.200.1.1".into()))],
        };
        assert!(e
            .check_link("eth0", Some((true, "02:00:00:00:00:01")))
            .is_ok());
        assert!(e.check_link("eth0", None).unwrap_err().contains("missing"));
        assert!(e
            .check_link("eth0", Some((false, "02:00:00:00:00:01")))
            .unwrap_err()
            .contains("down"));
        assert!(e
            .check_link("eth0", Some((true, "02:00:00:00:00:02")))
            .unwrap_err()
            .contains("MAC"));
        let addrs = vec!["200.200.1.2/24".to_string(), "10.1.1.1/32".to_string()];
        let routes = vec![
            ("200.200.1.0/24".to_string(), None),
            ("0.0.0.0/0".to_string(), Some("200.200.1.1".to_string())),
        ];
        assert!(e.check_config("eth0", &addrs, &routes).is_ok());
        let err = e.check_config("eth0", &addrs[1..], &routes).unwrap_err();
        assert!(err.contains("address 200.200.1.2/24 is missing"), "{err}");
        let other_gw = vec![("0.0.0.0/0".to_string(), Some("200.200.1.9".to_string()))];
        let err = e.check_config("eth0", &addrs, &other_gw).unwrap_err();
        assert!(err.contains("route to 0.0.0.0/0 is missing"), "{err}");
    }

    #[test]
    fn missing_prev_result_is_an_error() {
        assert!(expected(r#"{"name":"n"}"#, "eth0").is_err());
        assert!(expected(r#"{"prevResult":"x"}"#, "eth0").is_err());
        assert!(expected("not json", "eth0").is_err());
    }
}
