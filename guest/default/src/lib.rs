//! The default wasm-cni policy: what the course lab's bridge plugin did, done right.
//!
//! - `policy`: the CNI commands, calling the runner's host functions.
//! - the pure parts (config fields, IPAM, reading `prevResult`) come from
//!   `wasm-cni-guest-kit` (`guest/kit`), shared with the other shipped guests.

mod policy;

pub use wasm_cni_guest_kit::{config, ipam};

wit_bindgen::generate!({
    path: "../../wit",
    world: "cni-policy",
});

// Only the wasm build exports the component; natively the crate is a plain library
// (`cargo test -p wasm-cni-guest` checks it compiles; the logic's tests are in the kit).
#[cfg(target_arch = "wasm32")]
use policy::Policy;
#[cfg(target_arch = "wasm32")]
export!(Policy);
