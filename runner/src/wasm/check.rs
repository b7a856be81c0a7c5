//! `wasm-cni guest check FILE`: does this component fit one of the runner's worlds, and
//! which? Answers in terms a student can act on ("exports add but not del", "built
//! against wasm-cni:plugin 0.3.0 but this runner speaks 0.2.0 and 0.1.0") before the
//! linker's type check gives its precise but terse verdict.

use super::{engine, try_instantiate, worlds_text, World, WORLDS};
use crate::cni::Version;
use crate::error::{Error, Result};
use std::path::Path;
use std::time::Instant;
use wasmtime::component::types::ComponentItem;
use wasmtime::Engine;

/// The contract's package.
pub const PACKAGE: &str = "wasm-cni:plugin";

/// The versions served, newest first: `0.2.0 and 0.1.0`.
fn versions_text() -> String {
    WORLDS.map(World::version).join(" and ")
}

/// The policy functions a guest must export.
pub const POLICY_FUNCS: [&str; 5] = ["add", "del", "check", "gc", "status"];
/// The interfaces of our package a guest may import (`cluster` since 0.2.0).
pub const HOST_INTERFACES: [&str; 10] = [
    "types",
    "links",
    "addresses",
    "routes",
    "firewall",
    "sysctl",
    "store",
    "log",
    "cluster",
    "lock",
];

/// `pkg/iface@version` split into its parts.
fn split_name(name: &str) -> (&str, &str, Option<&str>) {
    let (path, version) = match name.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (name, None),
    };
    let (pkg, iface) = path.rsplit_once('/').unwrap_or((path, ""));
    (pkg, iface, version)
}

/// Semver compatibility as the component model's linker applies it: same major, or
/// for 0.x the same minor (0.1.0 and 0.1.3 are compatible, 0.1 and 0.3 are not). Only
/// full `x.y.z` versions; a pre-release matches only itself.
pub fn compatible(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (Version::parse(a), Version::parse(b)) {
        (Some(a), Some(b)) => a.semver_compatible(b),
        _ => false,
    }
}

fn names(engine: &Engine, item: &ComponentItem) -> Vec<String> {
    match item {
        ComponentItem::ComponentInstance(i) => {
            let mut v: Vec<String> = i
                .exports(engine)
                .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                .map(|(n, _)| n.to_string())
                .collect();
            v.sort();
            v
        }
        _ => Vec::new(),
    }
}

/// What `guest check` found: the report lines, or the refusal.
pub struct Report {
    pub lines: Vec<String>,
    /// The world the guest implements.
    pub world: World,
}

fn refuse(path: &Path, reason: String) -> Error {
    Error::Guest {
        path: path.display().to_string(),
        reason,
    }
}

/// What each WASI 0.2 interface gives a guest here (`new_store` in mod.rs sets it up).
fn wasi_gives(iface: &str) -> &'static str {
    match iface {
        "cli/environment" => "empty: no variables, no arguments, no working directory",
        "cli/exit" => "ends the call as a trap (an ADD is rolled back)",
        "cli/stdin" => "closed: a read ends at once",
        "cli/stdout" => "discarded",
        "cli/stderr" => "kept (16 KiB) for the error message of a trap",
        "clocks/wall-clock" => "the node's time of day",
        "clocks/monotonic-clock" => "the node's clock; a wait counts toward the deadline",
        "random/random" | "random/insecure" | "random/insecure-seed" => {
            "a fixed byte sequence: the same every call, not secret"
        }
        "filesystem/preopens" => "no directories: no file can be opened",
        "sockets/instance-network"
        | "sockets/tcp-create-socket"
        | "sockets/udp-create-socket"
        | "sockets/ip-name-lookup"
        | "sockets/tcp"
        | "sockets/udp" => "every use refused",
        i if i.starts_with("cli/terminal-") => "no terminal",
        i if i.starts_with("io/") || i == "filesystem/types" || i == "sockets/network" => {
            "types and streams for the above"
        }
        _ => "not provided (instantiation fails)",
    }
}

/// Check a guest file. Ok: what it exports and imports. Err: the first reason it does
/// not fit, worded for the guest's author.
pub fn check(path: &Path) -> Result<Report> {
    check_into(path, None)
}

