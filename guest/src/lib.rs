//! The default wasm-cni policy: what the course lab's bridge plugin did, done right.
//!
//! - `config`: the network config fields this policy reads (pure, unit-tested).
//! - `ipam`:   address management over the runner's store (pure, unit-tested).
//! - `policy`: the CNI commands, calling the runner's host functions.

pub mod config;
pub mod ipam;
mod policy;

wit_bindgen::generate!({
    path: "../wit",
    world: "cni-policy",
});

// Only the wasm build exports the component; natively the crate is a plain library
// whose pure modules are unit-tested with `cargo test -p wasm-cni-guest`.
#[cfg(target_arch = "wasm32")]
use policy::Policy;
#[cfg(target_arch = "wasm32")]
export!(Policy);
