//! The SQLite schema, its migrations, and the private files the store lives in.
//!
//! Migrations are numbered by position: `PRAGMA user_version` is how many have run. A
//! schema change is a new entry at the end, never an edit of an old one.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// One entry per schema version; applied in order inside one transaction.
const MIGRATIONS: &[&str] = &[
    // 1: everything the sign-in flow needs. Hashes are 32-byte blobs; the Bitrix24 tokens
    // are sealed blobs (crypto.rs). `clients.granted` lets the purge tell an abandoned
    // registration from a client in use.
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
     CREATE TABLE clients (
         client_id TEXT PRIMARY KEY,
         client_name TEXT,
         redirect_uris TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         granted INTEGER NOT NULL DEFAULT 0
     ) STRICT;
     CREATE TABLE pending (
         state BLOB PRIMARY KEY,
         client_id TEXT NOT NULL,
         redirect_uri TEXT NOT NULL,
         code_challenge TEXT NOT NULL,
         client_state TEXT,
         resource TEXT NOT NULL,
         scope TEXT,
         expires_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX pending_expiry ON pending (expires_at);
     CREATE TABLE codes (
         code BLOB PRIMARY KEY,
         client_id TEXT NOT NULL,
         redirect_uri TEXT NOT NULL,
         code_challenge TEXT NOT NULL,
         resource TEXT NOT NULL,
         scope TEXT,
         user_id INTEGER NOT NULL,
         member_id TEXT NOT NULL,
         expires_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX codes_expiry ON codes (expires_at);
     CREATE TABLE people (
         member_id TEXT NOT NULL,
         user_id INTEGER NOT NULL,
         domain TEXT NOT NULL,
         access BLOB NOT NULL,
         refresh BLOB NOT NULL,
         token_expires_at INTEGER NOT NULL,
         server_endpoint TEXT,
         client_endpoint TEXT,
         scope TEXT,
         last_used_at INTEGER NOT NULL,
         created_at INTEGER NOT NULL,
         PRIMARY KEY (member_id, user_id)
     ) STRICT;
     CREATE TABLE grants (
         id TEXT PRIMARY KEY,
         client_id TEXT NOT NULL,
         member_id TEXT NOT NULL,
         user_id INTEGER NOT NULL,
         resource TEXT NOT NULL,
         scope TEXT,
         created_at INTEGER NOT NULL,
         revoked INTEGER NOT NULL DEFAULT 0
     ) STRICT;
     CREATE INDEX grants_person ON grants (user_id, member_id);
     CREATE INDEX grants_client ON grants (client_id);
     CREATE TABLE tokens (
         hash BLOB PRIMARY KEY,
         grant_id TEXT NOT NULL,
         kind TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
         expires_at INTEGER NOT NULL,
         used INTEGER NOT NULL DEFAULT 0
     ) STRICT;
     CREATE INDEX tokens_grant ON tokens (grant_id);
     CREATE INDEX tokens_expiry ON tokens (expires_at);",
    // 2: confidential clients (client_secret_post / client_secret_basic) keep the hash of
    // their secret.
    "ALTER TABLE clients ADD COLUMN secret_hash BLOB;",
    // 3: locks between processes sharing the file (a person's refresh).
    "CREATE TABLE locks (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at_ms INTEGER NOT NULL) STRICT;",
    // 4: refresh races. `tokens.parent` is the refresh token whose use issued a token
    // (NULL from a code), so a rotation keeps only the last two generations; `rotations`
    // holds, for a refresh token's grace window, the pair its first use issued (sealed,
    // as the Bitrix24 tokens are), so that a repeat within the window gets it back.
    "ALTER TABLE tokens ADD COLUMN parent BLOB;
     CREATE TABLE rotations (
         hash BLOB PRIMARY KEY,
         grant_id TEXT NOT NULL,
         pair BLOB NOT NULL,
         next_refresh BLOB NOT NULL,
         access_expires_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX rotations_grant ON rotations (grant_id);",
];

/// Brings the schema up to date; refuses a store written by a newer version.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db)?;
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(StoreError::Unavailable(format!(
            "the store has schema version {version}, newer than this server's {latest}; \
             run a newer version of the server"
        )));
    }
    for step in &MIGRATIONS[version.max(0) as usize..] {
        tx.execute_batch(step).map_err(db)?;
    }
    if version != latest {
        tx.pragma_update(None, "user_version", latest).map_err(db)?;
    }
    tx.commit().map_err(db)
}

/// A SQLite error as a store error (rusqlite's texts carry no bound values).
pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The default database: `$XDG_DATA_HOME/bitrix24-task-results-mcp/store.sqlite3`, else
/// `~/.local/share/…`. `None` when neither variable gives an absolute directory.
pub fn default_path() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base =
        absolute("XDG_DATA_HOME").or_else(|| absolute("HOME").map(|h| h.join(".local/share")))?;
    Some(base.join("bitrix24-task-results-mcp").join("store.sqlite3"))
}

/// The key file created beside a database when no key is given: `<db>.key`.
pub fn default_key_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Creates `dir` (and missing parents) readable by the owner only; an existing directory
/// is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot create the directory {}: {e}",
            dir.display()
        ))
    })
}

/// Creates the database file with mode 0600 before SQLite opens it (SQLite gives its -wal
/// and -shm files the database's mode); an existing file is left as it is.
pub(crate) fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot create the store file {}: {e}",
            path.display()
        ))
    })
}

/// Refuses an existing store or key file that another user could read or change: one
/// with group or other permission bits, or owned by another user (a planted database or
/// key would be used, or the Bitrix24 tokens read, by someone else). A missing file is
/// fine: this server creates it private.
pub(crate) fn refuse_if_exposed(path: &Path, what: &str) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot read the {what} {}: {e}",
                    path.display()
                )));
            }
        };
        let me = rustix::process::geteuid().as_raw();
        let shown = path.display();
        if meta.uid() != me {
            return Err(StoreError::Exposed(format!(
                "the {what} {shown} is owned by user id {}, not by the user running this server \
                 (id {me}): someone else may have planted it or may read it. If it is yours, \
                 `chown {me} {shown}`; if not, remove it",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Exposed(format!(
                "the {what} {shown} is readable or writable by other users (mode {mode:04o}): \
                 run `chmod 600 {shown}`, and if anyone else could have written it, remove it \
                 and sign everyone in again"
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// Warns when the directory holding the store lets other users add, rename or delete
/// files in it (they could swap the database or its key for their own).
pub(crate) fn warn_if_dir_open(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.mode() & 0o022 != 0
        {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:04o}", meta.mode() & 0o7777),
                "the sign-in store's directory is writable by other users, who could replace \
                 the database or its key file; keep the store in a directory only this user \
                 can write (chmod 700)"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The database's companion files: the write-ahead log and the shared-memory index.
pub(crate) fn companions(db_path: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut name = db_path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Narrows the -wal and -shm files to 0600 if they came out wider (SQLite gives them the
/// database's mode, but a file left by another process or tool may differ).
pub(crate) fn tighten_companions(db_path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    for path in companions(db_path) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    StoreError::Unavailable(format!(
                        "cannot make {} private (chmod 600): {e}",
                        path.display()
                    ))
                },
            )?;
        }
    }
    #[cfg(not(unix))]
    let _ = db_path;
    Ok(())
}
