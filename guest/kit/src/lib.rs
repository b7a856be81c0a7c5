//! What every shipped wasm-cni policy shares, as plain Rust (no bindings, no host calls),
//! so it is unit-tested natively and a new guest can reuse it:
//!
//! - `config`: the network config fields (`myPodSubnet`, `myPodNetwork`, ...), validated.
//! - `ipam`:   round-robin address management over the runner's store, behind a trait.
//! - `prev`:   what CHECK expects to find, read from `prevResult`.

pub mod config;
pub mod ipam;
pub mod prev;
