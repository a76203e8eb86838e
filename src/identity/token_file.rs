//! The configured identity's token file: every refresh rotates the refresh token, so the
//! new pair is written here (mode 0600, atomically) and read at start-up: a restart must
//! not present a refresh token that is already used up.
//!
//! As a [`Holder`] it also lets two processes started with one token file (two client
//! windows each running the stdio server) hold one pair: they take turns through an OS
//! lock on `<file>.lock` beside it (`flock`, freed by the OS when a process ends; on
//! other systems than Unix a process takes turns only with itself), and a pair another
//! process wrote since this one last read or wrote the file is adopted. A file this
//! process could not write, or set aside at start-up, is never mistaken for another's.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::holder::{Holder, HolderError, Pair};
use crate::bitrix::BoxFuture;

/// Name of the token file's directory under the user's configuration directory.
const APP_DIR: &str = "bitrix24-task-results-mcp";

/// `$XDG_CONFIG_HOME/bitrix24-task-results-mcp/token.json`, else under `~/.config`, else
/// under `%APPDATA%`; `None` when none of those is known.
pub fn default_token_file() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".config")))
        .or_else(|| absolute("APPDATA"))?;
    Some(base.join(APP_DIR).join("token.json"))
}

/// The token file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredTokens {
    #[serde(serialize_with = "expose")]
    pub(crate) access_token: SecretString,
    #[serde(serialize_with = "expose")]
    pub(crate) refresh_token: SecretString,
    /// Unix time the access token expires, as the OAuth server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_endpoint: Option<String>,
    /// The `BITRIX24_REFRESH_TOKEN` this chain of refreshes started from. It is used up,
    /// so keeping it costs nothing; a different one in the environment means the user
    /// authorised again, and the environment wins over the file.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_some"
    )]
    pub(crate) seeded_by: Option<SecretString>,
}

impl StoredTokens {
    /// A file's content for tests: `refresh`, seeded by `seeded_by`.
    #[cfg(test)]
    pub(crate) fn sample(refresh: &str, seeded_by: Option<&str>) -> StoredTokens {
        StoredTokens {
            access_token: "file-access-token".into(),
            refresh_token: refresh.into(),
            expires: Some(1),
            server_endpoint: Some("https://oauth.bitrix24.tech/rest/".into()),
            seeded_by: seeded_by.map(Into::into),
        }
    }

    pub(crate) fn pair(&self) -> Pair {
        Pair {
            access: self.access_token.clone(),
            refresh: self.refresh_token.clone(),
            expires_at: self.expires,
            server_endpoint: self.server_endpoint.clone(),
            client_endpoint: None,
            scope: None,
        }
    }
}

// The token file is the one place tokens are written out in clear (mode 0600): a restart
// must find the rotated pair. `SecretString` has no `Serialize` of its own for that reason.
fn expose<S: Serializer>(secret: &SecretString, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(secret.expose_secret())
}

fn expose_some<S: Serializer>(secret: &Option<SecretString>, to: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => to.serialize_some(secret.expose_secret()),
        None => to.serialize_none(),
    }
}

/// Reads the file at start-up: `None` when there is none; an error (safe to show) when
/// it cannot be used. Warns when other users may read it.
pub(crate) fn read_token_file(path: &Path) -> Result<Option<StoredTokens>, String> {
    read(path, true)
}

fn read(path: &Path, warn_if_exposed: bool) -> Result<Option<StoredTokens>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    #[cfg(unix)]
    if warn_if_exposed && let Ok(meta) = fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the OAuth token file is readable by other users; run chmod 600 on it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = warn_if_exposed;
    let stored: StoredTokens = serde_json::from_slice(&bytes)
        .map_err(|e| format!("it is not a token file written by this server ({e})"))?;
    if stored.refresh_token.expose_secret().trim().is_empty() {
        return Err("it holds no refresh token".into());
    }
    Ok(Some(stored))
}

/// Creates `path`'s directory with mode 0700 when missing.
fn make_dir(path: &Path) -> io::Result<PathBuf> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(PathBuf::from("."));
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    Ok(dir.to_path_buf())
}

