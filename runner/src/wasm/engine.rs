//! The wasmtime engine and the cache of precompiled guests.
//!
//! Compiling a component costs hundreds of milliseconds; loading a precompiled one well
//! under one. Entries live in `cacheDir/<sha256 of the guest>-<engine compatibility>.cwasm`
//! with a sidecar `.sum` holding the xxh3-128 of the entry. The key is the guest's
//! sha256, the same digest a config pins (`guestDigest`): a guest whose bytes were made
//! to collide with another's under a fast hash still never loads the other's code. A hit is checked against the
//! sum over an mmap of the entry, then loaded with `deserialize_file`, which maps the code
//! from the page cache instead of copying it. An entry whose sum is missing or wrong, or
//! that wasmtime refuses (another wasmtime, other settings), is rebuilt, never trusted.
//! Both files are written to temporary names and renamed into place (entry first, so a
//! sum always describes a complete entry); entries are never rewritten in place, because
//! a running runner may have one mapped.
//!
//! A CNI call runs on a runtime-only engine ([`engine`]: no compiler is set up, so none of
//! cranelift's settings and CPU probing are paid per call); the compiler ([`compiler`])
//! is built only on a cache miss, by `guest check` and by tests. The key's compatibility
//! part is the runtime engine's (wasmtime version, tunables, features); the CPU features
//! an entry was compiled for are checked by wasmtime at load, so an entry made on another
//! CPU is refused and rebuilt, never trusted.
//!
//! A warm call does not hash the guest (sha256, ~0.2 ms for 350 KB) or its entry (xxh3
//! over the mapped entry) again: `<cacheDir>/<xxh3 of the guest's path>.memo` records,
//! for this boot, the guest file's identity (device, inode, size, mtime, ctime), its
//! digest, and the identity of the entry that was verified for it. Any change of the
//! guest file (in place or replaced) or of the entry, or a reboot, makes the memo miss
//! and the call hashes and verifies as before. A memo is written only for a guest last
//! changed over 2 s before: a rewrite in place (`cp` over it) within the same timestamp
//! tick as our read could otherwise leave its identity unchanged (git's "racy clean").
//! Entries need no such wait: the runner only ever renames a new file into place, which
//! changes the inode.

use crate::error::{Error, Result};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};
use xxhash_rust::xxh3::xxh3_128;

/// How the component was obtained (for the call log and the benchmark).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    /// Compiled and stored.
    Miss,
    /// Compiled; a bad entry was replaced.
    Rebuilt,
    /// Compiled; the cache directory could not be written.
    Uncached,
}

fn config() -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    // No .eh_frame for the guest's code: it serves only native unwinders and
    // profilers (wasmtime's own traps and backtraces do not use it), and registering
    // it with libgcc, then removing it, is paid at every load.
    c.native_unwind_info(false);
    c
}

/// The engine a call runs guests on: it loads precompiled guests and cannot compile.
pub fn engine() -> Result<Engine> {
    let mut c = config();
    c.enable_compiler(false);
    Engine::new(&c).map_err(|e| Error::Internal(format!("wasmtime engine: {e}")))
}

/// The same configuration with cranelift: what compiles a guest ([`compile`]).
pub fn compiler() -> Result<Engine> {
    Engine::new(&config()).map_err(|e| Error::Internal(format!("wasmtime compiler: {e}")))
}

/// Callers pass the runtime engine ([`engine`]): a compiler's hash also covers its
/// settings, and the entry's name must not depend on which engine asks.
fn compat_tag(engine: &Engine) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    h.finish()
}

