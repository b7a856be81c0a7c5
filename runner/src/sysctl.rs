//! Reading and writing /proc/sys/net in a namespace. /proc/sys/net shows the namespace
//! of the thread that opens the file, so container values are opened from inside it.

use crate::netns::{Namespaces, Ns};
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
