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

/// The `forwarding` values of `family` of `default` and of every link: writing the
/// family's switch (`ip_forward`, `ipv6.conf.all.forwarding`) makes the kernel copy it
/// into all of them.
pub fn forwarding_values(
    ns: &mut Namespaces,
    which: Ns,
    family: Family,
) -> OpResult<Vec<SysctlValue>> {
    let dir = match family {
        Family::V4 => "/proc/sys/net/ipv4/conf",
        Family::V6 => "/proc/sys/net/ipv6/conf",
    };
    let read = || -> std::io::Result<Vec<SysctlValue>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name == "all" {
                continue; // the switch itself, restored first
            }
            let key = SysctlKey::per_link(family, &name, "forwarding");
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
    let what = match family {
        Family::V4 => "net.ipv4.conf.*.forwarding",
        Family::V6 => "net.ipv6.conf.*.forwarding",
    };
    r.map_err(|e| io_err(what, e))
}
