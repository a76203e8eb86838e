//! [`SqliteStore`]: the embedded default store, one SQLite file.
//!
//! This file is long because it is the whole `Store` implementation, one short method per
//! trait call; the schema and file handling live in `schema.rs`.
//!
//! WAL mode and a busy timeout let a second process (`users revoke` beside a running
//! server) read and write the same file at once; every read-then-write runs in an
//! `IMMEDIATE` transaction, so single use holds across processes too. Nothing is cached in
//! memory: a revocation by another process is seen by the next call. SQLite is blocking,
//! so calls run on tokio's blocking pool, one connection per store behind a mutex.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use secrecy::ExposeSecret;

use super::schema::{self, db};
use super::{
    AuthCode, BitrixTokens, CLIENT_GRACE, ClientRecord, Grant, IssuedToken, PendingAuth, Person,
    PersonSummary, RefreshUse, Rotation, SIGN_IN_SETTLING, Store, StoreError, StoreKey, TokenHash,
    TokenKind, rotation_aad, rotation_pair, rotation_text,
};

/// How long a call waits for another process's write before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// `touch_person` writes only when the stored last use is older than this: a listing
/// needs no finer time, and a write per request would be wasted.
const TOUCH_GRANULARITY: i64 = 60;
/// An unrevoked grant with no token yet is kept this long (its tokens are on the way).
const GRANT_GRACE: i64 = 3600;
/// Encrypted with the key at creation; opening it proves a later key is the same one.
const KEY_CHECK: &str = "bitrix24-task-results-mcp store key check";

/// Bounds that keep strangers from filling the store.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Registered clients (RFC 7591 and cached metadata documents).
    pub clients: u32,
    /// Unexpired pending authorizations.
    pub pending: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            clients: 10_000,
            // Each source and each client may hold only a share (sign_in::limits), so
            // filling this takes hundreds of addresses; a record is under 2 KiB.
            pending: 10_000,
        }
    }
}

/// The store in one SQLite file. Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    key: StoreKey,
    limits: Limits,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it when missing, with its directory) the store at `path`, migrates
    /// it, and checks that `key` is the key it was created with (`WrongKey` otherwise).
    /// Blocking: call it at start-up, or from `spawn_blocking`.
    pub fn open(path: &Path, key: StoreKey) -> Result<Self, StoreError> {
        Self::open_with_limits(path, key, Limits::default())
    }

    /// [`SqliteStore::open`] with other bounds (tests use small ones).
    pub fn open_with_limits(
        path: &Path,
        key: StoreKey,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            schema::create_private_dir(dir)?;
            schema::warn_if_dir_open(dir);
        }
        schema::refuse_if_exposed(path, "sign-in store file")?;
        for companion in schema::companions(path) {
            schema::refuse_if_exposed(&companion, "sign-in store file")?;
        }
        schema::create_private_file(path)?;
        let mut conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "the store file cannot use WAL mode (got {mode}); is it on a network file system?"
            )));
        }
        // In WAL mode NORMAL never corrupts; a power cut may lose the last commits only.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        schema::migrate(&mut conn)?;
        schema::tighten_companions(path)?;
        check_key(&mut conn, &key)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                key,
                limits,
                path: path.to_owned(),
            }),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the connection in tokio's blocking pool. A call whose caller gives up
    /// still finishes, so a taken code is never half-taken.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &StoreKey, Limits) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic mid-call rolled its transaction back (Transaction's drop), so the
            // connection is still sound.
            let mut conn = inner.conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn, &inner.key, inner.limits)
        })
        .await
        .map_err(|_| StoreError::Unavailable("a store call did not complete".into()))?
    }
}

fn check_key(conn: &mut Connection, key: &StoreKey) -> Result<(), StoreError> {
    let tx = immediate(conn)?;
    let sealed: Option<Vec<u8>> = tx
        .query_row("SELECT value FROM meta WHERE name = 'key_check'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db)?;
    match sealed {
        Some(sealed) => {
            let plain = key.open(&sealed, b"key_check")?;
            if plain.expose_secret() != KEY_CHECK {
                return Err(StoreError::WrongKey);
            }
        }
        None => {
            let sealed = key.seal(KEY_CHECK, b"key_check")?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('key_check', ?1)",
                [sealed],
            )
            .map_err(db)?;
        }
    }
    tx.commit().map_err(db)
}

