//! The default wasm-cni policy: what the course lab's bridge plugin did, done right.
//!
//! - `policy`: ADD, CHECK and what STATUS looks at, written against the kit's `Node`
//!   (the runner's host functions), unit-tested natively with the kit's fake node.
//! - the rest (DEL, GC, STATUS, config fields, IPAM, reading `prevResult`) comes from
//!   `wasm-cni-guest-kit` (`guest/kit`), shared with the other Rust guests.

mod policy;

pub use policy::Bridge;
pub use wasm_cni_guest_kit::{config, ipam};

// Only the wasm build exports the component; natively the crate is a plain library
// (`cargo test -p wasm-cni-guest` runs the policy's tests against the kit's fake node).
#[cfg(target_arch = "wasm32")]
wasm_cni_guest_kit::export!(Bridge);
