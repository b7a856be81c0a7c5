//! The runner's typed errors, mapped once (here) to CNI error codes.

use thiserror::Error;

/// Everything that can end a call with a CNI error object.
#[derive(Debug, Error)]
pub enum Error {
    /// The requested cniVersion is not one we speak (code 1).
    #[error("incompatible CNI version {0:?}: supported are {supported}", supported = crate::cni::supported_list().join(", "))]
    IncompatibleVersion(String),
    /// The command does not exist in the config's cniVersion (code 1, as libcni does).
    #[error("{command} is not part of CNI {version}")]
    CommandNotInVersion { command: String, version: String },
    /// A CNI_* variable is missing or malformed (code 4).
    #[error("{name}: {reason}")]
    Env { name: &'static str, reason: String },
    /// Reading stdin or writing files failed (code 5).
    #[error("I/O failure on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The config on stdin is not valid JSON or not an object (code 6).
    #[error("cannot decode the network configuration: {0}")]
    Decode(String),
    /// The config is well-formed but wrong (code 7).
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    /// The guest component cannot be used (code 7: the config names it).
    #[error("guest component {path}: {reason}")]
    Guest { path: String, reason: String },
    /// Another call holds the network's lock for too long (code 11).
    #[error("try again later: {0}")]
    TryAgain(String),
    /// STATUS: the network cannot take ADDs now (code 50), and, with `pods_affected`,
    /// existing pods may have limited connectivity too (code 51).
    #[error("network not ready: {reason}")]
    NotReady { reason: String, pods_affected: bool },
    /// The guest returned a policy error (its code: 7, 11 or 100+).
    #[error("{message}")]
    Policy {
        code: u32,
        message: String,
        details: String,
    },
    /// The guest trapped, overran its deadline or memory, or broke the contract (code 100
    /// or 11 for a deadline).
    #[error("guest failed: {0}")]
    GuestFault(String),
    /// The guest ran out of its time budget (code 11: the runtime may retry).
    #[error("guest exceeded its deadline of {0} ms")]
    Deadline(u64),
    /// Anything else (code 999).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The CNI error code for this error.
    pub fn code(&self) -> u32 {
        match self {
            Error::IncompatibleVersion(_) | Error::CommandNotInVersion { .. } => 1,
            Error::Env { .. } => 4,
            Error::Io { .. } => 5,
            Error::Decode(_) => 6,
            Error::InvalidConfig(_) | Error::Guest { .. } => 7,
            Error::TryAgain(_) | Error::Deadline(_) => 11,
            Error::NotReady { pods_affected, .. } => 50 + u32::from(*pods_affected),
            Error::Policy { code, .. } => match *code {
                7 | 11 => *code,
                c if c >= 100 => c,
                _ => 100,
            },
            Error::GuestFault(_) => 100,
            Error::Internal(_) => 999,
        }
    }

    /// The `details` field of the error object.
    pub fn details(&self) -> String {
        match self {
            Error::Policy { details, .. } => details.clone(),
            Error::Io { source, .. } => source.to_string(),
            _ => String::new(),
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Error::IncompatibleVersion("9".into()).code(), 1);
        assert_eq!(
            Error::Env {
                name: "CNI_COMMAND",
                reason: "missing".into()
            }
            .code(),
            4
        );
        assert_eq!(Error::Decode("x".into()).code(), 6);
        assert_eq!(Error::InvalidConfig("x".into()).code(), 7);
        assert_eq!(Error::TryAgain("x".into()).code(), 11);
        let not_ready = |pods_affected| Error::NotReady {
            reason: "x".into(),
            pods_affected,
        };
        assert_eq!(not_ready(false).code(), 50);
        assert_eq!(not_ready(true).code(), 51);
        let p = |code| Error::Policy {
            code,
            message: String::new(),
            details: String::new(),
        };
        assert_eq!(p(101).code(), 101);
        assert_eq!(p(7).code(), 7);
        assert_eq!(p(3).code(), 100, "guests may not claim runtime codes");
        assert_eq!(
            p(51).code(),
            100,
            "50/51 are STATUS answers (see plugin::status_code)"
        );
    }
}
