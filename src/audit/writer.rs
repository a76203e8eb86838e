//! Where audit lines go: a file opened for appending (created 0600, refused when another
//! user could read or change it) or stderr, one whole line per write under one lock, and
//! the file reopened on SIGHUP so that logrotate can move it away.
//!
//! Written by hand rather than with a crate: `tracing-appender` rotates files itself on a
//! clock (logrotate's rename-and-signal is what operators run) and its non-blocking writer
//! drops lines when its queue is full, which an audit trail must not do silently;
//! `reopen` (on signal-hook) would register a second signal mechanism beside tokio's and
//! knows nothing of the owner and mode checks. What is needed is an append-mode file,
//! a mutex and a signal stream: these few lines.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where the audit trail is written (`--audit-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `-`: standard error, beside the log lines.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

impl Target {
    /// `--audit-log VALUE`: `-` is stderr; empty means no trail.
    pub fn parse(value: &Path) -> Option<Target> {
        if value.as_os_str().is_empty() {
            None
        } else if value.as_os_str() == "-" {
            Some(Target::Stderr)
        } else {
            Some(Target::File(value.to_path_buf()))
        }
    }
}

/// The open audit trail.
pub struct Writer {
    target: Target,
    /// The open file (`None` for stderr); swapped on reopen.
    file: Mutex<Option<File>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Opens `target`; a file is created 0600, and an existing one is refused when it is
    /// not private to this user (see [`open_file`]).
    pub fn open(target: Target) -> Result<Writer, String> {
        let file = match &target {
            Target::Stderr => None,
            Target::File(path) => Some(open_file(path)?),
        };
        Ok(Writer {
            target,
            file: Mutex::new(file),
        })
    }

    /// The file written to, if not stderr.
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::File(path) => Some(path),
            Target::Stderr => None,
        }
    }

    /// Appends `line` (which ends with its newline) in one write, under the lock, so
    /// that neither a concurrent line nor a reopen can split it.
    pub fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut file = self.lock();
        match file.as_mut() {
            Some(file) => file.write_all(line),
            None => std::io::stderr().lock().write_all(line),
        }
    }

    /// Opens the file again under its name (logrotate moved the old one away); on
    /// failure the old file stays in use and the reason is returned.
    pub fn reopen(&self) -> Result<(), String> {
        let Target::File(path) = &self.target else {
            return Ok(());
        };
        let fresh = open_file(path)?;
        *self.lock() = Some(fresh);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Option<File>> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens `path` for appending, creating it with mode 0600. An existing regular file must
/// belong to this user and grant nothing to group or others (the trail names people and
/// what they did); a device or pipe (`/dev/stderr`, a collector's FIFO) is taken as it
/// is. Checked on the opened file, so nothing can be swapped in between.
fn open_file(path: &Path) -> Result<File, String> {
    let shown = path.display();
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(|e| format!("cannot open the audit log {shown}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read the audit log {shown}: {e}"))?;
        if meta.is_dir() {
            return Err(format!("the audit log {shown} is a directory"));
        }
        if meta.is_file() {
            let me = rustix::process::geteuid().as_raw();
            if meta.uid() != me {
                return Err(format!(
                    "the audit log {shown} is owned by user id {}, not by the user running this \
                     server (id {me}): someone else may read it. If it is yours, `chown {me} {shown}`; \
                     if not, move it away",
                    meta.uid()
                ));
            }
            let mode = meta.mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "the audit log {shown} is readable or writable by other users (mode {mode:04o}): \
                     run `chmod 600 {shown}` (with logrotate, `create 0600` or `nocreate`)"
                ));
            }
        }
    }
    Ok(file)
}

/// Reopens `writer`'s file on every SIGHUP for as long as the process runs (logrotate's
/// `postrotate kill -HUP`). Nothing is spawned for stderr: SIGHUP then keeps its usual
/// meaning.
pub fn reopen_on_hangup(writer: Arc<Writer>) {
    if writer.path().is_none() {
        return;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "cannot listen for SIGHUP; the audit log will not be reopened: {e}"
                );
                return;
            }
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match writer.reopen() {
                    Ok(()) => tracing::info!("SIGHUP: the audit log was reopened"),
                    Err(e) => tracing::error!(
                        "SIGHUP: the audit log could not be reopened; lines still go to the file \
                         opened before: {e}"
                    ),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_dash_is_stderr_and_empty_is_off() {
        assert_eq!(Target::parse(Path::new("-")), Some(Target::Stderr));
        assert_eq!(Target::parse(Path::new("")), None);
        assert_eq!(
            Target::parse(Path::new("a.log")),
            Some(Target::File("a.log".into()))
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_is_private_and_lines_are_appended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"kept\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let w = Writer::open(Target::File(path.clone())).unwrap();
        w.write_line(b"one\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept\none\n");

        let fresh = dir.path().join("new.log");
        Writer::open(Target::File(fresh.clone())).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_refused_with_a_chmod_hint() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Writer::open(Target::File(path.clone())).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(Writer::open(Target::File(dir.path().to_path_buf())).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_reopen_follows_the_name_and_a_failed_one_keeps_the_old_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let moved = dir.path().join("audit.log.1");
        let w = Writer::open(Target::File(path.clone())).unwrap();
        w.write_line(b"before\n").unwrap();
        std::fs::rename(&path, &moved).unwrap();
        w.write_line(b"between\n").unwrap();
        w.reopen().unwrap();
        w.write_line(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&moved).unwrap(),
            "before\nbetween\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(w.reopen().is_err());
        w.write_line(b"still\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\nstill\n");
    }
}
