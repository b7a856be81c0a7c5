//! Reading and writing /proc/sys/net in a namespace. /proc/sys/net shows the namespace
//! of the thread that opens the file, so container values are opened from inside it.

use super::netns::Namespaces;
use crate::node::{Family, Ns, OpError, OpResult, SysctlKey, SysctlValue};

fn io_err(key: &str, e: std::io::Error) -> OpError {
    OpError::from_io(&e, format!("sysctl {key}: {e}"))
}

pub fn get(ns: &mut Namespaces, which: Ns, key: &SysctlKey) -> OpResult<String> {
    let p = key.proc_path();
    let read = || std::fs::read_to_string(&p);
    let r = match which {
        Ns::Host => read(),
        Ns::Container => ns.in_container(read)?,
    };
    r.map(|s| s.trim().to_string())
        .map_err(|e| io_err(key.as_str(), e))
}

pub fn set(ns: &mut Namespaces, which: Ns, key: &SysctlKey, value: &str) -> OpResult<()> {
    let p = key.proc_path();
    let write = || std::fs::write(&p, value);
    let r = match which {
        Ns::Host => write(),
        Ns::Container => ns.in_container(write)?,
    };
    r.map_err(|e| io_err(key.as_str(), e))
}

/// The IPv4 `forwarding` values of `default` and of every link: writing `ip_forward`
/// (or `conf.all.forwarding`) makes the kernel copy it into all of them.
pub fn forwarding_values(ns: &mut Namespaces, which: Ns) -> OpResult<Vec<SysctlValue>> {
    let read = || -> std::io::Result<Vec<SysctlValue>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc/sys/net/ipv4/conf")? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name == "all" {
                continue; // the same switch as ip_forward, restored first
            }
            let key = SysctlKey::per_link(Family::V4, &name, "forwarding");
            // a link may vanish between the listing and the read
            if let Ok(v) = std::fs::read_to_string(key.proc_path()) {
                out.push(SysctlValue {
                    key,
                    value: v.trim().to_string(),
                });
            }
        }
        // `default` first: restoring it changes no link
        out.sort_by_key(|v| v.key.link() != Some("default"));
        Ok(out)
    };
    let r = match which {
        Ns::Host => read(),
        Ns::Container => ns.in_container(read)?,
    };
    r.map_err(|e| io_err("net.ipv4.conf.*.forwarding", e))
}
