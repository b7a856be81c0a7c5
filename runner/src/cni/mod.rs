//! The CNI protocol: what comes in (env, config) and what goes out (one JSON document).

pub mod config;
pub mod env;
pub mod output;

pub use config::NetConf;
pub use env::{Command, Env};

/// The spec versions we speak, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The version we answer in when nothing better is known.
pub const LATEST: &str = "1.1.0";

/// Compare two supported versions (they are all `major.minor.patch` with small numbers).
pub fn version_at_least(v: &str, min: &str) -> bool {
    fn parts(v: &str) -> (u32, u32, u32) {
        let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
        (
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
        )
    }
    parts(v) >= parts(min)
}
