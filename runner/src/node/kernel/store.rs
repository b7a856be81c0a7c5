//! The per-network key-value store and lock, in `stateDir/<network>/`.
//!
//! - `lock`: flock'ed while a call works on the store, so a sequence of store calls is
//!   atomic with respect to other calls for the same network: for the whole guest call,
//!   or (a guest importing `lock`) from `acquire` (or its first store call) to `release`.
//!   The flock lives in this `Store` alone (it belongs to the open file description):
//!   every part of the process, the supervisor's rollback too, enters it through here.
//! - `kv/<encoded key>`: one file per key, written to a file in `tmp/` and renamed, so a
//!   killed process (even SIGKILL) leaves the old or the new value, never a torn one.
//!   There is no fsync (it would cost milliseconds per ADD): after a power loss or kernel
//!   crash a recent value may be lost or empty; IPAM state is rebuilt by GC.
//! - `records`: the runner's own records, out of the guest's reach: which attachment
//!   created each owned key (only its calls and GC may delete it), the addresses each
//!   live attachment was given (its ADD result), and the store's size. An append-only
//!   log of tab-separated lines, read once per call that needs it and compacted when
//!   it grows: appending to a file costs microseconds, where each new file (a new
//!   inode) costs ~0.35 ms on ext4 here. A call's questions about one key, address or
//!   attachment are answered by scanning the lines that concern it, without replaying
//!   the others into maps (which cost ~0.25 µs a line: 0.25 ms per ADD on a node of 250
//!   pods); only the questions about all of them (GC, DEL's guest copies) replay it.
//! - `boot_id`: the boot that wrote this state. Pods do not survive a reboot, so neither
//!   does anything held for them: on a new boot the store and the records are cleared.

use crate::error::{Error, Result};
use crate::node::store_key::{check_key, decode, encode, MAX_VALUE};
use crate::node::{OpError, OpResult, StoreUsage};
use nix::fcntl::{Flock, FlockArg};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Copies of the guests that set up live attachments, `<network dir>/guests/<sha256
/// hex>.wasm`: when the config names another guest, the DEL and CHECK of an attachment
/// still run the guest that did its ADD (which knows its store layout and wiring); a
/// copy goes when its last attachment does. Making one touches no file.
pub struct KeptGuests {
    dir: PathBuf,
}

impl KeptGuests {
    pub fn new(network_dir: &Path) -> Self {
        KeptGuests {
            dir: network_dir.join("guests"),
        }
    }