fn immediate(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)
}

/// Associated data of a sealed token: field and row, so it opens nowhere else.
fn aad(field: &str, member_id: &str, user_id: i64) -> Vec<u8> {
    format!("{field}\0{user_id}\0{member_id}").into_bytes()
}

fn kind_name(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => "access",
        TokenKind::Refresh => "refresh",
    }
}

const GRANT_COLUMNS: &str =
    "g.id, g.client_id, g.member_id, g.user_id, g.resource, g.scope, g.created_at, g.revoked";

/// A grant from `GRANT_COLUMNS` starting at column `at`.
fn grant_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: row.get(at)?,
        client_id: row.get(at + 1)?,
        member_id: row.get(at + 2)?,
        user_id: row.get(at + 3)?,
        resource: row.get(at + 4)?,
        scope: row.get(at + 5)?,
        created_at: row.get(at + 6)?,
        revoked: row.get(at + 7)?,
    })
}

/// Revokes a grant and deletes its tokens; `true` when it was live. The person's
/// Bitrix24 tokens go too when this was their last live grant.
fn revoke_grant_in(tx: &Transaction<'_>, id: &str) -> Result<bool, StoreError> {
    let changed = tx
        .execute(
            "UPDATE grants SET revoked = 1 WHERE id = ?1 AND revoked = 0",
            [id],
        )
        .map_err(db)?;
    for table in ["tokens", "rotations"] {
        tx.execute(&format!("DELETE FROM {table} WHERE grant_id = ?1"), [id])
            .map_err(db)?;
    }
    let who: Option<(String, i64)> = tx
        .query_row(
            "SELECT member_id, user_id FROM grants WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    if let Some((member_id, user_id)) = who {
        forget_if_signed_out(tx, &member_id, user_id)?;
    }
    Ok(changed > 0)
}

/// Deletes a person (their Bitrix24 tokens) once they have no live grant and no code
/// waiting to be exchanged (a sign-in in progress keeps them).
fn forget_if_signed_out(
    tx: &Transaction<'_>,
    member_id: &str,
    user_id: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM people WHERE member_id = ?1 AND user_id = ?2
             AND NOT EXISTS (SELECT 1 FROM grants g
                 WHERE g.member_id = ?1 AND g.user_id = ?2 AND g.revoked = 0)
             AND NOT EXISTS (SELECT 1 FROM codes c
                 WHERE c.member_id = ?1 AND c.user_id = ?2)",
        params![member_id, user_id],
    )
    .map(drop)
    .map_err(db)
}

/// A refresh token's row with its grant, whatever its state: expiry, spent, parent,
/// whether its person is still signed in, the grant.
type RefreshRow = (i64, bool, Option<Vec<u8>>, bool, Grant);

fn refresh_row(tx: &Transaction<'_>, hash: &TokenHash) -> Result<Option<RefreshRow>, StoreError> {
    tx.query_row(
        &format!(
            "SELECT t.expires_at, t.used, t.parent,
                 EXISTS (SELECT 1 FROM people p
                     WHERE p.member_id = g.member_id AND p.user_id = g.user_id),
                 {GRANT_COLUMNS}
             FROM tokens t JOIN grants g ON g.id = t.grant_id
             WHERE t.hash = ?1 AND t.kind = 'refresh'"
        ),
        [hash.as_bytes()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, grant_at(r, 4)?)),
    )
    .optional()
    .map_err(db)
}

