//! Reading and writing /proc/sys/net in a namespace. /proc/sys/net shows the namespace
//! of the thread that opens the file, so container values are opened from inside it.

use crate::netns::{Namespaces, Ns};
use crate::node::SysctlValue;
use crate::op_error::{OpError, OpResult};
use std::path::PathBuf;

/// The /proc path of a dotted key whose parts were already checked by the grants.
fn path(parts: &[&str]) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    for part in parts {
        p.push(part);
    }
    p
}

fn io_err(key: &str, e: std::io::Error) -> OpError {
    OpError::from_errno(e.raw_os_error().unwrap_or(0), format!("sysctl {key}: {e}"))
}

pub fn get(ns: &mut Namespaces, which: Ns, key: &str, parts: &[&str]) -> OpResult<String> {
    let p = path(parts);
    let read = || std::fs::read_to_string(&p);
    let r = match which {
        Ns::Host => read(),
        Ns::Container => ns.in_container(read)?,
    };
    r.map(|s| s.trim().to_string()).map_err(|e| io_err(key, e))
}

pub fn set(ns: &mut Namespaces, which: Ns, key: &str, parts: &[&str], value: &str) -> OpResult<()> {
    let p = path(parts);
    let write = || std::fs::write(&p, value);
    let r = match which {
        Ns::Host => write(),
        Ns::Container => ns.in_container(write)?,
    };
    r.map_err(|e| io_err(key, e))
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
            let parts: Vec<String> = ["net", "ipv4", "conf", &name, "forwarding"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            // a link may vanish between the listing and the read
            if let Ok(v) = std::fs::read_to_string(path(&refs)) {
                out.push(SysctlValue {
                    key: format!("net.ipv4.conf.{name}.forwarding"),
                    parts,
                    value: v.trim().to_string(),
                });
            }
        }
        // `default` first: restoring it changes no link
        out.sort_by_key(|v| v.parts[3] != "default");
        Ok(out)
    };
    let r = match which {
        Ns::Host => read(),
        Ns::Container => ns.in_container(read)?,
    };
    r.map_err(|e| io_err("net.ipv4.conf.*.forwarding", e))
}
