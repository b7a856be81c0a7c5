//! wasm-cni: a CNI plugin whose networking policy is a WebAssembly component.
//!
//! The layers, top to bottom (docs/architecture.md walks through them):
//! - `plugin`: the CNI entry point. Reads CNI_* and the config (`cni`), answers
//!   VERSION, loads the guest (`wasm::engine`), takes the network's lock, runs one
//!   `session`, prints exactly one JSON document (or nothing, for a successful
//!   DEL/CHECK/GC/STATUS, as the spec says). `supervisor` stops a call from outside
//!   (deadline, signals, panic).
//! - `session`: one guest call through the gate, shared by the plugin, `reconcile`
//!   (the node-level `node-policy.reconcile` of `wasm-cni reconcile`) and `simulate`.
//! - `wasm`: the engine, the cache, the bindings of the WIT world, `guest check`.
//! - `gate`: every import of the guest passes here: `grants` (what this call may
//!   touch), then the change, recorded in the `journal` with its exact undo.
//! - `node`: what the gate changes, behind the `Node` trait: `node::kernel` (netlink,
//!   namespaces, nftables, /proc/sys, the store directory) or `node::model` (in memory,
//!   for `simulate` and the gate's unit tests).

pub(crate) mod cni;
pub(crate) mod error;
pub mod registry;
pub mod simulate;
pub mod wasm;

pub(crate) mod calllog;
pub(crate) mod gate;
pub(crate) mod mac;
pub(crate) mod node;
mod plugin;
pub mod reconcile;
pub(crate) mod session;
mod supervisor;

pub use plugin::{cni_main, fatal};
pub use supervisor::panicked;
