//! The pure parsing code of the runner and the default guest, compiled from their own
//! source files so that the fuzz build does not have to build wasmtime with sanitizers
//! (the runner's crate depends on it; these modules do not).

#[path = "../../runner/src/error.rs"]
pub mod error;

#[path = "../../runner/src/cni/mod.rs"]
pub mod cni;

#[path = "../../guest/kit/src/config.rs"]
pub mod guest_config;
