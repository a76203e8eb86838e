//! The suite against the holders it knows itself: the in-memory holder, and a person's
//! pair in a SQLite store (processes sharing one database file). The token file and the
//! configured identity's shared pair run it in their own modules; the Redis holders in
//! `tests/replicas/token_engine.rs`.

use std::sync::Arc;

use super::{MemoryBench, StoreBench};
use crate::store::{SqliteStore, Store, StoreKey};

/// Processes sharing one SQLite store in a temporary file.
fn sqlite() -> StoreBench {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let key = StoreKey::from_hex(&"ab".repeat(32)).unwrap();
    StoreBench::new(move || {
        let _keep = &dir;
        let store = SqliteStore::open(&path, key.clone()).expect("open the store");
        Box::pin(async move { Arc::new(store) as Arc<dyn Store> })
    })
}

mod memory {
    use super::*;

    crate::token_engine_suite!(MemoryBench::default());
}

mod person_in_sqlite {
    use super::*;

    crate::token_engine_suite!(sqlite());
}
