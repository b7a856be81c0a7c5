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

/// The one engine configuration; compile and load must agree on it.
pub fn engine() -> Result<Engine> {
    let mut c = Config::new();
    c.epoch_interruption(true);
    Engine::new(&c).map_err(|e| Error::Internal(format!("wasmtime engine: {e}")))
}

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
    /// Those bytes.
    pub wasm: Vec<u8>,
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

fn try_load(engine: &Engine, entry: &Path) -> Option<Component> {
    let want = std::fs::read_to_string(sum_path(entry)).ok()?;
    let file = std::fs::File::open(entry).ok()?;
    // SAFETY: cache entries are never modified in place (written aside and renamed), so
    // the mapping cannot change under us.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    if want.trim() != format!("{:032x}", xxh3_128(&map)) {
        return None;
    }
    drop(map);
    // SAFETY: the entry was produced by `Component::serialize` of this runner (sum above;
    // compatibility in the file name and checked again by wasmtime).
    unsafe { Component::deserialize_file(engine, entry) }.ok()
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
/// `guestDigest`), bytes with another digest are refused before anything else.
pub(crate) fn load(
    engine: &Engine,
    path: &Path,
    cache_dir: &Path,
    pin: Option<&str>,
) -> Result<Loaded> {
    let wasm = std::fs::read(path).map_err(|e| {
        guest_error(
            path,
            if e.kind() == std::io::ErrorKind::NotFound {
                "not found (set \"guest\" in the network config, or install the default guest)"
                    .to_string()
            } else {
                format!("cannot read: {e}")
            },
        )
    })?;
    let digest = digest(&wasm);
    if let Some(pin) = pin.filter(|p| *p != digest) {
        return Err(guest_error(
            path,
            format!(
                "its content is {digest}, but the network config pins guestDigest {pin}: \
                 refusing to run a guest it was not told to run"
            ),
        ));
    }
    let entry = cache_path(engine, cache_dir, &digest);
    let existed = entry.exists();
    if existed {
        if let Some(component) = try_load(engine, &entry) {
            return Ok(Loaded {
                component,
                cache: CacheOutcome::Hit,
                digest,
                wasm,
            });
        }
    }
    let component = compile(engine, path, &wasm)?;
    let cache = match component
        .serialize()
        .map_err(|e| e.to_string())
        .and_then(|s| store(&entry, &s).map_err(|e| e.to_string()))
    {
        Ok(()) if existed => CacheOutcome::Rebuilt,
        Ok(()) => CacheOutcome::Miss,
        Err(_) => CacheOutcome::Uncached,
    };
    Ok(Loaded {
        component,
        cache,
        digest,
        wasm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_wasm_and_non_component() {
        let e = engine().unwrap();
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
}