/// A guest's identity: `sha256:<64 hex digits>` of its bytes, as OCI registries, the
/// `guestDigest` pin and the runner's records name it.
pub fn digest(wasm: &[u8]) -> String {
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(wasm);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in sum.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The cache file for a guest with this digest.
pub fn cache_path(engine: &Engine, cache_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    cache_dir.join(format!("{hex}-{:016x}.cwasm", compat_tag(engine)))
}

/// A guest ready to instantiate.
pub(crate) struct Loaded {
    pub component: Component,
    pub cache: CacheOutcome,
    /// `sha256:...` of the bytes it was made from.
    pub digest: String,
    /// The guest file.
    pub path: PathBuf,
}

impl Loaded {
    /// The guest's bytes, read again and checked against `digest` (the file may have
    /// been replaced since the load).
    pub fn bytes(&self) -> std::io::Result<Vec<u8>> {
        let wasm = std::fs::read(&self.path)?;
        if digest(&wasm) != self.digest {
            return Err(std::io::Error::other(format!(
                "{} changed since it was loaded (no longer {})",
                self.path.display(),
                self.digest
            )));
        }
        Ok(wasm)
    }
}

fn guest_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Guest {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Compile a component from its bytes (also the validation step of `validate`).
pub fn compile(engine: &Engine, path: &Path, wasm: &[u8]) -> Result<Component> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(guest_error(path, "not a WebAssembly file"));
    }
    Component::new(engine, wasm)
        .map_err(|e| guest_error(path, format!("not a valid WebAssembly component: {e:#}")))
}

fn sum_path(entry: &Path) -> PathBuf {
    entry.with_extension("sum")
}

/// Whether the entry's bytes match its sum; `Some` of the entry's identity if so.
fn verify(entry: &Path) -> Option<FileId> {
    let want = std::fs::read_to_string(sum_path(entry)).ok()?;
    let file = std::fs::File::open(entry).ok()?;
    let id = FileId::of(&file.metadata().ok()?);
    // SAFETY: cache entries are never modified in place (written aside and renamed), so
    // the mapping cannot change under us.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    (want.trim() == format!("{:032x}", xxh3_128(&map))).then_some(id)
}

fn deserialize(engine: &Engine, entry: &Path) -> Option<Component> {
    // SAFETY: the entry was produced by `Component::serialize` of this runner (its sum
    // verified now or, by the memo, earlier in this boot; compatibility in the file name
    // and checked again by wasmtime).
    unsafe { Component::deserialize_file(engine, entry) }.ok()
}

