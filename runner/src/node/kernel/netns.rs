//! Network namespace switching, confined here. `setns` changes only the calling thread,
//! and the runner does all its work on its main thread: we enter the container
//! namespace only for the duration of a closure (to open a netlink socket, which stays
//! bound to the namespace it was created in, or to open a /proc/sys/net file) and
//! always come back before returning.

use crate::node::{OpError, OpResult};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::path::PathBuf;

/// The host namespace (where we started) and the call's container namespace.
pub struct Namespaces {
    host: File,
    container_path: Option<PathBuf>,
    container: Option<File>,
}

impl Namespaces {
    pub fn new(container_path: Option<PathBuf>) -> std::io::Result<Self> {
        Ok(Namespaces {
            host: File::open("/proc/thread-self/ns/net")?,
            container_path,
            container: None,
        })
    }

    /// The container namespace file, opened on first use.
    pub fn container(&mut self) -> OpResult<&File> {
        if self.container.is_none() {
            let path = self.container_path.as_ref().ok_or_else(|| {
                OpError::not_found("this call has no container namespace (CNI_NETNS is empty)")
            })?;
            let f = File::open(path).map_err(|e| {
                OpError::not_found(format!("container namespace {}: {e}", path.display()))
            })?;
            self.container = Some(f);
        }
        Ok(self.container.as_ref().expect("opened above"))
    }

    /// Run `f` with this thread inside the container namespace, then come back.
    pub fn in_container<T>(&mut self, f: impl FnOnce() -> T) -> OpResult<T> {
        let target = self.container()?;
        setns(target, CloneFlags::CLONE_NEWNET)
            .map_err(|e| OpError::failed(format!("entering the container namespace: {e}")))?;
        let out = f();
        if let Err(e) = setns(&self.host, CloneFlags::CLONE_NEWNET) {
            // Going on in the wrong namespace could change the pod instead of the node.
            crate::fatal(&format!("cannot return to the host network namespace: {e}"));
        }
        Ok(out)
    }
}