/// Writes the file atomically (temporary file, then rename) with mode 0600, creating its
/// directory with mode 0700 when missing.
pub(crate) fn write_token_file(path: &Path, tokens: &StoredTokens) -> io::Result<()> {
    let dir = make_dir(path)?;
    let json = serde_json::to_vec_pretty(tokens).map_err(io::Error::other)?;
    // A fresh, uniquely named 0600 file in the same directory, renamed over the old one:
    // a reader sees the old pair or the new, never half of one.
    let mut tmp = tempfile::Builder::new()
        .prefix(".token-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    tmp.write_all(&json)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is.
    #[cfg(unix)]
    fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

/// The lock file beside the token file, locked (`flock`) while this process refreshes;
/// `None` while another process has it.
#[cfg(unix)]
fn take_os_lock(path: &Path) -> io::Result<Option<fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    make_dir(path)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path.with_file_name(name))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The configured identity's pair in its token file.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    /// Written with every pair (see [`StoredTokens::seeded_by`]), and masked.
    seeded_by: Option<SecretString>,
    /// The refresh token the file held when this process last read or wrote it: another
    /// one there now was written by another process.
    seen: Mutex<Option<SecretString>>,
    /// The lock file and the turn holding it, while this process refreshes.
    #[cfg_attr(not(unix), allow(dead_code))]
    locked: Mutex<Option<(String, fs::File)>>,
}

impl TokenFile {
    /// The file at `path`, writing `seeded_by` with every pair; `seen` is the refresh
    /// token it held when read at start-up (whether or not it was used).
    pub fn new(path: PathBuf, seeded_by: Option<SecretString>, seen: Option<SecretString>) -> Self {
        TokenFile {
            path,
            seeded_by,
            seen: Mutex::new(seen),
            locked: Mutex::new(None),
        }
    }

    /// Where the pair is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Option<SecretString>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    fn locked(&self) -> std::sync::MutexGuard<'_, Option<(String, fs::File)>> {
        self.locked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `pair` (off the runtime: the blocking pool finishes the write even when the
    /// refresh is given up) and says `done`; a failure is logged, not returned: the pair
    /// is in use either way, and only a restart would miss it.
    pub(crate) async fn keep(&self, pair: &Pair, done: &str) {
        let stored = StoredTokens {
            access_token: pair.access.clone(),
            refresh_token: pair.refresh.clone(),
            expires: pair.expires_at,
            server_endpoint: pair.server_endpoint.clone(),
            seeded_by: self.seeded_by.clone(),
        };
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || write_token_file(&path, &stored))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        match written {
            Ok(()) => {
                *self.seen() = Some(pair.refresh.clone());
                tracing::info!(file = %self.path.display(), "{done}");
            }
            Err(e) => tracing::warn!(
                file = %self.path.display(),
                "OAuth access token refreshed, but the new pair could not be stored ({e}); \
                 after a restart the old refresh token will be refused: fix the file's directory \
                 or set BITRIX24_TOKEN_FILE"
            ),
        }
    }
}

