//! What every Rust policy guest shares, so that a policy's own file holds only its
//! policy (ADD, CHECK, and what STATUS should look at):
//!
//! - `bindings`: the world `cni-policy` of `wit/world.wit` (`wasm-cni:plugin@0.2.0`:
//!   host functions and types); `node_bindings`: the `node-policy` export that makes
//!   a guest exporting it with [`export_node!`] a `cni-node-policy` component.
//! - `policy`:   the [`Policy`](policy::Policy) trait a guest implements, the commands
//!   that are the same in every policy (DEL, GC, STATUS), error codes and helpers, and
//!   the host calls as a trait ([`Node`](policy::Node)); [`NodePolicy`](policy::NodePolicy)
//!   for a policy that also reconciles the node with the cluster.
//! - `config`:   the network config fields (`myPodSubnet`, `myPodNetwork`, ...), a CIDR
//!   or one per address family, validated.
//! - `ipam`:     round-robin address management over the runner's store, per family.
//! - `prev`:     what CHECK expects to find, read from `prevResult`.
//! - `bridge`:   the bridge policy (the default guest's ADD, CHECK and STATUS look),
//!   shared by the policies built on it (host-gw, VXLAN).
//! - `internode`: this node and its peers, typed, and the lazy sync of the inter-node
//!   policies (host-gw, VXLAN).
//! - `fake`:     a node in memory that records host calls, for policies' unit tests.
//! - `prelude`:  `use wasm_cni_guest_kit::prelude::*;` brings all a policy file uses.
//!
//! Everything but the host calls is plain Rust, unit-tested natively.

pub mod bridge;
pub mod config;
pub mod fake;
pub mod internode;
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

    // `wit/` holds two versions of the package (0.1.0 under deps/), so the generated
    // modules carry the version in their name: these are the unversioned names.
    pub use self::exports::wasm_cni::plugin0_2_0::policy;
    pub use self::wasm_cni::plugin0_2_0 as plugin;
}

/// The `node-policy` export of the world `cni-node-policy`, generated on its own: a
/// guest exports it only with [`export_node!`], so a guest exporting just `policy`
/// (with [`export!`]) stays a `cni-policy` component. Its world has no imports (they
/// are all in [`bindings`]); the component ends up with both worlds' exports, which
/// is what `cni-node-policy` is.
#[allow(missing_docs, clippy::all)]
pub mod node_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package wasm-cni:kit;
            world node-export {
                export wasm-cni:plugin/node-policy@0.2.0;
            }
        ",
        world: "node-export",
        pub_export_macro: true,
        export_macro_name: "export_node_policy",
        default_bindings_module: "wasm_cni_guest_kit::node_bindings",
    });

    pub use self::exports::wasm_cni::plugin0_2_0::node_policy;
}

/// `wasm_cni_guest_kit::export!(MyPolicy);` exports a [`policy::Policy`] as the guest's
/// component (put it under `#[cfg(target_arch = "wasm32")]`: natively there is nothing
/// to export to).
pub use bindings::export;

/// `wasm_cni_guest_kit::export_node!(MyPolicy);` exports a [`policy::NodePolicy`] as a
/// component of the world `cni-node-policy`: `policy` and `node-policy` (under
/// `#[cfg(target_arch = "wasm32")]`, as [`export!`]).
#[macro_export]
macro_rules! export_node {
    ($ty:ident) => {
        $crate::export!($ty);
        $crate::node_bindings::export_node_policy!($ty);
    };
}

/// What a policy file uses: the world's types and host interfaces, the kit's helpers.
pub mod prelude {
    pub use crate::bindings::plugin::cluster::{FdbEntry, Neighbor, Peer};
    pub use crate::bindings::plugin::routes::Route;
    pub use crate::bindings::plugin::types::{ErrorKind, HostError, LinkInfo, Netns};
    pub use crate::bindings::plugin::{
        addresses, firewall, links, lock, log, routes, store, sysctl,
    };
    pub use crate::bindings::policy::{
        AddResult, Attachment, CniError, IpConfig, Request, ResultInterface, ResultRoute,
    };
    pub use crate::config::{Config, Family, Net};
    pub use crate::policy::{
        allocate, allocate_on, check_families, check_pod, check_pod_on, cni, enable_forwarding,
        enable_forwarding_on, forwarding_key, forwarding_problem, forwarding_problem_on, info,
        parse_config, remove_host_link, remove_host_veth, requested_ips, step, store_error,
        store_step, Node, NodePolicy, PodAddress, Policy, Runner, CHECK_FAILED, HOST_FAILED,
        INVALID_CONFIG, LIMITED_CONNECTIVITY, NOT_AVAILABLE, POOL_EXHAUSTED, REQUEST_REFUSED,
    };
    pub use crate::{bridge, internode, ipam, prev};
}