/// What identifies a file's content without reading it, within one boot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns
        )
    }

    fn parse(words: &[&str]) -> Option<FileId> {
        match words {
            [dev, ino, size, mtime, ctime] => Some(FileId {
                dev: dev.parse().ok()?,
                ino: ino.parse().ok()?,
                size: size.parse().ok()?,
                mtime_ns: mtime.parse().ok()?,
                ctime_ns: ctime.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// The memo of one guest path (see the module doc).
struct Memo {
    boot: String,
    guest: FileId,
    digest: String,
    entry: FileId,
}

fn memo_path(cache_dir: &Path, guest: &Path) -> PathBuf {
    let key = xxh3_128(guest.as_os_str().as_encoded_bytes());
    cache_dir.join(format!("{key:032x}.memo"))
}

impl Memo {
    const VERSION: &'static str = "wasm-cni-memo-1";

    fn read(path: &Path) -> Option<Memo> {
        let text = std::fs::read_to_string(path).ok()?;
        let w: Vec<&str> = text.split_whitespace().collect();
        match w.as_slice() {
            [v, boot, g @ .., digest, e1, e2, e3, e4, e5]
                if *v == Self::VERSION && g.len() == 5 =>
            {
                Some(Memo {
                    boot: boot.to_string(),
                    guest: FileId::parse(g)?,
                    digest: digest.to_string(),
                    entry: FileId::parse(&[e1, e2, e3, e4, e5])?,
                })
            }
            _ => None,
        }
    }

    fn write(&self, path: &Path) {
        let text = format!(
            "{} {} {} {} {}\n",
            Self::VERSION,
            self.boot,
            self.guest.text(),
            self.digest,
            self.entry.text()
        );
        // only a saving: a memo that cannot be written costs the next call the hashes
        let _ = write_aside(path, text.as_bytes());
    }
}

/// A guest file modified within the same timestamp tick as our read could keep its
/// identity: only a guest older than this is memoized.
const MEMO_SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

fn settled(id: &FileId) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    now - id.ctime_ns.max(id.mtime_ns) > MEMO_SETTLED.as_nanos() as i128
}

fn write_aside(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
    let r = std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn store(entry: &Path, serialized: &[u8]) -> std::io::Result<()> {
    write_aside(entry, serialized)?;
    write_aside(
        &sum_path(entry),
        format!("{:032x}\n", xxh3_128(serialized)).as_bytes(),
    )
}

/// Load the guest at `path`, from the cache when possible. With `pin` (the config's
/// `guestDigest`), bytes with another digest are refused before anything else. `engine`
/// is the runtime engine; on a miss the guest is compiled by [`compiler`] and the entry
/// loaded onto `engine`.
pub(crate) fn load(
    engine: &Engine,
    path: &Path,
    cache_dir: &Path,
    pin: Option<&str>,
) -> Result<Loaded> {
    let not_readable = |e: std::io::Error| {
        guest_error(
            path,
            if e.kind() == std::io::ErrorKind::NotFound {
                "not found (set \"guest\" in the network config, or install the default guest)"
                    .to_string()
            } else {
                format!("cannot read: {e}")
            },
        )
    };
    let refuse_pin = |digest: &str, pin: &str| {
        guest_error(
            path,
            format!(
                "its content is {digest}, but the network config pins guestDigest {pin}: \
                 refusing to run a guest it was not told to run"
            ),
        )
    };
    let guest_id = FileId::of(&std::fs::metadata(path).map_err(not_readable)?);
    let memo_file = memo_path(cache_dir, path);
    let boot = crate::cni::config::boot_id();

    // the memo's digest and verified entry, if the guest and the entry are the same files
    if let Some(m) = Memo::read(&memo_file) {
        if boot == Some(m.boot.as_str()) && m.guest == guest_id {
            if let Some(pin) = pin.filter(|p| *p != m.digest) {
                return Err(refuse_pin(&m.digest, pin));
            }
            let entry = cache_path(engine, cache_dir, &m.digest);
            let same_entry = std::fs::metadata(&entry).is_ok_and(|e| FileId::of(&e) == m.entry);
            if same_entry {
                if let Some(component) = deserialize(engine, &entry) {
                    return Ok(Loaded {
                        component,
                        cache: CacheOutcome::Hit,
                        digest: m.digest,
                        path: path.to_path_buf(),
                    });
                }
            }
        }
    }

    let wasm = std::fs::read(path).map_err(not_readable)?;
    let digest = digest(&wasm);
    if let Some(pin) = pin.filter(|p| *p != digest) {
        return Err(refuse_pin(&digest, pin));
    }
    // the identity that goes into a memo must be that of the bytes just hashed
    let guest_id_read = std::fs::metadata(path).ok().map(|m| FileId::of(&m));
    let memo = |entry: FileId| {
        if let (Some(boot), Some(id)) = (&boot, guest_id_read) {
            if id == guest_id && settled(&id) {
                Memo {
                    boot: boot.to_string(),
                    guest: id,
                    digest: digest.clone(),
                    entry,
                }
                .write(&memo_file);
            }
        }
    };
    let entry = cache_path(engine, cache_dir, &digest);
    let existed = entry.exists();
    if existed {
        if let Some(id) = verify(&entry) {
            if let Some(component) = deserialize(engine, &entry) {
                memo(id);
                return Ok(Loaded {
                    component,
                    cache: CacheOutcome::Hit,
                    digest,
                    path: path.to_path_buf(),
                });
            }
        }
    }
    let compiled = compile(&compiler()?, path, &wasm)?;
    let serialized = compiled
        .serialize()
        .map_err(|e| Error::Internal(format!("serializing {}: {e}", path.display())))?;
    let (component, cache) = match store(&entry, &serialized) {
        Ok(()) => {
            if let Ok(m) = std::fs::metadata(&entry) {
                memo(FileId::of(&m));
            }
            (
                deserialize(engine, &entry),
                if existed {
                    CacheOutcome::Rebuilt
                } else {
                    CacheOutcome::Miss
                },
            )
        }
        Err(_) => (None, CacheOutcome::Uncached),
    };
    let component = match component {
        Some(c) => c,
        // not stored (or not mappable): load the bytes just made onto the runtime engine
        // SAFETY: made by `serialize` above, in this process, with the same configuration
        None => unsafe { Component::deserialize(engine, &serialized) }.map_err(|e| {
            Error::Internal(format!("loading the compiled {}: {e}", path.display()))
        })?,
    };
    Ok(Loaded {
        component,
        cache,
        digest,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_wasm_and_non_component() {
        let e = compiler().unwrap();
        let p = Path::new("/x.wasm");
        assert_eq!(
            compile(&e, p, b"hello world, not wasm")
                .err()
                .unwrap()
                .code(),
            7
        );
        // A core module (empty) is not a component.
        let core = b"\0asm\x01\0\0\0";
        let err = compile(&e, p, core).err().unwrap();
        assert!(err.to_string().contains("component"), "{err}");
    }

    #[test]
    fn a_pinned_digest_refuses_other_bytes_before_compiling() {
        assert_eq!(
            digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("g.wasm");
        std::fs::write(&guest, b"abc").unwrap();
        let e = engine().unwrap();
        let pin = digest(b"abd");
        let err = load(&e, &guest, dir.path(), Some(&pin)).err().unwrap();
        assert_eq!(err.code(), 7);
        let msg = err.to_string();
        assert!(msg.contains(&pin) && msg.contains(&digest(b"abc")), "{msg}");
        // the cache entry is named by that digest, nothing weaker
        let entry = cache_path(&e, dir.path(), &digest(b"abc"));
        let name = entry.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad-"),
            "{name}"
        );
        // the right pin gets past the check (to compile, which refuses "abc")
        let err = load(&e, &guest, dir.path(), Some(&digest(b"abc")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a WebAssembly file"), "{err}");
    }

    #[test]
    fn a_memo_skips_the_hashes_until_the_guest_or_its_entry_changes() {
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("g.wasm");
        let cache = dir.path().join("cache");
        let one = wat::parse_str("(component)").unwrap();
        let two = wat::parse_str("(component (core module))").unwrap();
        std::fs::write(&guest, &one).unwrap();
        let e = engine().unwrap();
        // too fresh to memoize: a rewrite in the same timestamp tick would go unseen
        assert_eq!(
            load(&e, &guest, &cache, None).unwrap().cache,
            CacheOutcome::Miss
        );
        assert!(!memo_path(&cache, &guest).exists());
        std::thread::sleep(MEMO_SETTLED + std::time::Duration::from_millis(100));
        let first = load(&e, &guest, &cache, None).unwrap();
        assert_eq!(first.cache, CacheOutcome::Hit);
        assert!(memo_path(&cache, &guest).exists());
        assert_eq!(first.digest, digest(&one));
        // with the memo, the entry's sum is not read again (a wrong one goes unnoticed)...
        let entry = cache_path(&e, &cache, &first.digest);
        std::fs::write(sum_path(&entry), "0\n").unwrap();
        assert_eq!(
            load(&e, &guest, &cache, None).unwrap().cache,
            CacheOutcome::Hit
        );
        // ...until the entry is another file: then it is verified, and rebuilt
        let bytes = std::fs::read(&entry).unwrap();
        write_aside(&entry, &bytes).unwrap();
        assert_eq!(
            load(&e, &guest, &cache, None).unwrap().cache,
            CacheOutcome::Rebuilt
        );
        // the guest rewritten in place (same inode): hashed again, the new digest
        std::fs::write(&guest, &two).unwrap();
        let second = load(&e, &guest, &cache, None).unwrap();
        assert_eq!(second.digest, digest(&two));
        assert_eq!(second.cache, CacheOutcome::Miss);
        // a pin is checked against the memo's digest too
        std::thread::sleep(MEMO_SETTLED + std::time::Duration::from_millis(100));
        assert_eq!(
            load(&e, &guest, &cache, None).unwrap().cache,
            CacheOutcome::Hit
        );
        let err = load(&e, &guest, &cache, Some(&digest(&one))).err().unwrap();
        assert_eq!(err.code(), 7);
        assert_eq!(second.bytes().unwrap(), two);
    }

    /// A small component with code in it (so its entry carries the compiler's flags).
    const TINY: &str = r#"(component
        (core module $m (func (export "f") (param i32) (result i32) local.get 0))
        (core instance (instantiate $m)))"#;

    /// The bytes of the `.wasmtime.engine` section of an ELF entry: where wasmtime keeps
    /// what it compiled for (its version, the target, the compiler's flags).
    fn engine_section(elf: &[u8]) -> std::ops::Range<usize> {
        let n = |o: usize, w: usize| {
            let mut b = [0u8; 8];
            b[..w].copy_from_slice(&elf[o..o + w]);
            u64::from_le_bytes(b) as usize
        };
        let (shoff, shentsize, shnum, shstrndx) = (n(0x28, 8), n(0x3a, 2), n(0x3c, 2), n(0x3e, 2));
        let sh = |i: usize| shoff + i * shentsize;
        let strtab = n(sh(shstrndx) + 0x18, 8);
        for i in 0..shnum {
            let name = &elf[strtab + n(sh(i), 4)..];
            if name.starts_with(b".wasmtime.engine\0") {
                let off = n(sh(i) + 0x18, 8);
                return off..off + n(sh(i) + 0x20, 8);
            }
        }
        panic!("no .wasmtime.engine section in the entry");
    }

    /// postcard: a LEB128 varint at `*at`
    fn varint(d: &[u8], at: &mut usize) -> usize {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let b = d[*at];
            *at += 1;
            v |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    /// postcard: a string at `*at`, as (start, len) of its bytes
    fn string(d: &[u8], at: &mut usize) -> (usize, usize) {
        let len = varint(d, at);
        let start = *at;
        *at += len;
        (start, len)
    }

    /// The engine section's layout (wasmtime 48, engine/serialization.rs): a format
    /// byte, the wasmtime version (length byte + text), then postcard `Metadata`: the
    /// target triple, the shared flags, the ISA flags, ... Returns the target's
    /// (start, len) and each ISA flag as (name, offset of its bool byte) for the
    /// `Bool` ones.
    fn parse_engine(d: &[u8]) -> ((usize, usize), Vec<(String, usize)>) {
        let mut at = 2 + usize::from(d[1]);
        let target = string(d, &mut at);
        let mut isa = Vec::new();
        for list in 0..2 {
            for _ in 0..varint(d, &mut at) {
                let (s, l) = string(d, &mut at);
                let name = String::from_utf8(d[s..s + l].to_vec()).unwrap();
                match varint(d, &mut at) {
                    0 => drop(string(d, &mut at)), // Enum(&str)
                    1 => at += 1,                  // Num(u8)
                    2 => {
                        if list == 1 {
                            isa.push((name, at));
                        }
                        at += 1
                    }
                    v => panic!("unknown FlagValue variant {v}"),
                }
            }
        }
        (target, isa)
    }

    /// An ISA flag the entry has off and this host's CPU lacks: turned on, it makes
    /// an entry compiled for a CPU with more features (of the same architecture).
    #[cfg(target_arch = "x86_64")]
    fn missing_cpu_feature(isa: &[(String, usize)], d: &[u8]) -> Option<usize> {
        isa.iter().find_map(|(name, at)| {
            let has = match name.as_str() {
                "has_avx512bitalg" => std::arch::is_x86_feature_detected!("avx512bitalg"),
                "has_avx512vnni" => std::arch::is_x86_feature_detected!("avx512vnni"),
                "has_avx512vbmi" => std::arch::is_x86_feature_detected!("avx512vbmi"),
                "has_avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
                "has_avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
                "has_avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
                "has_avx2" => std::arch::is_x86_feature_detected!("avx2"),
                "has_fma" => std::arch::is_x86_feature_detected!("fma"),
                "has_bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
                "has_lzcnt" => std::arch::is_x86_feature_detected!("lzcnt"),
                _ => return None,
            };
            (d[*at] == 0 && !has).then_some(*at)
        })
    }

    /// What turns a valid entry's engine section into a stale one.
    type Patch = Box<dyn Fn(&mut [u8])>;

    /// An entry under the right name with a valid sum, but written by another wasmtime
    /// or for another CPU: only wasmtime's own check can tell. It must be rebuilt (and
    /// replaced on disk), never loaded; the replacement is then a plain hit.
    #[test]
    fn an_entry_of_another_engine_or_cpu_is_rebuilt_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("g.wasm");
        std::fs::write(&guest, wat::parse_str(TINY).unwrap()).unwrap();
        let e = engine().unwrap();
        assert_eq!(
            load(&e, &guest, dir.path(), None).unwrap().cache,
            CacheOutcome::Miss
        );
        let entry = cache_path(&e, dir.path(), &digest(&std::fs::read(&guest).unwrap()));
        let good = std::fs::read(&entry).unwrap();
        let sec = engine_section(&good);
        let (target, isa) = parse_engine(&good[sec.clone()]);
        let triple = String::from_utf8(good[sec.start + target.0..][..target.1].to_vec()).unwrap();

        let mut stale: Vec<(&str, Patch)> = vec![
            // "48.0.8" -> "98.0.8": another wasmtime's entry
            (
                "another wasmtime version",
                Box::new(|d: &mut [u8]| d[2] = if d[2] == b'9' { b'8' } else { b'9' }),
            ),
            // the architecture renamed in place (same length): compiled for another CPU
            ("another CPU architecture", {
                let other: &[u8] = match triple.split('-').next() {
                    Some("x86_64") => b"mips64",
                    Some("aarch64") => b"powerpc",
                    a => panic!("no same-length other architecture known for {a:?} ({triple})"),
                };
                let at = target.0;
                Box::new(move |d: &mut [u8]| d[at..at + other.len()].copy_from_slice(other))
            }),
        ];
        // A CPU feature the entry needs and this host has not: the first ISA flag that
        // is on, renamed (same length) to a feature no host of this wasmtime has.
        let (name, at) = isa
            .iter()
            .find(|(_, at)| good[sec.start + at] == 1)
            .expect("an ISA flag on");
        let name_at = at - 1 - name.len(); // the name's bytes, then the variant byte
        let unknown = format!("{:x<1$}", "no_such", name.len());
        assert_eq!(&good[sec.start + name_at..][..name.len()], name.as_bytes());
        stale.push((
            "a CPU feature no host has",
            Box::new(move |d: &mut [u8]| {
                d[name_at..name_at + unknown.len()].copy_from_slice(unknown.as_bytes())
            }),
        ));
        // and, when this CPU lacks a feature the compiler knows, the entry of a CPU with it
        #[cfg(target_arch = "x86_64")]
        if let Some(at) = missing_cpu_feature(&isa, &good[sec.clone()]) {
            stale.push((
                "a CPU feature this host lacks",
                Box::new(move |d: &mut [u8]| d[at] = 1),
            ));
        }

        for (what, patch) in &stale {
            let mut bad = good.clone();
            patch(&mut bad[sec.clone()]);
            // the sum written the way `store` writes it: only wasmtime can refuse this
            store(&entry, &bad).unwrap();
            // SAFETY: a test entry, not modified while mapped
            let err = unsafe { Component::deserialize_file(&e, &entry) }
                .err()
                .unwrap_or_else(|| panic!("{what}: wasmtime accepted it"));
            eprintln!("{what}: wasmtime refuses it: {err:#}");
            let l = load(&e, &guest, dir.path(), None).unwrap();
            assert_eq!(l.cache, CacheOutcome::Rebuilt, "{what}");
            assert_ne!(
                std::fs::read(&entry).unwrap(),
                bad,
                "{what}: the entry was not replaced"
            );
            assert_eq!(
                load(&e, &guest, dir.path(), None).unwrap().cache,
                CacheOutcome::Hit,
                "{what}"
            );
        }
    }
}