    /// Where the copy of the guest with `digest` is kept.
    pub fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(format!("{hex}.wasm"))
    }

    /// Keep a copy of a guest's bytes (`wasm`: read and verified against `digest` by the
    /// caller, only when no copy is there); written aside and renamed, so a reader never
    /// sees half a file.
    pub fn keep(
        &self,
        digest: &str,
        wasm: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> std::io::Result<()> {
        let path = self.path(digest);
        if path.exists() {
            return Ok(());
        }
        let wasm = wasm()?;
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".tmp-{}", std::process::id()));
        fs::write(&tmp, wasm)
            .and_then(|_| fs::rename(&tmp, &path))
            .inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
    }

    /// Remove the copies no live attachment needs; returns how many went.
    pub fn prune(&self, in_use: &[String]) -> std::io::Result<usize> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for e in entries {
            let path = e?.path();
            let used = path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|hex| {
                    in_use
                        .iter()
                        .any(|d| d.strip_prefix("sha256:") == Some(hex))
                });
            if !used {
                fs::remove_file(&path)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The runner's records, as replayed from the `records` log.
#[derive(Default, Debug)]
pub struct Records {
    owners: HashMap<String, String>,
    holders: HashMap<String, Vec<IpAddr>>,
    held: HashMap<IpAddr, String>,
    /// The guest (digest) that set up each attachment.
    guests: HashMap<String, String>,
    /// The store's size after the last call that wrote and ended normally; none while
    /// a call that writes is under way (a killed one leaves none: the next one counts).
    usage: Option<StoreUsage>,
}

/// A record line's fields, without allocating: the first four, and how many it has.
struct Fields<'a> {
    first: [&'a str; 4],
    n: usize,
}

impl<'a> Fields<'a> {
    fn of(line: &'a str) -> Fields<'a> {
        let mut first = [""; 4];
        let mut n = 0;
        for (i, part) in line.split('\t').enumerate() {
            if let Some(slot) = first.get_mut(i) {
                *slot = part;
            }
            n = i + 1;
        }
        Fields { first, n }
    }

    /// The first four fields (all of them when there are fewer).
    fn head(&self) -> &[&'a str] {
        &self.first[..self.n.min(4)]
    }
}

/// An address as the runner writes it (`IpAddr`'s display form); any other spelling of
/// an address, which no runner writes, is not one, for replays and scans alike.
fn canonical_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .filter(|ip| ip.to_string() == text)
}

/// The first line of a compacted log: how many live records it held then (older
/// runners skip it as a line of an unknown kind).
const LIVE_HEADER: &str = "#live";

impl Records {
    /// The records the lines of `text` leave.
    fn replay(text: &str) -> Records {
        let mut r = Records::default();
        for line in text.lines() {
            r.apply(line);
        }
        r
    }

    fn apply(&mut self, line: &str) {
        let fields = Fields::of(line);
        let (f, n) = (fields.head(), fields.n);
        match (f, n) {
            (["own", key, att], 3) => {
                self.owners.insert(key.to_string(), att.to_string());
            }
            (["disown", key], 2) => {
                self.owners.remove(*key);
            }
            (["hold", att, ips, ..], _) => {
                // the 4th field (the guest's digest) is absent in records of older runners
                if let Some(guest) = f.get(3).filter(|g| !g.is_empty()) {
                    self.guests.insert(att.to_string(), guest.to_string());
                }
                let ips: Vec<IpAddr> = ips.split(',').filter_map(canonical_ip).collect();
                for ip in &ips {
                    self.held.insert(*ip, att.to_string());
                }
                self.holders.insert(att.to_string(), ips);
            }
            (["release", att], 2) => {
                self.guests.remove(*att);
                for ip in self.holders.remove(*att).unwrap_or_default() {
                    if self.held.get(&ip).map(String::as_str) == Some(*att) {
                        self.held.remove(&ip);
                    }
                }
            }
            (["usage", keys, bytes], 3) => {
                self.usage = match (keys.parse(), bytes.parse()) {
                    (Ok(keys), Ok(bytes)) => Some(StoreUsage { keys, bytes }),
                    _ => None,
                }
            }
            (["usage", "-"], 2) => self.usage = None,
            _ => {}
        }
    }

    /// The same records in as few lines as possible.
    fn compacted(&self) -> String {
        let mut out = format!("{LIVE_HEADER}\t{}\n", self.live());
        for (k, a) in &self.owners {
            out.push_str(&format!("own\t{k}\t{a}\n"));
        }
        for (a, ips) in &self.holders {
            let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            let guest = self.guests.get(a).map(String::as_str).unwrap_or_default();
            out.push_str(&format!("hold\t{a}\t{}\t{guest}\n", ips.join(",")));
        }
        if let Some(u) = self.usage {
            out.push_str(&format!("usage\t{}\t{}\n", u.keys, u.bytes));
        }
        out
    }

    fn live(&self) -> usize {
        self.owners.len() + self.holders.len() + 1
    }
}

/// Questions about one key, address or attachment, answered from the log's lines with
/// exactly what replaying it would give (`Records::apply`), looking only at the lines
/// that concern it: the last one that does decides.
mod scan {
    use super::{Fields, StoreUsage};
    use memchr::memmem;
    use std::net::IpAddr;

    /// The line of `text` around byte `at`: where it starts, and the line (as
    /// `str::lines` gives it).
    fn line_at(text: &str, at: usize) -> (usize, &str) {
        let b = text.as_bytes();
        let start = memchr::memrchr(b'\n', &b[..at]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &b[at..]).map_or(b.len(), |i| at + i);
        let line = &text[start..end];
        (start, line.strip_suffix('\r').unwrap_or(line))
    }

    /// The lines of `text` that contain `needle`, from the last to the first, each
    /// once: where it starts, and the line. One pass of a substring search over the
    /// log, not a walk through its lines.
    fn lines_with<'t: 'n, 'n>(
        text: &'t str,
        needle: &'n str,
    ) -> impl Iterator<Item = (usize, &'t str)> + 'n {
        let mut seen = usize::MAX;
        memmem::rfind_iter(text.as_bytes(), needle.as_bytes()).filter_map(move |at| {
            let (start, l) = line_at(text, at);
            if start == seen {
                return None; // the needle twice in one line
            }
            seen = start;
            Some((start, l))
        })
    }

    /// From the last line that contains `needle` to the first, the first answer
    /// `decide` gives. Every line that can decide contains the needle (a field of it,
    /// with the tab before it), so the others are never split.
    fn last<'a, T>(
        text: &'a str,
        needle: &str,
        decide: impl Fn(&[&'a str], usize) -> Option<T>,
    ) -> Option<T> {
        lines_with(text, needle).find_map(|(_, l)| {
            let f = Fields::of(l);
            decide(f.head(), f.n)
        })
    }

    pub fn owner(text: &str, key: &str) -> Option<String> {
        last(text, &format!("\t{key}"), |f, n| match (f, n) {
            (["own", k, att], 3) if *k == key => Some(Some(att.to_string())),
            (["disown", k], 2) if *k == key => Some(None),
            _ => None,
        })
        .flatten()
    }

    pub fn usage(text: &str) -> Option<StoreUsage> {
        last(text, "usage\t", |f, n| match (f, n) {
            (["usage", keys, bytes], 3) => Some(match (keys.parse(), bytes.parse()) {
                (Ok(keys), Ok(bytes)) => Some(StoreUsage { keys, bytes }),
                _ => None,
            }),
            (["usage", "-"], 2) => Some(None),
            _ => None,
        })
        .flatten()
    }

    /// The answer of the last hold or release of `att` (`None`: there is none).
    fn last_of<'a, T>(
        text: &'a str,
        att: &str,
        decide: impl Fn(&[&'a str], usize) -> Option<T>,
    ) -> Option<T> {
        last(text, &format!("\t{att}"), decide)
    }

    pub fn holds(text: &str, att: &str) -> bool {
        last_of(text, att, |f, n| match (f, n) {
            (["hold", a, _, ..], _) if *a == att => Some(true),
            (["release", a], 2) if *a == att => Some(false),
            _ => None,
        })
        .unwrap_or(false)
    }

    pub fn guest(text: &str, att: &str) -> Option<String> {
        last_of(text, att, |f, n| match (f, n) {
            // a hold without a guest (an older runner's) leaves the one before
            (["hold", a, _, ..], _) if *a == att => f
                .get(3)
                .filter(|g| !g.is_empty())
                .map(|g| Some(g.to_string())),
            (["release", a], 2) if *a == att => Some(None),
            _ => None,
        })
        .flatten()
    }

    /// The attachment holding `ip`. A replay gives it to the last hold that names it
    /// (no later hold does), and takes it away if the first later line about that
    /// attachment is its release; a later hold of it without `ip` leaves it held (its
    /// release then frees only what that hold names).
    pub fn holder(text: &str, ip: IpAddr) -> Option<String> {
        let shown = ip.to_string();
        // `shown` is the display form: a field equal to it is the address, canonical
        let names_ip = |ips: &str| ips.split(',').any(|i| i == shown);
        let (end, att) = lines_with(text, &shown).find_map(|(start, l)| {
            let f = Fields::of(l);
            match f.head() {
                ["hold", a, ips, ..] if names_ip(ips) => Some((start + l.len(), *a)),
                _ => None,
            }
        })?;
        let after = &text[end..];
        let released = memmem::find_iter(after.as_bytes(), format!("\t{att}").as_bytes())
            .find_map(|at| {
                let (_, l) = line_at(after, at);
                let f = Fields::of(l);
                match (f.head(), f.n) {
                    (["hold", a, ..], m) if *a == att && m >= 3 => Some(false),
                    (["release", a], 2) if *a == att => Some(true),
                    _ => None,
                }
            })
            .unwrap_or(false);
        (!released).then(|| att.to_string())
    }
}

/// The log as read, and the records replayed from it when a question needs all of them.
/// Re-entering the lock reads only what other calls appended since (the log is
/// append-only between compactions, and a compaction renames a new file into place):
/// an ADD that leaves and re-enters the lock (a guest importing `lock`) would otherwise
/// read the whole log three times, a cost that grows with the pods on the node.
struct RecordsLog {
    /// The log's whole lines, as read and as appended since.
    text: String,
    /// The records replayed, for the questions about all of them (GC, DEL's guest
    /// copies): made on the first; the questions about one thing always scan `text`.
    full: Option<Records>,
    f: File,
    /// Bytes of `f` replayed (and appended by us).
    at: u64,
    /// Read before the lock was last entered: check the log for others' appends.
    stale: bool,
}

/// The store of one network.
pub struct Store {
    dir: PathBuf,
    kv: PathBuf,
    /// Writers' temporary files: a directory of their own, so that sweeping what killed
    /// writers left reads a (normally empty) directory, not every key.
    tmp: PathBuf,
    /// The records, loaded on first use inside the lock, and the log to append to.
    /// Marked stale when the lock is left: another call may append meanwhile.
    records: Option<RecordsLog>,
    /// The network lock, while this call is inside it.
    held: Option<NetworkLock>,
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
            records: None,
            held: None,
        })
    }

    /// Enter the network lock, waiting at most `timeout` (then: code 11) or until
    /// `stop` says so. Returns how long it waited, or `None` if already inside.
    pub fn enter(
        &mut self,
        timeout: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Duration>> {
        if self.held.is_some() {
            return Ok(None);
        }
        let l = self.lock_until(timeout, stop)?;
        let waited = l.waited;
        self.held = Some(l);
        if let Some(log) = &mut self.records {
            log.stale = true;
        }
        Ok(Some(waited))
    }

    /// Leave the network lock (nothing if outside). What was read under it is dropped.
    pub fn leave(&mut self) {
        if self.held.take().is_some() {
            if let Some(log) = &mut self.records {
                log.stale = true;
            }
        }
    }

    #[cfg(test)]
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Take the network lock, waiting at most `timeout` (then: code 11).
    #[cfg(test)]
    pub fn lock(&self, timeout: Duration) -> Result<NetworkLock> {
        self.lock_until(timeout, &|| false)
    }

    fn lock_until(&self, timeout: Duration, stop: &dyn Fn() -> bool) -> Result<NetworkLock> {
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
                    if start.elapsed() >= timeout || stop() {
                        return Err(Error::TryAgain(format!(
                            "network lock {} still held by another call after {} ms",
                            path.display(),
                            start.elapsed().as_millis()
                        )));
                    }
                    file = f;
                    std::thread::sleep(pause);
                    // short pauses: with many waiters a long one leaves the lock idle
                    pause = (pause * 2).min(Duration::from_millis(1));
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
        self.write_file(&self.path(key), value.as_bytes())
            .map_err(|e| OpError::failed(format!("store put {key:?}: {e}")))
    }

    // ---- the runner's records (call these under the network lock) -------------------

    /// The records, read from the log on first use in this call. A torn last line (a
    /// writer killed mid-append) is cut off; a log much longer than what it holds is
    /// rewritten compacted.
    fn records(&mut self) -> OpResult<&mut RecordsLog> {
        let path = self.dir.join("records");
        let fail =
            |e: std::io::Error| OpError::failed(format!("runner records {}: {e}", path.display()));
        if let Some(log) = &mut self.records {
            if log.stale && !Self::replay_appended(&path, log).map_err(fail)? {
                self.records = None;
            }
        }
        if self.records.is_none() {
            let mut f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(fail)?;
            let mut text = String::new();
            use std::io::Read;
            f.read_to_string(&mut text).map_err(fail)?;
            let whole = text.rfind('\n').map_or(0, |i| i + 1);
            if whole < text.len() {
                f.set_len(whole as u64).map_err(fail)?;
                text.truncate(whole);
            }
            let mut at = whole as u64;
            let mut full = None;
            // Compacted when it has more than twice the live records it had at its
            // last compaction (+256): a call's scans read every line, and a call that
            // writes adds two dead ones (its usage lines) per three live ones.
            let lines = text.bytes().filter(|b| *b == b'\n').count();
            let live_then = text
                .lines()
                .next()
                .and_then(|l| {
                    l.strip_prefix(LIVE_HEADER)?
                        .strip_prefix('\t')?
                        .parse()
                        .ok()
                })
                .unwrap_or(0usize);
            if lines > 2 * live_then + 256 {
                let r = Records::replay(&text);
                text = r.compacted();
                self.write_file(&path, text.as_bytes()).map_err(fail)?;
                f = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(&path)
                    .map_err(fail)?;
                at = text.len() as u64;
                full = Some(r);
            }
            self.records = Some(RecordsLog {
                text,
                full,
                f,
                at,
                stale: false,
            });
        }
        Ok(self.records.as_mut().expect("loaded above"))
    }

    /// Bring records read before the lock was entered up to date: replay the lines
    /// appended since. `false` if the log is another file now (compacted) or shorter
    /// than what was read: then it is read whole.
    fn replay_appended(path: &Path, log: &mut RecordsLog) -> std::io::Result<bool> {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let now = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let ours = log.f.metadata()?;
        if now.ino() != ours.ino() || now.dev() != ours.dev() || ours.len() < log.at {
            return Ok(false);
        }
        let mut tail = vec![0u8; (ours.len() - log.at) as usize];
        log.f.read_exact_at(&mut tail, log.at)?;
        let text = String::from_utf8_lossy(&tail);
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        if let Some(r) = &mut log.full {
            for line in text[..whole].lines() {
                r.apply(line);
            }
        }
        log.text.push_str(&text[..whole]);
        if whole < tail.len() {
            // a writer killed mid-append; we hold the lock
            log.f.set_len(log.at + whole as u64)?;
        }
        log.at += whole as u64;
        log.stale = false;
        Ok(true)
    }

    /// Append one record line and apply it.
    fn record(&mut self, line: String) -> OpResult<()> {
        let text = format!("{line}\n");
        let log = self.records()?;
        log.f
            .write_all(text.as_bytes())
            .map_err(|e| OpError::failed(format!("runner records: {e}")))?;
        if let Some(r) = &mut log.full {
            r.apply(&line);
        }
        log.text.push_str(&text);
        log.at += text.len() as u64;
        Ok(())
    }

    /// All the records, for the questions about all of them (replayed once a call).
    fn full(&mut self) -> OpResult<&Records> {
        let log = self.records()?;
        let text = &log.text;
        Ok(log.full.get_or_insert_with(|| Records::replay(text)))
    }

    /// The attachment that created `key`, if an attachment's call did.
    pub fn owner(&mut self, key: &str) -> OpResult<Option<String>> {
        Ok(scan::owner(&self.records()?.text, key))
    }

    pub fn set_owner(&mut self, key: &str, owner: &str) -> OpResult<()> {
        check_key(key)?;
        self.record(format!("own\t{key}\t{owner}"))
    }

    /// The store's size, from the records if the last writing call left it there,
    /// else counted. Taking it marks it unknown until `set_usage`.
    pub fn take_usage(&mut self) -> OpResult<StoreUsage> {
        match scan::usage(&self.records()?.text) {
            Some(u) => {
                self.record("usage\t-".into())?;
                Ok(u)
            }
            None => self.usage(),
        }
    }

    pub fn set_usage(&mut self, u: StoreUsage) -> OpResult<()> {
        self.record(format!("usage\t{}\t{}", u.keys, u.bytes))
    }

    /// Write aside in `tmp/` and rename: readers see the old or the new bytes.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = self.tmp.join(format!("{}-{name}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            // Allocating the blocks up front spares ext4 the flush it otherwise forces
            // when a rename replaces a file (auto_da_alloc): 227 -> 138 us per put here.
            if !bytes.is_empty() {
                let _ = nix::fcntl::fallocate(
                    &f,
                    nix::fcntl::FallocateFlags::empty(),
                    0,
                    bytes.len() as i64,
                );
            }
            f.write_all(bytes)?;
            fs::rename(&tmp, path)
        };
        write().inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// How many keys and bytes the store holds (for the network's quota).
    pub fn usage(&self) -> OpResult<StoreUsage> {
        let mut u = StoreUsage::default();
        let rd =
            fs::read_dir(&self.kv).map_err(|e| OpError::failed(format!("store usage: {e}")))?;
        for e in rd.flatten() {
            u.keys += 1;
            u.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(u)
    }

    // ---- the runner's record of live attachments' addresses ------------------------

    pub fn address_holder(&mut self, ip: IpAddr) -> OpResult<Option<String>> {
        Ok(scan::holder(&self.records()?.text, ip))
    }

    pub fn held_addresses(&mut self) -> OpResult<Vec<IpAddr>> {
        Ok(self.full()?.held.keys().copied().collect())
    }

    pub fn hold_addresses(
        &mut self,
        attachment: &str,
        ips: &[IpAddr],
        guest: &str,
    ) -> OpResult<()> {
        let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
        self.release_addresses(attachment)?;
        self.record(format!("hold\t{attachment}\t{}\t{guest}", ips.join(",")))
    }

    pub fn attachment_guest(&mut self, attachment: &str) -> OpResult<Option<String>> {
        Ok(scan::guest(&self.records()?.text, attachment))
    }

    pub fn guests_in_use(&mut self) -> OpResult<Vec<String>> {
        let mut v: Vec<String> = self.full()?.guests.values().cloned().collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    pub fn release_addresses(&mut self, attachment: &str) -> OpResult<()> {
        if scan::holds(&self.records()?.text, attachment) {
            self.record(format!("release\t{attachment}"))?;
        }
        Ok(())
    }

    pub fn holders(&mut self) -> OpResult<Vec<String>> {
        let mut v: Vec<String> = self.full()?.holders.keys().cloned().collect();
        v.sort();
        Ok(v)
    }

    /// Clear the state a previous boot left (pods, links and bridges are gone after a
    /// reboot, and runtimes without CNI GC never send DEL for them). Called under the
    /// lock; returns how many keys were dropped when the boot changed.
    pub fn check_boot(&mut self) -> Result<Option<u64>> {
        // read once per process (the config and the guest memo need it too)
        let now = match crate::cni::config::boot_id() {
            Some(id) => id,
            None => return Ok(None), // no procfs: nothing to compare with
        };
        let file = self.dir.join("boot_id");
        let recorded = fs::read_to_string(&file).ok().map(|s| s.trim().to_string());
        if recorded.as_deref() == Some(now) {
            return Ok(None);
        }
        let mut dropped = None;
        // no record: state from before boot ids were kept, assumed to be this boot's
        if recorded.is_some() {
            let mut n = 0;
            if let Ok(rd) = fs::read_dir(&self.kv) {
                for e in rd.flatten() {
                    if fs::remove_file(e.path()).is_ok() {
                        n += 1;
                    }
                }
            }
            let _ = fs::remove_file(self.dir.join("records"));
            let _ = KeptGuests::new(&self.dir).prune(&[]);
            self.records = None;
            dropped = Some(n);
        }
        self.write_file(&file, now.as_bytes())
            .map_err(|e| Error::io(format!("boot record {}", file.display()), e))?;
        Ok(dropped)
    }

    pub fn delete(&mut self, key: &str) -> OpResult<bool> {
        check_key(key)?;
        if self.owner(key)?.is_some() {
            self.record(format!("disown\t{key}"))?;
        }
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
        let mut s = Store::open(d.path()).unwrap();
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
        let denied = crate::node::OpKind::Denied;
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
        assert!(
            entries
                .iter()
                .all(|e| ["kv", "records", "tmp"].contains(&e.as_str())),
            "nothing outside the store's own directories: {entries:?}"
        );
        let bad = crate::node::OpKind::InvalidArgument;
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

    #[test]
    fn entering_twice_waits_once_and_leaving_frees_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Store::open(d.path()).unwrap();
        let mut b = Store::open(d.path()).unwrap();
        assert!(a
            .enter(Duration::from_millis(10), &|| false)
            .unwrap()
            .is_some());
        assert!(a
            .enter(Duration::from_millis(10), &|| false)
            .unwrap()
            .is_none());
        assert!(a.is_held());
        let e = b.enter(Duration::from_millis(20), &|| false).err().unwrap();
        assert_eq!(e.code(), 11);
        // a stop request ends the wait before the timeout
        let t = Instant::now();
        assert!(b.enter(Duration::from_secs(5), &|| true).is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
        a.leave();
        a.leave();
        assert!(!a.is_held());
        assert!(b
            .enter(Duration::from_millis(20), &|| false)
            .unwrap()
            .is_some());
    }

    #[test]
    fn records_read_inside_are_read_again_after_the_lock_was_left() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Store::open(d.path()).unwrap();
        let mut b = Store::open(d.path()).unwrap();
        a.enter(Duration::from_millis(10), &|| false).unwrap();
        assert_eq!(a.holders().unwrap(), Vec::<String>::new());
        a.leave();
        b.enter(Duration::from_millis(10), &|| false).unwrap();
        b.hold_addresses("c1/eth0", &["10.0.0.2".parse().unwrap()], "g")
            .unwrap();
        b.leave();
        a.enter(Duration::from_millis(10), &|| false).unwrap();
        assert_eq!(a.holders().unwrap(), vec!["c1/eth0".to_string()]);
        a.leave();
        // another call compacts the log (a new file renamed into place): read whole
        b.enter(Duration::from_millis(10), &|| false).unwrap();
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        for i in 0..300 {
            b.hold_addresses(&format!("x{i}"), &[ip], "g").unwrap();
            b.release_addresses(&format!("x{i}")).unwrap();
        }
        b.hold_addresses("c2/eth0", &[ip], "g").unwrap();
        b.leave();
        let mut c = Store::open(d.path()).unwrap();
        c.enter(Duration::from_millis(10), &|| false).unwrap();
        assert_eq!(c.holders().unwrap().len(), 2); // c's first read compacts
        c.leave();
        a.enter(Duration::from_millis(10), &|| false).unwrap();
        assert_eq!(a.holders().unwrap(), vec!["c1/eth0", "c2/eth0"]);
        assert_eq!(a.address_holder(ip).unwrap().as_deref(), Some("c2/eth0"));
        a.leave();
        // a writer killed mid-append while we were outside: its torn line is cut off
        let log = d.path().join("records");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"release\tc2/eth0\nhold\tc9/eth0\t10.0.")
            .unwrap();
        a.enter(Duration::from_millis(10), &|| false).unwrap();
        assert_eq!(a.holders().unwrap(), vec!["c1/eth0"]);
        assert!(std::fs::read_to_string(&log)
            .unwrap()
            .ends_with("release\tc2/eth0\n"));
        a.hold_addresses("c3/eth0", &[ip], "g").unwrap();
        a.leave();
        b.enter(Duration::from_millis(10), &|| false).unwrap();
        assert_eq!(b.holders().unwrap(), vec!["c1/eth0", "c3/eth0"]);
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn guest_copies_are_kept_while_an_attachment_needs_them() {
        let d = tempfile::tempdir().unwrap();
        let s = KeptGuests::new(d.path());
        let (a, b) = ("sha256:aaaa", "sha256:bbbb");
        assert_eq!(s.prune(&[]).unwrap(), 0, "no directory yet");
        s.keep(a, || Ok(b"guest a".to_vec())).unwrap();
        s.keep(b, || Ok(b"guest b".to_vec())).unwrap();
        s.keep(a, || Ok(b"not rewritten".to_vec())).unwrap();
        assert_eq!(std::fs::read(s.path(a)).unwrap(), b"guest a");
        assert_eq!(s.prune(&[b.to_string()]).unwrap(), 1);
        assert!(!s.path(a).exists());
        assert!(s.path(b).exists());
        assert_eq!(s.prune(&[]).unwrap(), 1);
        assert_eq!(s.prune(&[]).unwrap(), 0);
    }

    #[test]
    fn records_survive_reopening_a_torn_tail_and_compaction() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        let ip: IpAddr = "200.200.1.2".parse().unwrap();
        s.hold_addresses("c1 eth0", &[ip], "sha256:aa").unwrap();
        s.put("ip/200.200.1.2", "c1 eth0").unwrap();
        s.set_owner("ip/200.200.1.2", "c1 eth0").unwrap();
        s.set_usage(StoreUsage { keys: 1, bytes: 7 }).unwrap();
        // a writer killed mid-append
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.path().join("records"))
            .unwrap();
        f.write_all(b"hold\tc9 eth0\t200.2").unwrap();
        let mut s = Store::open(d.path()).unwrap();
        assert_eq!(s.address_holder(ip).unwrap().as_deref(), Some("c1 eth0"));
        assert_eq!(s.holders().unwrap(), vec!["c1 eth0"]);
        assert_eq!(
            s.attachment_guest("c1 eth0").unwrap().as_deref(),
            Some("sha256:aa")
        );
        // a record of an older runner has no guest
        f.write_all(b"\nhold\told eth0\t200.200.1.9\n").unwrap();
        let mut s = Store::open(d.path()).unwrap();
        assert_eq!(s.attachment_guest("old eth0").unwrap(), None);
        s.release_addresses("old eth0").unwrap();
        assert_eq!(
            s.owner("ip/200.200.1.2").unwrap().as_deref(),
            Some("c1 eth0")
        );
        assert_eq!(s.take_usage().unwrap(), StoreUsage { keys: 1, bytes: 7 });
        // taken: unknown until set again, so a killed call leaves it unknown
        let mut s = Store::open(d.path()).unwrap();
        assert!(scan::usage(&s.records().unwrap().text).is_none());
        // many generations: the log is compacted when read
        let other: IpAddr = "200.200.1.3".parse().unwrap();
        for i in 0..600 {
            s.hold_addresses(&format!("x{i} eth0"), &[other], "sha256:bb")
                .unwrap();
            s.release_addresses(&format!("x{i} eth0")).unwrap();
        }
        assert!(s.delete("ip/200.200.1.2").unwrap());
        let mut s = Store::open(d.path()).unwrap();
        assert_eq!(s.holders().unwrap(), vec!["c1 eth0"]);
        assert_eq!(s.guests_in_use().unwrap(), vec!["sha256:aa"]);
        assert_eq!(s.owner("ip/200.200.1.2").unwrap(), None);
        let text = std::fs::read_to_string(d.path().join("records")).unwrap();
        assert!(text.lines().count() < 10, "compacted: {text}");
    }

    /// Every call scans the log, so it is kept near what it holds: pods only added
    /// (each call: its usage taken and set, two owned keys, a hold) never leave more
    /// than twice as many lines as live records (+256, + one call's lines).
    #[test]
    fn the_records_log_stays_near_its_live_records_as_pods_are_added() {
        let d = tempfile::tempdir().unwrap();
        let mut compactions = 0;
        let mut last = 0;
        for i in 0..400u64 {
            let mut s = Store::open(d.path()).unwrap();
            let att = format!("c{i} eth0");
            let ip = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
            s.take_usage().unwrap();
            s.set_owner(&format!("ip/{ip}"), &att).unwrap();
            s.set_owner(&format!("attach/c{i}/eth0"), &att).unwrap();
            s.set_usage(StoreUsage {
                keys: 2 * i + 2,
                bytes: 9 * i,
            })
            .unwrap();
            s.hold_addresses(&att, &[ip], "sha256:aa").unwrap();
            let lines = std::fs::read_to_string(d.path().join("records"))
                .unwrap()
                .lines()
                .count() as u64;
            let live = 3 * (i + 1) + 1;
            assert!(
                lines <= 2 * live + 256 + 5,
                "{lines} lines for {live} live records"
            );
            if lines < last {
                compactions += 1;
            }
            last = lines;
        }
        assert!(compactions >= 1, "never compacted");
        let mut s = Store::open(d.path()).unwrap();
        assert_eq!(s.holders().unwrap().len(), 400);
        assert_eq!(
            s.take_usage().unwrap(),
            StoreUsage {
                keys: 800,
                bytes: 9 * 399
            }
        );
        assert_eq!(
            s.owner("attach/c7/eth0").unwrap().as_deref(),
            Some("c7 eth0")
        );
    }

    /// The scans answer what replaying the whole log answers, on logs of every kind of
    /// line in any order (malformed ones and older runners' too).
    #[test]
    fn scans_answer_what_a_replay_answers() {
        // "a eth0" also inside another attachment's name
        let atts = ["a eth0", "b eth0", "c net1", "xa eth0"];
        // spellings no runner writes too: another form of fd00::1, one with a zero
        let ips = [
            "10.0.0.1",
            "10.0.0.10",
            "fd00::1",
            "fd00:0::1",
            "10.0.0.01",
            "x",
        ];
        let keys = ["ip/10.0.0.1", "ip/10.0.0.10", "last", "attach/a/eth0"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..300 {
            let mut text = String::new();
            for _ in 0..next(40) {
                let att = atts[next(atts.len())];
                let line = match next(11) {
                    0 | 1 => format!("own\t{}\t{att}", keys[next(keys.len())]),
                    2 => format!("disown\t{}", keys[next(keys.len())]),
                    3 | 4 => {
                        let held: Vec<&str> = (0..next(3)).map(|_| ips[next(ips.len())]).collect();
                        match next(3) {
                            0 => format!("hold\t{att}\t{}", held.join(",")),
                            1 => format!("hold\t{att}\t{}\t", held.join(",")),
                            _ => format!("hold\t{att}\t{}\tsha256:{}", held.join(","), next(3)),
                        }
                    }
                    5 | 6 => format!("release\t{att}"),
                    7 => format!("usage\t{}\t{}", next(9), next(99)),
                    8 => "usage\t-".into(),
                    9 => "usage\tx\t1".into(),
                    _ => ["own\tk", "release\ta eth0\tx", "#live\t3", "usage\t1"][next(4)].into(),
                };
                text.push_str(&line);
                text.push('\n');
            }
            let r = Records::replay(&text);
            for k in keys {
                assert_eq!(
                    scan::owner(&text, k),
                    r.owners.get(k).cloned(),
                    "{k}\n{text}"
                );
            }
            for a in atts {
                assert_eq!(
                    scan::holds(&text, a),
                    r.holders.contains_key(a),
                    "{a}\n{text}"
                );
                assert_eq!(
                    scan::guest(&text, a),
                    r.guests.get(a).cloned(),
                    "{a}\n{text}"
                );
            }
            for ip in ["10.0.0.1", "10.0.0.10", "fd00::1"] {
                let ip: IpAddr = ip.parse().unwrap();
                assert_eq!(
                    scan::holder(&text, ip),
                    r.held.get(&ip).cloned(),
                    "{ip}\n{text}"
                );
            }
            assert_eq!(scan::usage(&text), r.usage, "{text}");
        }
    }

    #[test]
    fn hold_records_of_both_families_and_of_older_runners() {
        let d = tempfile::tempdir().unwrap();
        // an older runner's record: IPv4 only, no guest
        std::fs::write(d.path().join("records"), "hold\told eth0\t200.200.1.9\n").unwrap();
        let mut s = Store::open(d.path()).unwrap();
        let v4: IpAddr = "200.200.1.9".parse().unwrap();
        assert_eq!(s.address_holder(v4).unwrap().as_deref(), Some("old eth0"));
        let ips: Vec<IpAddr> = vec![
            "200.200.1.2".parse().unwrap(),
            "fd00:200:1::2".parse().unwrap(),
        ];
        s.hold_addresses("c1 eth0", &ips, "sha256:aa").unwrap();
        let mut s = Store::open(d.path()).unwrap();
        // any spelling of the address finds its holder: records are typed
        let long: IpAddr = "fd00:0200:0001:0000::0002".parse().unwrap();
        assert_eq!(s.address_holder(long).unwrap().as_deref(), Some("c1 eth0"));
        let mut held = s.held_addresses().unwrap();
        held.sort();
        assert_eq!(held.len(), 3, "{held:?}");
        s.release_addresses("c1 eth0").unwrap();
        let mut s = Store::open(d.path()).unwrap();
        assert_eq!(s.address_holder(long).unwrap(), None);
        assert_eq!(s.holders().unwrap(), vec!["old eth0"]);
    }
}
