//! The CNI_* environment variables.

use crate::error::{Error, Result};
use std::path::PathBuf;

/// A CNI command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// Commands that act on one attachment (container id + ifname).
    pub fn per_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// The validated environment of one call.
#[derive(Clone, Debug)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// CNI_NETNS, `None` when empty or unset (allowed for DEL).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    /// CNI_ARGS `IP=` and `MAC=`, validated (the config's `runtimeConfig` is merged in
    /// by `NetConf::with_args`).
    pub requested: super::requested::Requested,
}

/// Is `s` a valid container id? The spec: alphanumeric first, then alphanumerics, `_`, `.`, `-`.
pub fn valid_container_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() <= 255
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Is `s` a valid Linux interface name?
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':' && b != b'%')
}

impl Env {
    /// Read and validate the environment with `get` (std::env::var in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env> {
        Self::from_lookup_in(get, |p| p.exists())
    }

    /// The same, with `exists` telling whether a CNI_NETNS path is there (the
    /// simulator's namespaces are not files).
    pub fn from_lookup_in(
        get: impl Fn(&str) -> Option<String>,
        exists: impl Fn(&std::path::Path) -> bool,
    ) -> Result<Env> {
        let command = match get("CNI_COMMAND") {
            None => {
                return Err(Error::Env {
                    name: "CNI_COMMAND",
                    reason: "not set (expected ADD, DEL, CHECK, GC, STATUS or VERSION)".into(),
                })
            }
            Some(c) => Command::parse(&c).ok_or_else(|| Error::Env {
                name: "CNI_COMMAND",
                reason: format!(
                    "unknown command {c:?} (expected ADD, DEL, CHECK, GC, STATUS or VERSION)"
                ),
            })?,
        };
        let mut env = Env {
            command,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            args: Vec::new(),
            requested: Default::default(),
        };
        if !command.per_attachment() {
            return Ok(env);
        }
        env.container_id = get("CNI_CONTAINERID").unwrap_or_default();
        if env.container_id.is_empty() {
            return Err(Error::Env {
                name: "CNI_CONTAINERID",
                reason: format!("required for {}", command.as_str()),
            });
        }
        if !valid_container_id(&env.container_id) {
            return Err(Error::Env {
                name: "CNI_CONTAINERID",
                reason: format!(
                    "{:?} is not a valid container id (letters, digits, '_', '.', '-')",
                    env.container_id
                ),
            });
        }
        env.ifname = get("CNI_IFNAME").unwrap_or_default();
        if !valid_ifname(&env.ifname) {
            return Err(Error::Env {
                name: "CNI_IFNAME",
                reason: if env.ifname.is_empty() {
                    format!("required for {}", command.as_str())
                } else {
                    format!("{:?} is not a valid interface name", env.ifname)
                },
            });
        }
        env.netns = get("CNI_NETNS")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        if command != Command::Del {
            match &env.netns {
                None => {
                    return Err(Error::Env {
                        name: "CNI_NETNS",
                        reason: format!("required for {}", command.as_str()),
                    })
                }
                Some(p) if !exists(p) => {
                    return Err(Error::Env {
                        name: "CNI_NETNS",
                        reason: format!("{} does not exist", p.display()),
                    })
                }
                Some(_) => {}
            }
        }
        env.args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        env.requested = super::requested::Requested::from_args(&env.args)?;
        Ok(env)
    }
}

/// CNI_ARGS: `K1=V1;K2=V2`.
fn parse_args(s: &str) -> Result<Vec<(String, String)>> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::Env {
                    name: "CNI_ARGS",
                    reason: format!("{p:?} is not KEY=VALUE"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Result<Env> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn version_needs_nothing_else() {
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
    }

    #[test]
    fn missing_and_bad_values_are_code_4() {
        for vars in [
            vec![],
            vec![("CNI_COMMAND", "FROB")],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/proc/self/ns/net"),
            ],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "a/b"),
                ("CNI_IFNAME", "eth0"),
            ],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "waytoolonginterface"),
            ],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/nonexistent/ns"),
            ],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/proc/self/ns/net"),
                ("CNI_ARGS", "junk"),
            ],
        ] {
            let e = env(&vars).unwrap_err();
            assert_eq!(e.code(), 4, "{vars:?}: {e}");
        }
    }

    #[test]
    fn del_allows_empty_netns_and_parses_args() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", ""),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
        ])
        .unwrap();
        assert!(e.netns.is_none());
        assert_eq!(e.args[1], ("K8S_POD_NAME".into(), "p".into()));
    }
}
