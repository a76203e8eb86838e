//! The SQLite sign-in store on real files in a temporary directory: the whole contract
//! (`contract.rs`: two stores on one file are two processes), plus what is SQLite's own:
//! the files are private, a database of a newer version is refused, the default paths.

use std::path::{Path, PathBuf};

use bitrix24_task_results_mcp::store::{
    Limits, SqliteStore, StoreError, StoreKey, default_key_path, default_path,
};

use crate::contract::{self, Backend, Kept, key, open, person};

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("store.sqlite3")
}

/// A temporary directory; the store creates its own directory in it for the database.
pub(crate) struct Sqlite {
    dir: tempfile::TempDir,
}

impl Backend for Sqlite {
    type Store = SqliteStore;

    fn start() -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    async fn open_with(&self, key: StoreKey, limits: Limits) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_limits(&db_path(&self.dir), key, limits)
    }

    fn stored(&self, kind: Kept) -> usize {
        let table = match kind {
            Kept::Tokens => "tokens",
            Kept::Rotations => "rotations",
        };
        stored_rows(&db_path(&self.dir), table)
    }

    fn stored_bytes(&self) -> Vec<(String, Vec<Vec<u8>>)> {
        database_bytes(&db_path(&self.dir))
            .into_iter()
            .map(|(suffix, bytes)| (format!("store{suffix}"), vec![bytes]))
            .collect()
    }

    /// The database file.
    const PLACES_OF_EVERY_RECORD: usize = 1;

    fn move_sealed_tokens(&self) {
        let raw = rusqlite::Connection::open(db_path(&self.dir)).unwrap();
        raw.execute_batch(
            "UPDATE people SET access = (SELECT access FROM people WHERE user_id = 1)
                 WHERE user_id = 2;
             UPDATE people SET access = refresh, refresh = access WHERE user_id = 1;",
        )
        .unwrap();
    }
}

contract::contract_cases!(Sqlite);

/// Every file SQLite keeps for the database, read raw.
fn database_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::read(&name).ok().map(|b| (suffix.to_string(), b))
        })
        .collect()
}

/// Rows in `table` of the database file, counted by a connection of the test's own.
fn stored_rows(path: &Path, table: &str) -> usize {
    let conn = rusqlite::Connection::open(path).unwrap();
    let count: i64 = conn
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap();
    usize::try_from(count).unwrap()
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(SqliteStore::open(&path, key()).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4, "every migration ran");
    raw.pragma_update(None, "user_version", 99).unwrap();
    drop(raw);
    let err = SqliteStore::open(&path, key()).unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("99")),
        "{err:?}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let backend = Sqlite::start();
    let path = db_path(&backend.dir);
    let store = open(&backend).await;
    store.put_person(person("m1", 1)).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    for (suffix, _) in database_bytes(&path) {
        let mut name = path.as_os_str().to_owned();
        name.push(&suffix);
        assert_eq!(mode(Path::new(&name)), 0o600, "store{suffix}");
    }
    let key_path = default_key_path(&path);
    let (_, created) = StoreKey::load_or_create(&key_path).unwrap();
    assert!(created);
    assert_eq!(mode(&key_path), 0o600);
}

#[test]
fn the_default_paths_sit_under_the_data_directory() {
    if let Some(path) = default_path() {
        assert!(path.is_absolute());
        assert!(
            path.ends_with("bitrix24-task-results-mcp/store.sqlite3"),
            "{path:?}"
        );
    }
    let key = default_key_path(Path::new("/data/store.sqlite3"));
    assert_eq!(key, Path::new("/data/store.sqlite3.key"));
}
