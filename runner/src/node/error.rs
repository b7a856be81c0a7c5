//! The error of one host operation (netlink, sysctl, firewall, store, grants). The gate
//! turns it into the WIT `host-error` the guest sees; its `kind` comes from the
//! kernel's errno or the io::Error kind, kept here, never from message text.

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
    /// The kernel's error number (positive), when the kernel refused.
    pub errno: Option<i32>,
    /// The io::Error kind, when the operation was file or process I/O.
    pub io_kind: Option<std::io::ErrorKind>,
}

impl OpError {
    pub fn new(kind: OpKind, message: impl Into<String>) -> Self {
        OpError {
            kind,
            message: message.into(),
            errno: None,
            io_kind: None,
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

    /// The same error, its message led by the operation it failed (`what: message`).
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        OpError {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }

    /// The kind of an OS error number (positive errno).
    pub fn kind_of_errno(errno: i32) -> OpKind {
        match errno {
            libc::EEXIST => OpKind::AlreadyExists,
            libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL => OpKind::NotFound,
            libc::EINVAL | libc::ERANGE => OpKind::InvalidArgument,
            _ => OpKind::Failed,
        }
    }

    /// A refusal by the kernel, classified by its errno.
    pub fn from_errno(errno: i32, message: impl Into<String>) -> Self {
        OpError {
            errno: Some(errno),
            ..Self::new(Self::kind_of_errno(errno), message)
        }
    }

    /// A failed file or process operation: the errno if the OS gave one, else the
    /// io::Error kind.
    pub fn from_io(e: &std::io::Error, message: impl Into<String>) -> Self {
        use std::io::ErrorKind as K;
        let kind = match (e.raw_os_error(), e.kind()) {
            (Some(n), _) => Self::kind_of_errno(n),
            (None, K::NotFound) => OpKind::NotFound,
            (None, K::AlreadyExists) => OpKind::AlreadyExists,
            (None, K::InvalidInput | K::InvalidData) => OpKind::InvalidArgument,
            _ => OpKind::Failed,
        };
        OpError {
            kind,
            message: message.into(),
            errno: e.raw_os_error(),
            io_kind: Some(e.kind()),
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_comes_from_the_errno_or_the_io_kind() {
        let e = OpError::from_errno(libc::EEXIST, "link wc1");
        assert_eq!(
            (e.kind, e.errno),
            (OpKind::AlreadyExists, Some(libc::EEXIST))
        );
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = OpError::from_io(&io, "sysctl net.ipv4.conf.x.forwarding");
        assert_eq!(e.kind, OpKind::NotFound);
        assert_eq!(e.errno, Some(libc::ENOENT));
        assert_eq!(e.io_kind, Some(std::io::ErrorKind::NotFound));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "torn");
        let e = OpError::from_io(&io, "store key a");
        assert_eq!((e.kind, e.errno), (OpKind::InvalidArgument, None));
        // the message does not decide the kind
        let e = OpError::from_errno(libc::EPERM, "not found: EEXIST");
        assert_eq!(e.kind, OpKind::Failed);
    }
}
