//! The wasmtime engine and the cache of precompiled guests.
//!
//! Compiling a component costs hundreds of milliseconds; loading a precompiled one well
//! under one. Entries live in `cacheDir/<xxh3-128 of the guest>-<engine compatibility>.cwasm`
//! with a sidecar `.sum` holding the xxh3-128 of the entry. A hit is checked against the
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

/// The cache file for a guest's bytes.
pub fn cache_path(engine: &Engine, cache_dir: &Path, wasm: &[u8]) -> PathBuf {
    cache_dir.join(format!(
        "{:032x}-{:016x}.cwasm",
        xxh3_128(wasm),
        compat_tag(engine)
    ))
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

/// Load the guest at `path`, from the cache when possible.
pub fn load(engine: &Engine, path: &Path, cache_dir: &Path) -> Result<(Component, CacheOutcome)> {
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
    let entry = cache_path(engine, cache_dir, &wasm);
    let existed = entry.exists();
    if existed {
        if let Some(c) = try_load(engine, &entry) {
            return Ok((c, CacheOutcome::Hit));
        }
    }
    let component = compile(engine, path, &wasm)?;
    let outcome = match component
        .serialize()
        .map_err(|e| e.to_string())
        .and_then(|s| store(&entry, &s).map_err(|e| e.to_string()))
    {
        Ok(()) if existed => CacheOutcome::Rebuilt,
        Ok(()) => CacheOutcome::Miss,
        Err(_) => CacheOutcome::Uncached,
    };
    Ok((component, outcome))
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
}