/// A repeat of a spent refresh token: the pair its first use issued while the grace
/// window is open and that pair's refresh token is unspent.
fn repeat(
    tx: &Transaction<'_>,
    key: &StoreKey,
    hash: &TokenHash,
    grant: Grant,
    now: i64,
) -> Result<Option<RefreshUse>, StoreError> {
    let rotation: Option<(Vec<u8>, Vec<u8>, i64)> = tx
        .query_row(
            "SELECT pair, next_refresh, access_expires_at FROM rotations
             WHERE hash = ?1 AND expires_at >= ?2",
            params![hash.as_bytes(), now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((sealed, next_refresh, access_expires_at)) = rotation else {
        return Ok(None);
    };
    let next_unspent: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM tokens WHERE hash = ?1 AND kind = 'refresh'
                 AND used = 0 AND expires_at > ?2)",
            params![next_refresh, now],
            |r| r.get(0),
        )
        .map_err(db)?;
    if !next_unspent {
        return Ok(Some(RefreshUse::Unknown));
    }
    let plain = key.open(&sealed, &rotation_aad(hash))?;
    let pair = rotation_pair(&plain, access_expires_at)?;
    Ok(Some(RefreshUse::Repeat(grant, pair)))
}

/// The first use of a refresh token: spends it, stores the new pair (and, for the grace
/// window, its sealed copy), and keeps only what reuse detection needs: this spent token,
/// and the access tokens of the last two generations (the one the client may still be
/// using while the answer travels, and the new one).
fn rotate(
    tx: &Transaction<'_>,
    key: &StoreKey,
    hash: &TokenHash,
    parent: Option<&[u8]>,
    grant_id: &str,
    next: &Rotation,
    now: i64,
) -> Result<(), StoreError> {
    let spent = hash.as_bytes().as_slice();
    tx.execute("UPDATE tokens SET used = 1 WHERE hash = ?1", [spent])
        .map_err(db)?;
    tx.execute(
        "DELETE FROM tokens WHERE grant_id = ?1 AND hash != ?2
             AND ((kind = 'refresh' AND used = 1)
                 OR (kind = 'access' AND parent IS NOT ?3 AND parent IS NOT ?2))",
        params![grant_id, spent, parent],
    )
    .map_err(db)?;
    tx.execute("DELETE FROM rotations WHERE grant_id = ?1", [grant_id])
        .map_err(db)?;
    let next_refresh = TokenHash::of(next.refresh.expose_secret());
    for (token, kind, expires_at) in [
        (&next.access, "access", next.access_expires_at),
        (&next.refresh, "refresh", next.refresh_expires_at),
    ] {
        tx.execute(
            "INSERT INTO tokens (hash, grant_id, kind, expires_at, used, parent)
             VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            params![
                TokenHash::of(token.expose_secret()).as_bytes(),
                grant_id,
                kind,
                expires_at,
                spent
            ],
        )
        .map_err(db)?;
    }
    if next.grace > 0 {
        let sealed = key.seal(&rotation_text(next), &rotation_aad(hash))?;
        tx.execute(
            "INSERT INTO rotations (hash, grant_id, pair, next_refresh, access_expires_at,
                 expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                spent,
                grant_id,
                sealed,
                next_refresh.as_bytes(),
                next.access_expires_at,
                now.saturating_add(next.grace)
            ],
        )
        .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn, _, _| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
                .map_err(db)
        })
        .await
    }

    async fn put_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        let uris = serde_json::to_string(&client.redirect_uris)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.run(move |conn, _, limits| {
            let tx = immediate(conn)?;
            let known: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM clients WHERE client_id = ?1)",
                    [&client.client_id],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if !known {
                let count: i64 = tx
                    .query_row("SELECT COUNT(*) FROM clients", [], |r| r.get(0))
                    .map_err(db)?;
                if count >= i64::from(limits.clients) {
                    return Err(StoreError::Full);
                }
            }
            tx.execute(
                "INSERT INTO clients (client_id, client_name, redirect_uris, created_at, secret_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (client_id) DO UPDATE SET client_name = excluded.client_name,
                     redirect_uris = excluded.redirect_uris, created_at = excluded.created_at,
                     secret_hash = excluded.secret_hash",
                params![
                    client.client_id,
                    client.client_name,
                    uris,
                    client.created_at,
                    client.secret_hash.as_ref().map(|h| h.as_bytes().to_vec())
                ],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let client_id = client_id.to_owned();
        self.run(move |conn, _, _| {
            let row = conn
                .query_row(
                    "SELECT client_name, redirect_uris, created_at, secret_hash FROM clients
                     WHERE client_id = ?1",
                    [&client_id],
                    |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get(2)?,
                            r.get::<_, Option<Vec<u8>>>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(db)?;
            let Some((client_name, uris, created_at, secret)) = row else {
                return Ok(None);
            };
            let secret_hash = match secret {
                None => None,
                Some(bytes) => Some(TokenHash::from_bytes(bytes.try_into().map_err(|_| {
                    StoreError::Unavailable("a client's secret hash is corrupt".into())
                })?)),
            };
            let redirect_uris = serde_json::from_str(&uris).map_err(|_| {
                StoreError::Unavailable("a client's redirect URIs are corrupt".into())
            })?;
            Ok(Some(ClientRecord {
                client_id,
                client_name,
                redirect_uris,
                created_at,
                secret_hash,
            }))
        })
        .await
    }

    async fn put_pending(&self, p: PendingAuth, now: i64) -> Result<(), StoreError> {
        self.run(move |conn, _, limits| {
            let tx = immediate(conn)?;
            tx.execute("DELETE FROM pending WHERE expires_at <= ?1", [now])
                .map_err(db)?;
            let count: i64 = tx
                .query_row("SELECT COUNT(*) FROM pending", [], |r| r.get(0))
                .map_err(db)?;
            if count >= i64::from(limits.pending) {
                return Err(StoreError::Full);
            }
            tx.execute(
                "INSERT INTO pending (state, client_id, redirect_uri, code_challenge,
                     client_state, resource, scope, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    p.state.as_bytes(),
                    p.client_id,
                    p.redirect_uri,
                    p.code_challenge,
                    p.client_state,
                    p.resource,
                    p.scope,
                    p.expires_at
                ],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn take_pending(
        &self,
        state: &TokenHash,
        now: i64,
    ) -> Result<Option<PendingAuth>, StoreError> {
        let state = *state;
        self.run(move |conn, _, _| {
            // One statement: atomic, so of two takers only one gets the row.
            let taken = conn
                .query_row(
                    "DELETE FROM pending WHERE state = ?1
                     RETURNING client_id, redirect_uri, code_challenge, client_state,
                         resource, scope, expires_at",
                    [state.as_bytes()],
                    |r| {
                        Ok(PendingAuth {
                            state,
                            client_id: r.get(0)?,
                            redirect_uri: r.get(1)?,
                            code_challenge: r.get(2)?,
                            client_state: r.get(3)?,
                            resource: r.get(4)?,
                            scope: r.get(5)?,
                            expires_at: r.get(6)?,
                        })
                    },
                )
                .optional()
                .map_err(db)?;
            Ok(taken.filter(|p| p.expires_at > now))
        })
        .await
    }

    async fn put_code(&self, c: AuthCode) -> Result<(), StoreError> {
        self.run(move |conn, _, _| {
            conn.execute(
                "INSERT INTO codes (code, client_id, redirect_uri, code_challenge, resource,
                     scope, user_id, member_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    c.code.as_bytes(),
                    c.client_id,
                    c.redirect_uri,
                    c.code_challenge,
                    c.resource,
                    c.scope,
                    c.user_id,
                    c.member_id,
                    c.expires_at
                ],
            )
            .map(drop)
            .map_err(db)
        })
        .await
    }

    async fn take_code(&self, code: &TokenHash, now: i64) -> Result<Option<AuthCode>, StoreError> {
        let code = *code;
        self.run(move |conn, _, _| {
            let taken = conn
                .query_row(
                    "DELETE FROM codes WHERE code = ?1
                     RETURNING client_id, redirect_uri, code_challenge, resource, scope,
                         user_id, member_id, expires_at",
                    [code.as_bytes()],
                    |r| {
                        Ok(AuthCode {
                            code,
                            client_id: r.get(0)?,
                            redirect_uri: r.get(1)?,
                            code_challenge: r.get(2)?,
                            resource: r.get(3)?,
                            scope: r.get(4)?,
                            user_id: r.get(5)?,
                            member_id: r.get(6)?,
                            expires_at: r.get(7)?,
                        })
                    },
                )
                .optional()
                .map_err(db)?;
            Ok(taken.filter(|c| c.expires_at > now))
        })
        .await
    }

    async fn put_person(&self, p: Person) -> Result<(), StoreError> {
        self.run(move |conn, key, _| {
            let t = &p.tokens;
            let access = key.seal(
                t.access.expose_secret(),
                &aad("access", &p.member_id, p.user_id),
            )?;
            let refresh = key.seal(
                t.refresh.expose_secret(),
                &aad("refresh", &p.member_id, p.user_id),
            )?;
            conn.execute(
                "INSERT INTO people (member_id, user_id, domain, access, refresh,
                     token_expires_at, server_endpoint, client_endpoint, scope, last_used_at,
                     created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (member_id, user_id) DO UPDATE SET domain = excluded.domain,
                     access = excluded.access, refresh = excluded.refresh,
                     token_expires_at = excluded.token_expires_at,
                     server_endpoint = excluded.server_endpoint,
                     client_endpoint = excluded.client_endpoint, scope = excluded.scope,
                     last_used_at = excluded.last_used_at",
                params![
                    p.member_id,
                    p.user_id,
                    p.domain,
                    access,
                    refresh,
                    t.expires_at,
                    t.server_endpoint,
                    t.client_endpoint,
                    t.scope,
                    p.last_used_at,
                    p.created_at
                ],
            )
            .map(drop)
            .map_err(db)
        })
        .await
    }

    async fn person(&self, member_id: &str, user_id: i64) -> Result<Option<Person>, StoreError> {
        let member_id = member_id.to_owned();
        self.run(move |conn, key, _| {
            let row = conn
                .query_row(
                    "SELECT domain, access, refresh, token_expires_at, server_endpoint,
                         client_endpoint, scope, last_used_at, created_at
                     FROM people WHERE member_id = ?1 AND user_id = ?2",
                    params![member_id, user_id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            (r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                            (r.get(7)?, r.get(8)?),
                        ))
                    },
                )
                .optional()
                .map_err(db)?;
            let Some((domain, access, refresh, (expires_at, server, client, scope), times)) = row
            else {
                return Ok(None);
            };
            let tokens = BitrixTokens {
                access: key.open(&access, &aad("access", &member_id, user_id))?,
                refresh: key.open(&refresh, &aad("refresh", &member_id, user_id))?,
                expires_at,
                server_endpoint: server,
                client_endpoint: client,
                scope,
            };
            Ok(Some(Person {
                member_id,
                user_id,
                domain,
                tokens,
                last_used_at: times.0,
                created_at: times.1,
            }))
        })
        .await
    }

    async fn set_person_tokens(
        &self,
        member_id: &str,
        user_id: i64,
        t: BitrixTokens,
    ) -> Result<(), StoreError> {
        let member_id = member_id.to_owned();
        self.run(move |conn, key, _| {
            let access = key.seal(
                t.access.expose_secret(),
                &aad("access", &member_id, user_id),
            )?;
            let refresh = key.seal(
                t.refresh.expose_secret(),
                &aad("refresh", &member_id, user_id),
            )?;
            conn.execute(
                "UPDATE people SET access = ?3, refresh = ?4, token_expires_at = ?5,
                     server_endpoint = ?6, client_endpoint = ?7, scope = ?8
                 WHERE member_id = ?1 AND user_id = ?2",
                params![
                    member_id,
                    user_id,
                    access,
                    refresh,
                    t.expires_at,
                    t.server_endpoint,
                    t.client_endpoint,
                    t.scope
                ],
            )
            .map(drop)
            .map_err(db)
        })
        .await
    }

    async fn touch_person(
        &self,
        member_id: &str,
        user_id: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let member_id = member_id.to_owned();
        self.run(move |conn, _, _| {
            conn.execute(
                "UPDATE people SET last_used_at = ?3
                 WHERE member_id = ?1 AND user_id = ?2 AND last_used_at <= ?3 - ?4",
                params![member_id, user_id, now, TOUCH_GRANULARITY],
            )
            .map(drop)
            .map_err(db)
        })
        .await
    }

    async fn put_grant(&self, g: Grant) -> Result<(), StoreError> {
        self.run(move |conn, _, _| {
            let tx = immediate(conn)?;
            tx.execute(
                "INSERT INTO grants (id, client_id, member_id, user_id, resource, scope,
                     created_at, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    g.id,
                    g.client_id,
                    g.member_id,
                    g.user_id,
                    g.resource,
                    g.scope,
                    g.created_at,
                    g.revoked
                ],
            )
            .map_err(db)?;
            tx.execute(
                "UPDATE clients SET granted = 1 WHERE client_id = ?1",
                [&g.client_id],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn, _, _| {
            conn.query_row(
                &format!("SELECT {GRANT_COLUMNS} FROM grants g WHERE g.id = ?1"),
                [&id],
                |r| grant_at(r, 0),
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn put_token(&self, t: IssuedToken) -> Result<(), StoreError> {
        self.run(move |conn, _, _| {
            conn.execute(
                "INSERT INTO tokens (hash, grant_id, kind, expires_at, used)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    t.hash.as_bytes(),
                    t.grant_id,
                    kind_name(t.kind),
                    t.expires_at,
                    t.used
                ],
            )
            .map(drop)
            .map_err(db)
        })
        .await
    }

    async fn token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<(IssuedToken, Grant)>, StoreError> {
        let hash = *hash;
        self.run(move |conn, _, _| {
            // Asked on every MCP request: the statement is parsed once per connection.
            conn.prepare_cached(&format!(
                "SELECT t.expires_at, t.used, {GRANT_COLUMNS}
                 FROM tokens t JOIN grants g ON g.id = t.grant_id
                 WHERE t.hash = ?1 AND t.kind = 'access' AND t.expires_at > ?2
                     AND g.revoked = 0
                     AND EXISTS (SELECT 1 FROM people p
                         WHERE p.member_id = g.member_id AND p.user_id = g.user_id)"
            ))
            .map_err(db)?
            .query_row(params![hash.as_bytes(), now], |r| {
                let grant = grant_at(r, 2)?;
                let token = IssuedToken {
                    hash,
                    grant_id: grant.id.clone(),
                    kind: TokenKind::Access,
                    expires_at: r.get(0)?,
                    used: r.get(1)?,
                };
                Ok((token, grant))
            })
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn refresh_token_grant(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Grant>, StoreError> {
        let hash = *hash;
        self.run(move |conn, _, _| {
            let tx = conn.transaction().map_err(db)?;
            let row = refresh_row(&tx, &hash)?;
            Ok(row.and_then(|(expires_at, _, _, person, grant)| {
                (expires_at > now && person && !grant.revoked).then_some(grant)
            }))
        })
        .await
    }

    async fn use_refresh(
        &self,
        hash: &TokenHash,
        now: i64,
        next: Rotation,
    ) -> Result<RefreshUse, StoreError> {
        let hash = *hash;
        self.run(move |conn, key, _| {
            let tx = immediate(conn)?;
            let Some((expires_at, used, parent, person, grant)) = refresh_row(&tx, &hash)? else {
                return Ok(RefreshUse::Unknown);
            };
            if grant.revoked || !person {
                return Ok(RefreshUse::Unknown);
            }
            if used {
                if let Some(answer) = repeat(&tx, key, &hash, grant.clone(), now)? {
                    return Ok(answer);
                }
                revoke_grant_in(&tx, &grant.id)?;
                tx.commit().map_err(db)?;
                return Ok(RefreshUse::Reused { grant_id: grant.id });
            }
            if expires_at <= now {
                return Ok(RefreshUse::Unknown);
            }
            rotate(&tx, key, &hash, parent.as_deref(), &grant.id, &next, now)?;
            tx.commit().map_err(db)?;
            Ok(RefreshUse::Fresh(grant))
        })
        .await
    }

    async fn revoke_token(&self, hash: &TokenHash) -> Result<(), StoreError> {
        let hash = *hash;
        self.run(move |conn, _, _| {
            let tx = immediate(conn)?;
            let row: Option<(String, String)> = tx
                .query_row(
                    "SELECT kind, grant_id FROM tokens WHERE hash = ?1",
                    [hash.as_bytes()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            match row {
                Some((kind, grant_id)) if kind == "refresh" => {
                    revoke_grant_in(&tx, &grant_id)?;
                }
                Some(_) => {
                    tx.execute("DELETE FROM tokens WHERE hash = ?1", [hash.as_bytes()])
                        .map_err(db)?;
                }
                None => return Ok(()),
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.run(move |conn, _, _| {
            let tx = immediate(conn)?;
            revoke_grant_in(&tx, &id)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn revoke_person(
        &self,
        member_id: Option<&str>,
        user_id: i64,
    ) -> Result<u32, StoreError> {
        let member_id = member_id.map(str::to_owned);
        self.run(move |conn, _, _| {
            let tx = immediate(conn)?;
            let who = "user_id = ?1 AND (?2 IS NULL OR member_id = ?2)";
            let revoked = tx
                .execute(
                    &format!("UPDATE grants SET revoked = 1 WHERE {who} AND revoked = 0"),
                    params![user_id, member_id],
                )
                .map_err(db)?;
            for table in ["tokens", "rotations"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE grant_id IN (SELECT id FROM grants WHERE {who})"
                    ),
                    params![user_id, member_id],
                )
                .map_err(db)?;
            }
            for table in ["codes", "people"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE {who}"),
                    params![user_id, member_id],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(u32::try_from(revoked).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn people(&self) -> Result<Vec<PersonSummary>, StoreError> {
        self.run(move |conn, _, _| {
            let mut stmt = conn
                .prepare(
                    "SELECT p.member_id, p.user_id, p.domain, p.last_used_at,
                         (SELECT COUNT(*) FROM grants g WHERE g.member_id = p.member_id
                             AND g.user_id = p.user_id AND g.revoked = 0)
                     FROM people p
                     WHERE EXISTS (SELECT 1 FROM grants g WHERE g.member_id = p.member_id
                         AND g.user_id = p.user_id AND g.revoked = 0)
                     ORDER BY p.last_used_at DESC, p.member_id, p.user_id",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(PersonSummary {
                        member_id: r.get(0)?,
                        user_id: r.get(1)?,
                        domain: r.get(2)?,
                        last_used_at: r.get(3)?,
                        grants: r.get(4)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run(move |conn, _, _| {
            let now_ms = crate::clock::now_ms();
            let tx = immediate(conn)?;
            // Taken when free, expired, or already ours.
            let changed = tx
                .execute(
                    "INSERT INTO locks (name, holder, expires_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                         expires_at_ms = excluded.expires_at_ms
                     WHERE locks.expires_at_ms <= ?4 OR locks.holder = excluded.holder",
                    params![name, holder, expires_at_ms, now_ms],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run(move |conn, _, _| {
            conn.execute(
                "DELETE FROM locks WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn purge_expired(&self, now: i64) -> Result<(), StoreError> {
        self.run(move |conn, _, _| {
            let tx = immediate(conn)?;
            for table in ["pending", "codes", "tokens"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE expires_at <= ?1"),
                    [now],
                )
                .map_err(db)?;
            }
            // A repeat window includes its last second (see `repeat`).
            tx.execute("DELETE FROM rotations WHERE expires_at < ?1", [now])
                .map_err(db)?;
            tx.execute(
                "DELETE FROM grants
                 WHERE (revoked = 1 OR created_at <= ?1 - ?2)
                     AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.grant_id = grants.id)",
                params![now, GRANT_GRACE],
            )
            .map_err(db)?;
            // People whose every grant ended (revoked, or its tokens expired) and who have
            // no sign-in in progress: their Bitrix24 tokens have no use left. Not in the
            // first minutes after a sign-in: between taking its code and saving its grant
            // a person has neither.
            tx.execute(
                "DELETE FROM people
                 WHERE last_used_at <= ?1 - ?2
                     AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.member_id = people.member_id
                         AND g.user_id = people.user_id AND g.revoked = 0)
                     AND NOT EXISTS (SELECT 1 FROM codes c WHERE c.member_id = people.member_id
                         AND c.user_id = people.user_id)",
                params![now, SIGN_IN_SETTLING],
            )
            .map_err(db)?;
            tx.execute(
                "DELETE FROM clients WHERE granted = 0 AND created_at <= ?1 - ?2
                     AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.client_id = clients.client_id)
                     AND NOT EXISTS (SELECT 1 FROM codes c WHERE c.client_id = clients.client_id)",
                params![now, CLIENT_GRACE],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }
}
