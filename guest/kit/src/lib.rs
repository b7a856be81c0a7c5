//! What every Rust policy guest shares, so that a policy's own file holds only its
//! policy (ADD, CHECK, and what STATUS should look at):
//!
//! - `bindings`: the world `cni-policy` of `wit/world.wit` (host functions and types).
//! - `policy`:   the [`Policy`](policy::Policy) trait a guest implements, the commands
//!   that are the same in every policy (DEL, GC, STATUS), error codes and helpers.
//! - `config`:   the network config fields (`myPodSubnet`, `myPodNetwork`, ...), validated.
//! - `ipam`:     round-robin address management over the runner's store, behind a trait.
//! - `prev`:     what CHECK expects to find, read from `prevResult`.
//! - `prelude`:  `use wasm_cni_guest_kit::prelude::*;` brings all a policy file uses.
//!
//! Everything but the host calls is plain Rust, unit-tested natively.

pub mod config;
pub mod ipam;
pub mod policy;
pub mod prev;

/// The bindings of the world `cni-policy`, generated once for every Rust guest.
/// `wasm_cni_guest_kit::export!(MyPolicy)` (in the guest, for wasm32 only) exports a type
/// that implements [`policy::Policy`].
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "cni-policy",
        pub_export_macro: true,
        default_bindings_module: "wasm_cni_guest_kit::bindings",
    });
}

/// `wasm_cni_guest_kit::export!(MyPolicy);` exports a [`policy::Policy`] as the guest's
/// component (put it under `#[cfg(target_arch = "wasm32")]`: natively there is nothing
/// to export to).
pub use bindings::export;

/// What a policy file uses: the world's types and host interfaces, the kit's helpers.
pub mod prelude {
    pub use crate::bindings::exports::wasm_cni::plugin::policy::{
        AddResult, Attachment, CniError, IpConfig, Request, ResultInterface, ResultRoute,
    };
    pub use crate::bindings::wasm_cni::plugin::routes::Route;
    pub use crate::bindings::wasm_cni::plugin::types::{ErrorKind, HostError, LinkInfo, Netns};
    pub use crate::bindings::wasm_cni::plugin::{
        addresses, firewall, links, log, routes, store, sysctl,
    };
    pub use crate::config::Config;
    pub use crate::policy::{
        allocate, check_pod, cni, enable_forwarding, forwarding_problem, info, parse_config,
        remove_host_veth, step, store_error, HostStore, Policy, CHECK_FAILED, HOST_FAILED,
        INVALID_CONFIG, LIMITED_CONNECTIVITY, NOT_AVAILABLE, POOL_EXHAUSTED,
    };
    pub use crate::{ipam, prev};
}