/// `check`, taking the compiled guest from `cache_dir` and storing it there on a miss:
/// installing a guest this way means the first CNI call on the node does not compile.
pub fn check_into(path: &Path, cache_dir: Option<&Path>) -> Result<Report> {
    let wasm = std::fs::read(path).map_err(|e| refuse(path, format!("cannot read: {e}")))?;
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(refuse(
            path,
            "not a WebAssembly file (no \\0asm header)".into(),
        ));
    }
    if wasm[4..8] == [1, 0, 0, 0] {
        return Err(refuse(
            path,
            "a core WebAssembly module, not a component: build for the wasm32-wasip2 \
             target (cargo build --target wasm32-wasip2), or wrap a core module with \
             `wasm-tools component new`"
                .into(),
        ));
    }
    // with a cache, the entry is what a CNI call loads (onto the runtime engine); without,
    // the check compiles
    let engine = match cache_dir {
        Some(_) => engine::engine()?,
        None => engine::compiler()?,
    };
    let t = Instant::now();
    let (component, cached) = match cache_dir {
        None => (engine::compile(&engine, path, &wasm)?, None),
        Some(dir) => {
            let engine::Loaded {
                component: c,
                cache: outcome,
                ..
            } = engine::load(&engine, path, dir, None)?;
            if outcome == engine::CacheOutcome::Uncached {
                return Err(Error::Internal(format!(
                    "compiled {}, but could not store it in {}",
                    path.display(),
                    dir.display()
                )));
            }
            (c, Some((dir, outcome)))
        }
    };
    let compile_ms = t.elapsed().as_millis();
    let ty = component.component_type();
    let speaks = |v: &str| {
        format!(
            "built against {PACKAGE} {v} but this runner speaks {PACKAGE} {}",
            versions_text()
        )
    };

    // exports: the policy interface, of a compatible version, with every function
    let exports: Vec<(String, ComponentItem)> = ty
        .exports(&engine)
        .map(|(n, e)| (n.to_string(), e.ty))
        .collect();
    let policy = exports
        .iter()
        .find(|(n, _)| split_name(n).0 == PACKAGE && split_name(n).1 == "policy");
    let Some((policy_name, policy_item)) = policy else {
        let list: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
        return Err(refuse(
            path,
            format!(
                "does not export {PACKAGE}/policy: it is a component of another world \
                 (it exports {}); a guest implements {}",
                if list.is_empty() {
                    "nothing".to_string()
                } else {
                    list.join(", ")
                },
                worlds_text()
            ),
        ));
    };
    let world = match split_name(policy_name).2 {
        Some(v) => match WORLDS.into_iter().find(|w| compatible(v, w.version())) {
            Some(w) => w,
            None => return Err(refuse(path, speaks(v))),
        },
        None => {
            return Err(refuse(
                path,
                format!(
                    "exports {policy_name} without a version; this runner speaks {PACKAGE} {}",
                    versions_text()
                ),
            ))
        }
    };
    let ours = world.version();
    let funcs = names(&engine, policy_item);
    let missing: Vec<&str> = POLICY_FUNCS
        .iter()
        .copied()
        .filter(|f| !funcs.iter().any(|h| h == f))
        .collect();
    if !missing.is_empty() {
        let have: Vec<&str> = POLICY_FUNCS
            .iter()
            .copied()
            .filter(|f| !missing.contains(f))
            .collect();
        return Err(refuse(
            path,
            format!(
                "exports {} but not {} (the policy interface needs all of {})",
                if have.is_empty() {
                    "none of the policy functions".to_string()
                } else {
                    have.join(", ")
                },
                missing.join(", "),
                POLICY_FUNCS.join(", ")
            ),
        ));
    }

    // imports: our interfaces (compatible version) and WASI, nothing else
    let mut import_lines = Vec::new();
    let mut wasi = Vec::new();
    for (name, e) in ty.imports(&engine) {
        let (pkg, iface, v) = split_name(name);
        let funcs = names(&engine, &e.ty).join(", ");
        if pkg == PACKAGE {
            if !HOST_INTERFACES.contains(&iface)
                || (matches!(iface, "cluster" | "lock") && world == World::V0_1)
            {
                return Err(refuse(
                    path,
                    format!("imports {name}, which {PACKAGE} {ours} does not have"),
                ));
            }
            match v {
                Some(v) if compatible(v, ours) => {}
                Some(v) if WORLDS.iter().any(|w| compatible(v, w.version())) => {
                    return Err(refuse(
                        path,
                        format!(
                            "imports {name} but exports {policy_name}: a guest is built \
                             against one version of {PACKAGE}"
                        ),
                    ))
                }
                Some(v) => return Err(refuse(path, speaks(v))),
                None => {}
            }
            if funcs.is_empty() {
                import_lines.push(format!("  import {name} (types only)"));
            } else {
                import_lines.push(format!("  import {name}: {funcs}"));
            }
        } else if pkg.starts_with("wasi:") {
            wasi.push(name.trim_start_matches("wasi:").to_string());
        } else {
            return Err(refuse(
                path,
                format!(
                    "imports {name}, which this runner does not provide (a guest gets \
                     {PACKAGE} and WASI 0.2, nothing else)"
                ),
            ));
        }
    }

    // the linker's type check of the imports, then instantiation (on a simulated node)
    // for the exports: every signature as the runner's world has it
    let found = try_instantiate(&engine, &component, path).map_err(|e| match e {
        Error::Guest { reason, .. } if reason.contains("type mismatch") => refuse(
            path,
            format!("{reason} (rebuild it against this runner's wit/ files)"),
        ),
        other => other,
    })?;
    debug_assert_eq!(found, world, "the exports name one world");

    for name in &wasi {
        let iface = name.split('@').next().unwrap_or(name);
        import_lines.push(format!("  import wasi:{name}: {}", wasi_gives(iface)));
    }
    let size = wasm.len().div_ceil(1024);
    let mut lines = vec![
        format!("ok: {} implements {}", path.display(), world.name()),
        match cached {
            None => format!("  {size} KiB component, compiled in {compile_ms} ms"),
            Some((dir, engine::CacheOutcome::Hit)) => format!(
                "  {size} KiB component, already compiled in {} (loaded in {compile_ms} ms)",
                dir.display()
            ),
            Some((dir, _)) => format!(
                "  {size} KiB component, compiled in {compile_ms} ms into {}",
                dir.display()
            ),
        },
        // what `guestDigest` pins and a registry names it by
        format!("  digest {}", engine::digest(&wasm)),
        format!("  export {policy_name}: {}", funcs.join(", ")),
    ];
    let node_export = exports
        .iter()
        .map(|(n, _)| n.as_str())
        .find(|n| super::exports_node_policy(world, [*n]));
    lines.push(match node_export {
        Some(n) => format!("  export {n}: reconcile (run by `wasm-cni reconcile`)"),
        None => format!(
            "  no {} export: `wasm-cni reconcile` has nothing to run for it",
            super::NODE_POLICY
        ),
    });
    if world != WORLDS[0] {
        lines.push(format!(
            "  served by the {ours} adapter: addresses.list and routes.list answer IPv4 \
             only, no requested ips/mac (rebuild against wit/world.wit for {})",
            WORLDS[0].version()
        ));
    }
    lines.extend(import_lines);
    Ok(Report { lines, world })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.3.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.2.0", "1.0.0"));
        assert!(!compatible("0.0.1", "0.0.2"));
        assert!(!compatible("x", "0.1.0"));
        assert!(!compatible("0.3", "0.1.0"));
        assert!(!compatible("0.1.1-rc.1", "0.1.0"));
        assert!(compatible("0.1.1-rc.1", "0.1.1-rc.1"));
        assert_eq!(versions_text(), "0.2.0 and 0.1.0");
    }

    #[test]
    fn the_world_is_found_from_the_policy_export() {
        let of = |n: &[&str]| World::of_exports(n.iter().copied());
        assert_eq!(of(&["wasm-cni:plugin/policy@0.2.0"]), Some(World::V0_2));
        assert_eq!(of(&["wasm-cni:plugin/policy@0.1.0"]), Some(World::V0_1));
        assert_eq!(of(&["wasm-cni:plugin/policy@0.1.4"]), Some(World::V0_1));
        assert_eq!(of(&["wasm-cni:plugin/policy@0.3.0"]), None);
        assert_eq!(of(&["wasm-cni:plugin/policy"]), None);
        assert_eq!(of(&["greet"]), None);
        assert_eq!(World::V0_2.name(), "wasm-cni:plugin/cni-policy@0.2.0");
        assert_eq!(WORLDS[0], World::V0_2, "newest first");
    }

    #[test]
    fn names_split() {
        assert_eq!(
            split_name("wasm-cni:plugin/links@0.1.0"),
            ("wasm-cni:plugin", "links", Some("0.1.0"))
        );
        assert_eq!(split_name("run"), ("run", "", None));
    }

    #[test]
    fn core_module_is_refused_with_a_hint() {
        let dir = std::env::temp_dir().join(format!("wasm-cni-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("core.wasm");
        std::fs::write(&p, b"\0asm\x01\0\0\0").unwrap();
        let e = check(&p).err().unwrap().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("core WebAssembly module"), "{e}");
    }
}
