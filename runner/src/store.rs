//! The per-network key-value store and lock, in `stateDir/<network>/`.
//!
//! - `lock`: flock'ed for the whole guest call, so a guest's sequence of store calls is
//!   atomic with respect to other calls for the same network.
//! - `kv/<encoded key>`: one file per key, written to a file in `tmp/` and renamed, so a
//!   killed process (even SIGKILL) leaves the old or the new value, never a torn one.
//!   There is no fsync (it would cost milliseconds per ADD): after a power loss or kernel
//!   crash a recent value may be lost or empty; IPAM state is rebuilt by GC.

use crate::error::{Error, Result};
use crate::op_error::{OpError, OpResult};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const MAX_KEY: usize = 200;
pub const MAX_VALUE: usize = 64 * 1024;

/// Keys are printable ASCII; file names escape everything but `[A-Za-z0-9._-]`.
fn encode(key: &str) -> String {
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

fn decode(name: &str) -> Option<String> {
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

/// The store of one network.
pub struct Store {
    dir: PathBuf,
    kv: PathBuf,
    /// Writers' temporary files: a directory of their own, so that sweeping what killed
    /// writers left reads a (normally empty) directory, not every key.
    tmp: PathBuf,
}

/// The network lock; released when dropped (or when the process dies).
pub struct NetworkLock {
    _lock: Flock<File>,
    pub waited: Duration,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let kv = dir.join("kv");
        let tmp = dir.join("tmp");
        for d in [&kv, &tmp] {
            fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("state directory {}", d.display()), e))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            kv,
            tmp,
        })
    }

    /// Take the network lock, waiting at most `timeout` (then: code 11).
    pub fn lock(&self, timeout: Duration) -> Result<NetworkLock> {
        let path = self.dir.join("lock");
        let start = Instant::now();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("lock file {}", path.display()), e))?;
        let mut pause = Duration::from_micros(200);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Ok(NetworkLock {
                        _lock: lock,
                        waited: start.elapsed(),
                    })
                }
                Err((f, nix::errno::Errno::EWOULDBLOCK)) | Err((f, nix::errno::Errno::EINTR)) => {
                    if start.elapsed() >= timeout {
                        return Err(Error::TryAgain(format!(
                            "network lock {} still held by another call after {} ms",
                            path.display(),
                            timeout.as_millis()
                        )));
                    }
                    file = f;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err((_, e)) => return Err(Error::io(format!("lock {}", path.display()), e.into())),
            }
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.kv.join(encode(key))
    }

    pub fn get(&self, key: &str) -> OpResult<Option<String>> {
        check_key(key)?;
        match fs::read_to_string(self.path(key)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(OpError::failed(format!("store get {key:?}: {e}"))),
        }
    }

    pub fn put(&self, key: &str, value: &str) -> OpResult<()> {
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(OpError::invalid(format!(
                "store put {key:?}: value of {} bytes is over the {MAX_VALUE}-byte limit",
                value.len()
            )));
        }
        let tmp = self
            .tmp
            .join(format!("{}-{}", std::process::id(), encode(key)));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            // Allocating the blocks up front spares ext4 the flush it otherwise forces
            // when a rename replaces a file (auto_da_alloc): 227 -> 138 us per put here.
            if !value.is_empty() {
                let _ = nix::fcntl::fallocate(
                    &f,
                    nix::fcntl::FallocateFlags::empty(),
                    0,
                    value.len() as i64,
                );
            }
            f.write_all(value.as_bytes())?;
            fs::rename(&tmp, self.path(key))
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            OpError::failed(format!("store put {key:?}: {e}"))
        })
    }

    pub fn delete(&self, key: &str) -> OpResult<bool> {
        check_key(key)?;
        match fs::remove_file(self.path(key)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(OpError::failed(format!("store delete {key:?}: {e}"))),
        }
    }

    pub fn list(&self, prefix: &str) -> OpResult<Vec<String>> {
        let rd = fs::read_dir(&self.kv).map_err(|e| OpError::failed(format!("store list: {e}")))?;
        let mut keys = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| OpError::failed(format!("store list: {e}")))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(k) = decode(name) {
                if k.starts_with(prefix) {
                    keys.push(k);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Remove temporary files left by writers that were killed (called under the lock,
    /// so no live writer of this network has one).
    pub fn sweep_temporaries(&self) {
        if let Ok(rd) = fs::read_dir(&self.tmp) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_list_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        s.put("attach/abc/eth0", "200.200.1.2").unwrap();
        s.put("ip/200.200.1.2", "abc eth0").unwrap();
        s.put(".hidden", "x").unwrap();
        assert_eq!(
            s.get("attach/abc/eth0").unwrap().as_deref(),
            Some("200.200.1.2")
        );
        assert_eq!(s.list("ip/").unwrap(), vec!["ip/200.200.1.2"]);
        assert_eq!(s.list("").unwrap().len(), 3);
        assert!(s.delete("ip/200.200.1.2").unwrap());
        assert!(!s.delete("ip/200.200.1.2").unwrap());
        assert_eq!(s.get("nope").unwrap(), None);
    }

    #[test]
    fn keys_cannot_escape() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let denied = crate::op_error::OpKind::Denied;
        assert_eq!(s.put("../../etc/passwd", "x").unwrap_err().kind, denied);
        assert_eq!(s.put("/etc/passwd", "x").unwrap_err().kind, denied);
        assert_eq!(s.get("a/../b").unwrap_err().kind, denied);
        // dots inside names are fine, and stay inside kv/
        s.put("a/..b/c", "x").unwrap();
        s.put(".dot", "x").unwrap();
        assert_eq!(s.list("").unwrap(), vec![".dot", "a/..b/c"]);
        let mut entries: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        entries.sort();
        assert_eq!(
            entries,
            ["kv", "tmp"],
            "nothing outside the store's own directories"
        );
        let bad = crate::op_error::OpKind::InvalidArgument;
        assert_eq!(s.put("with space", "x").unwrap_err().kind, bad);
        assert!(s.put("k", &"x".repeat(MAX_VALUE + 1)).is_err());
    }

    #[test]
    fn lock_times_out_with_code_11() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let _held = s.lock(Duration::from_millis(10)).unwrap();
        // flock locks belong to the open file description: a second open contends.
        let e = s.lock(Duration::from_millis(30)).err().unwrap();
        assert_eq!(e.code(), 11);
    }
}
