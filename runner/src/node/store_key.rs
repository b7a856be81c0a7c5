//! Store keys, the same for every node: which keys the store holds (`check_key`, the
//! gate's check too) and the file name each key has in the kernel's store directory
//! (one file per key, so the escaped name bounds the key).

use crate::node::{OpError, OpResult};

pub const MAX_KEY: usize = 200;
pub const MAX_VALUE: usize = 64 * 1024;

/// Keys are printable ASCII; file names escape everything but `[A-Za-z0-9._-]`.
pub(crate) fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('.') {
        // never `.` or `..`
        out.replace_range(0..1, "%2E");
    }
    out
}

pub(crate) fn decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reject keys the store cannot hold (the grants call this too).
pub fn check_key(key: &str) -> OpResult<()> {
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(OpError::invalid(format!(
            "store key {key:?}: must be 1 to {MAX_KEY} printable ASCII characters without spaces"
        )));
    }
    // One file per key: the escaped name (+ the temporary prefix) must fit in 255 bytes.
    if encode(key).len() > 230 {
        return Err(OpError::invalid(format!(
            "store key {key:?}: too long once escaped for a file name (use fewer characters outside [A-Za-z0-9._-])"
        )));
    }
    // Keys are names inside this network's store, not paths: refuse anything that
    // reads like a way out of it.
    if key.starts_with('/') || key.split('/').any(|seg| seg == "..") {
        return Err(OpError::denied(format!(
            "store key {key:?}: keys live in this network's store; '/' at the start and '..' segments are refused"
        )));
    }
    Ok(())
}
