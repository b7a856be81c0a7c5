//! The call log: one line per call (command, container, outcome, time taken, phases),
//! plus the guest's own lines. Never stdout. Each line is one append-mode write, so
//! concurrent calls do not interleave within a line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

#[derive(Clone)]
pub struct CallLog {
    file: Option<std::sync::Arc<File>>,
    tag: String,
    /// Drop every line (`wasm-cni simulate` prints its own transcript instead).
    discard: bool,
}

impl CallLog {
    /// Open (create) the log. A log that cannot be opened falls back to stderr, which
    /// runtimes capture; the call itself goes on. A log past `max_bytes` is renamed to
    /// `<path>.1` (replacing the previous one) and a new one begun: with each call's
    /// guest lines bounded too, the log never grows without bound.
    pub fn open(path: &Path, command: &str, container: &str, max_bytes: u64) -> CallLog {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut file = OpenOptions::new().create(true).append(true).open(path);
        if let Ok(f) = &file {
            if rotate(path, f, max_bytes) {
                file = OpenOptions::new().create(true).append(true).open(path);
            }
        }
        let tag = if container.is_empty() {
            command.to_string()
        } else {
            format!("{command} {container}")
        };
        match file {
            Ok(f) => CallLog {
                file: Some(std::sync::Arc::new(f)),
                tag,
                discard: false,
            },
            Err(e) => {
                eprintln!("wasm-cni: cannot open log {}: {e}", path.display());
                CallLog {
                    file: None,
                    tag,
                    discard: false,
                }
            }
        }
    }

    /// A log that writes to stderr only (before the config is known).
    pub fn stderr(command: &str) -> CallLog {
        CallLog {
            file: None,
            tag: command.to_string(),
            discard: false,
        }
    }

    /// A log that keeps nothing.
    pub fn discard() -> CallLog {
        CallLog {
            file: None,
            tag: String::new(),
            discard: true,
        }
    }

    pub fn line(&self, level: &str, msg: &str) {
        if self.discard {
            return;
        }
        let ts = humantime::format_rfc3339_micros(SystemTime::now());
        let msg = msg.replace('\n', "\\n");
        let line = format!(
            "{ts} {level:<5} [{}] {}: {msg}\n",
            std::process::id(),
            self.tag
        );
        match &self.file {
            Some(f) => {
                let _ = (&**f).write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

/// Rename a full log aside. Concurrent calls may race here: renaming only the file we
/// opened (same inode) keeps a call from moving a fresh log another call just began.
fn rotate(path: &Path, f: &File, max_bytes: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = f.metadata() else { return false };
    if m.len() <= max_bytes {
        return false;
    }
    let same = std::fs::metadata(path).is_ok_and(|p| p.ino() == m.ino() && p.dev() == m.dev());
    if !same {
        return true; // another call rotated it already: reopen the new one
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    std::fs::rename(path, &old).is_ok()
}
