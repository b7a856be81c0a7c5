//! The CNI protocol: what comes in (env, config) and what goes out (one JSON document).

pub mod config;
pub mod env;
pub mod output;
pub mod requested;
pub mod version;

pub use config::NetConf;
pub use env::{Command, Env};
pub use version::Version;

/// The spec versions we speak, oldest first.
pub const SUPPORTED_VERSIONS: [Version; 5] = [
    Version::new(0, 3, 0),
    Version::new(0, 3, 1),
    Version::new(0, 4, 0),
    Version::new(1, 0, 0),
    Version::new(1, 1, 0),
];

/// The version we answer in when nothing better is known.
pub const LATEST: Version = Version::new(1, 1, 0);

/// A version we speak, from its text.
pub fn supported(text: &str) -> Option<Version> {
    Version::parse(text).filter(|v| SUPPORTED_VERSIONS.contains(v))
}

/// The supported versions as text, for messages and the VERSION answer.
pub fn supported_list() -> Vec<String> {
    SUPPORTED_VERSIONS.iter().map(Version::to_string).collect()
}
