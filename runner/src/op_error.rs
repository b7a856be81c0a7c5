//! The error of one host operation (netlink, sysctl, firewall, store, grants). The
//! sandbox turns it into the WIT `host-error` the guest sees.

use thiserror::Error;

/// The class of a failed operation; mirrors WIT `error-kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Denied,
    NotFound,
    AlreadyExists,
    InvalidArgument,
    Failed,
}

/// A failed host operation, with a message naming the object.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct OpError {
    pub kind: OpKind,
    pub message: String,
}

impl OpError {
    pub fn new(kind: OpKind, message: impl Into<String>) -> Self {
        OpError {
            kind,
            message: message.into(),
        }
    }
    pub fn denied(m: impl Into<String>) -> Self {
        Self::new(OpKind::Denied, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(OpKind::NotFound, m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(OpKind::InvalidArgument, m)
    }
    pub fn failed(m: impl Into<String>) -> Self {
        Self::new(OpKind::Failed, m)
    }

    /// Classify an OS error number (positive errno).
    pub fn from_errno(errno: i32, message: String) -> Self {
        let kind = match errno {
            libc::EEXIST => OpKind::AlreadyExists,
            libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL => OpKind::NotFound,
            libc::EINVAL | libc::ERANGE => OpKind::InvalidArgument,
            _ => OpKind::Failed,
        };
        OpError { kind, message }
    }
}

pub type OpResult<T> = Result<T, OpError>;