impl Holder for TokenFile {
    fn describe(&self) -> &'static str {
        "the OAuth identity's token pair"
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<Pair>, HolderError>> {
        Box::pin(async move {
            let path = self.path.clone();
            let read = tokio::task::spawn_blocking(move || read(&path, false))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            // Unreadable or gone: nothing another process kept; go on with the pair known.
            let Ok(Some(stored)) = read else {
                return Ok(None);
            };
            let mut seen = self.seen();
            if seen.as_ref().map(ExposeSecret::expose_secret)
                == Some(stored.refresh_token.expose_secret())
            {
                return Ok(None);
            }
            *seen = Some(stored.refresh_token.clone());
            Ok(Some(stored.pair()))
        })
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        _until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, HolderError>> {
        Box::pin(async move {
            #[cfg(unix)]
            {
                // Still held by a turn of this process whose refresh was given up: the
                // engine runs one refresh at a time, so it is this turn's now.
                if let Some((turn, _)) = self.locked().as_mut() {
                    *turn = holder.to_string();
                    return Ok(true);
                }
                let path = self.path.clone();
                let taken = tokio::task::spawn_blocking(move || take_os_lock(&path))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e)));
                match taken {
                    Ok(Some(file)) => *self.locked() = Some((holder.to_string(), file)),
                    Ok(None) => return Ok(false),
                    Err(e) => tracing::warn!(
                        file = %self.path.display(),
                        "cannot lock the OAuth token file ({e}); refreshing without the lock: \
                         another process using the same token file may refresh at the same time"
                    ),
                }
            }
            #[cfg(not(unix))]
            let _ = holder;
            Ok(true)
        })
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), HolderError>> {
        #[cfg(unix)]
        {
            let mut locked = self.locked();
            if locked.as_ref().is_some_and(|(turn, _)| turn == holder) {
                // Closing the file frees the OS lock.
                *locked = None;
            }
        }
        #[cfg(not(unix))]
        let _ = holder;
        Box::pin(async { Ok(()) })
    }

    fn store<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, Result<(), HolderError>> {
        Box::pin(async move {
            self.keep(
                pair,
                "OAuth access token refreshed; the new pair is stored in the token file",
            )
            .await;
            Ok(())
        })
    }

    fn adopted<'a>(&'a self, _pair: &'a Pair) -> BoxFuture<'a, ()> {
        tracing::info!(
            file = %self.path.display(),
            "another process refreshed the OAuth access token; its pair in the token file is in use"
        );
        Box::pin(async {})
    }

    fn also_masked(&self) -> &[SecretString] {
        self.seeded_by.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::suite::{Bench, pair_eq};
    use std::sync::Arc;

    fn stored(refresh: &str, seeded_by: Option<&str>) -> StoredTokens {
        StoredTokens::sample(refresh, seeded_by)
    }

    /// Processes sharing one token file in a temporary directory.
    struct FileBench {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl FileBench {
        fn new() -> FileBench {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sub").join("token.json");
            FileBench { _dir: dir, path }
        }
    }

    impl Bench for FileBench {
        fn seed<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, ()> {
            let stored = StoredTokens {
                access_token: pair.access.clone(),
                refresh_token: pair.refresh.clone(),
                expires: pair.expires_at,
                server_endpoint: pair.server_endpoint.clone(),
                seeded_by: None,
            };
            write_token_file(&self.path, &stored).unwrap();
            Box::pin(async {})
        }

        fn holder(&self) -> BoxFuture<'_, Arc<dyn Holder>> {
            let file = TokenFile::new(self.path.clone(), None, None);
            Box::pin(async move { Arc::new(file) as Arc<dyn Holder> })
        }

        fn kept(&self) -> BoxFuture<'_, Option<Pair>> {
            let kept = read_token_file(&self.path).unwrap().map(|s| s.pair());
            Box::pin(async move { kept })
        }
    }

    crate::token_engine_suite!(FileBench::new());

    #[test]
    fn file_is_written_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("token.json");
        write_token_file(&path, &stored("refresh-1", Some("refresh-0"))).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(dir_mode, 0o700);
        }
        let back = read_token_file(&path).unwrap().unwrap();
        assert_eq!(back.refresh_token.expose_secret(), "refresh-1");
        assert_eq!(
            back.seeded_by.as_ref().map(ExposeSecret::expose_secret),
            Some("refresh-0")
        );
        // Overwriting keeps the mode and leaves no temporary file behind.
        write_token_file(&path, &stored("refresh-2", Some("refresh-0"))).unwrap();
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["token.json"]);
    }

    #[test]
    fn token_file_writes_leave_no_temporary_files_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("token.json");
        for n in 0..3 {
            write_token_file(&path, &stored(&format!("r{n}"), None)).unwrap();
        }
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("token.json")]);
        assert!(
            String::from_utf8(fs::read(&path).unwrap())
                .unwrap()
                .contains("\"r2\"")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[tokio::test]
    async fn a_file_this_process_set_aside_or_could_not_write_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        write_token_file(&path, &stored("refresh-old", Some("refresh-0"))).unwrap();
        // Read at start-up and set aside (the environment won): nothing new in it.
        let file = TokenFile::new(path.clone(), None, Some("refresh-old".into()));
        assert!(file.load().await.unwrap().is_none());
        // Written by another process since: adopted, once.
        write_token_file(&path, &stored("refresh-other", None)).unwrap();
        let other = file.load().await.unwrap().expect("the other's pair");
        assert!(pair_eq(&other, &stored("refresh-other", None).pair()));
        assert!(file.load().await.unwrap().is_none());
    }

    #[test]
    fn default_path_is_under_the_config_dir() {
        if let Some(p) = default_token_file() {
            assert!(p.ends_with("bitrix24-task-results-mcp/token.json"), "{p:?}");
        }
    }
}
